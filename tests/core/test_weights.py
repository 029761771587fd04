"""Damaged weights files: each is a WeightsFileError that names the file and says what is wrong."""

import json
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from polyformer.core import DecoderOnlyTransformer, TransformerConfig, read_state_dict
from polyformer.core.pretrained import WEIGHTS_NAME
from polyformer.core.weights import (
    CHECKSUMS_NAME,
    WeightsFileError,
    read_safetensors,
    read_safetensors_header,
    read_torch_file,
    verify_directory,
    write_checksums,
)


def _tiny() -> DecoderOnlyTransformer:
    torch.manual_seed(0)
    return DecoderOnlyTransformer(TransformerConfig(vocab_size=11, d_model=8, num_heads=2, decoder_layers=1, d_ff=16))


@pytest.fixture
def model_dir(tmp_path):
    return _tiny().save_pretrained(tmp_path / "model")


def _rewrite(path, change) -> None:
    state = read_safetensors(path)
    change(state)
    save_file(state, str(path))


def test_an_intact_file_reads_back_with_its_header(model_dir):
    header = read_safetensors_header(model_dir / WEIGHTS_NAME)
    state = read_safetensors(model_dir / WEIGHTS_NAME)
    assert set(header.tensors) == set(state)
    name = "decoder.embed.tokens.weight"
    assert header.tensors[name] == ("F32", (11, 8)) and header.metadata["polyformer_class"] == "DecoderOnlyTransformer"
    assert header.expected_bytes == (model_dir / WEIGHTS_NAME).stat().st_size


def test_a_truncated_file_says_how_many_bytes_it_should_have(model_dir):
    path = model_dir / WEIGHTS_NAME
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[: size - 1000])
    with pytest.raises(WeightsFileError, match=rf"truncated: expected {size:,} bytes, found {size - 1000:,}") as caught:
        DecoderOnlyTransformer.from_pretrained(model_dir)
    assert caught.value.path == path and str(path) in str(caught.value)
    path.write_bytes(path.read_bytes()[:20])  # cut inside the header
    with pytest.raises(WeightsFileError, match="truncated: the header alone needs"):
        read_safetensors(path)


@pytest.mark.parametrize(
    "content", [b"", b"abc", bytes(range(256)) * 20, b'{"not": "safetensors"}' * 10, b"\x08" + bytes(7) + b"[1, 2]  "]
)
def test_bytes_that_are_not_safetensors_say_so(tmp_path, content):
    path = tmp_path / WEIGHTS_NAME
    path.write_bytes(content)
    with pytest.raises(WeightsFileError, match="not a safetensors file"):
        read_state_dict(path)


def test_extra_bytes_and_an_inconsistent_header_are_damage(model_dir):
    path = model_dir / WEIGHTS_NAME
    path.write_bytes(path.read_bytes() + b"junk")
    with pytest.raises(WeightsFileError, match="4 bytes more than its header describes"):
        read_safetensors(path)
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(8))
    with pytest.raises(WeightsFileError, match="tensor 'w' is inconsistent"):
        read_safetensors(path)


def test_weights_of_another_shape_name_the_tensor(model_dir):
    name = "decoder.stack.layers.0.feed_forward.fc1.weight"
    _rewrite(model_dir / WEIGHTS_NAME, lambda state: state.update({name: torch.zeros(32, 8)}))
    with pytest.raises(WeightsFileError, match=rf"tensor {name} has shape \[32, 8\], the model needs \[16, 8\]"):
        DecoderOnlyTransformer.from_pretrained(model_dir)


def test_integer_weights_for_a_float_model_are_refused_and_half_precision_is_cast(model_dir):
    name = "decoder.embed.tokens.weight"
    _rewrite(model_dir / WEIGHTS_NAME, lambda state: state.update({name: state[name].half()}))
    loaded = DecoderOnlyTransformer.from_pretrained(model_dir)
    assert loaded.decoder.embed.tokens.weight.dtype == torch.float32
    _rewrite(model_dir / WEIGHTS_NAME, lambda state: state.update({name: torch.ones(11, 8, dtype=torch.int64)}))
    with pytest.raises(WeightsFileError, match=f"tensor {name} has dtype torch.int64, the model needs floating"):
        DecoderOnlyTransformer.from_pretrained(model_dir)


def test_damaged_torch_files(tmp_path):
    path = tmp_path / "state.pt"
    torch.save({"w": torch.arange(10000.0)}, path)
    assert torch.equal(read_torch_file(path)["w"], torch.arange(10000.0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsFileError, match="truncated or not a torch file"):
        read_torch_file(path)
    with zipfile.ZipFile(tmp_path / "good.pt", "w") as archive:
        archive.writestr("archive/data.pkl", b"x" * 100)
    flipped = bytearray((tmp_path / "good.pt").read_bytes())
    flipped[60] ^= 0xFF  # inside the member's bytes: its CRC no longer matches
    path.write_bytes(bytes(flipped))
    with pytest.raises(WeightsFileError, match="fail their checksum"):
        read_torch_file(path)
    path.write_bytes(b"")
    with pytest.raises(WeightsFileError, match="empty"):
        read_torch_file(path)
    with pytest.raises(WeightsFileError, match="file not found"):
        read_torch_file(tmp_path / "missing.pt")


def test_checksums_catch_a_flipped_bit_that_the_structure_check_cannot(model_dir):
    write_checksums(model_dir)
    assert all(report.ok and report.how == "checksum" for report in verify_directory(model_dir))
    path = model_dir / WEIGHTS_NAME
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # a flipped bit inside a tensor: the header is still right
    path.write_bytes(bytes(data))
    [bad] = [report for report in verify_directory(model_dir) if not report.ok]
    assert bad.path == path and "SHA-256 differs" in bad.problem
    assert all(report.ok for report in verify_directory(model_dir, hashes=False))  # only sizes and structure
    path.write_bytes(bytes(data[:-10]))
    problems = {report.path.name: report.problem for report in verify_directory(model_dir, hashes=False)}
    assert problems[WEIGHTS_NAME].startswith(f"truncated: expected {len(data):,} bytes, found {len(data) - 10:,}")
    (model_dir / "config.json").unlink()
    problems = {report.path.name: report.problem for report in verify_directory(model_dir)}
    assert problems["config.json"] == f"missing (listed in {CHECKSUMS_NAME})"


def test_without_checksums_each_file_is_checked_by_its_structure(model_dir):
    (model_dir / "notes.json").write_text("{not json")
    (model_dir / "readme.txt").write_text("anything")
    (model_dir / ".model.safetensors.tmp").write_bytes(b"a temporary leftover is not reported")
    reports = {report.path.name: report for report in verify_directory(model_dir)}
    assert set(reports) == {"config.json", WEIGHTS_NAME, "notes.json", "readme.txt"}
    assert reports[WEIGHTS_NAME].ok and reports[WEIGHTS_NAME].how == "structure"
    assert reports["notes.json"].problem.startswith("not valid JSON") and reports["readme.txt"].ok
