"""Configs validate and round-trip; save_pretrained/from_pretrained restores a model exactly."""

import json
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from polyformer.core import (
    ConfigBase,
    DecoderOnlyTransformer,
    EncoderDecoderTransformer,
    LearnedPositionalEmbedding,
    LearnedPositionalEmbedding2D,
    PretrainedModel,
    TransformerConfig,
    atomic_directory,
    create_model,
    list_presets,
    read_state_dict,
    rename_by_rules,
)
from polyformer.core.pretrained import unique_state_dict


def test_default_config_is_the_paper_base_model():
    config = TransformerConfig()
    sizes = (config.d_model, config.num_heads, config.d_ff, config.encoder_layers, config.decoder_layers)
    assert sizes == (512, 8, 2048, 6, 6)
    assert config.dropout == 0.1 and config.position == "sinusoidal" and not config.norm_first
    assert TransformerConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(d_model=100, num_heads=8), "num_heads=8 must divide d_model=100"),
        (dict(num_kv_heads=3), "num_kv_heads=3"),
        (dict(activation="tanh"), "activation must be one of"),
        (dict(position="xyz"), "position must be one of"),
        (dict(dropout=1.5), "dropout must be in"),
        (dict(vocab_size=10, eos_id=12), "eos_id=12 is outside the vocabulary"),
    ],
)
def test_invalid_configs_raise_value_error(fields, message):
    with pytest.raises(ValueError, match=message):
        TransformerConfig(**fields)


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="unknown attention backend 'fastest'"):
        create_model("transformer_tiny", backend="fastest")


def test_from_dict_rejects_unknown_fields_and_wrong_type():
    with pytest.raises(ValueError, match="unknown TransformerConfig field"):
        TransformerConfig.from_dict({"d_model": 64, "num_heads": 4, "widht": 3})
    with pytest.raises(ValueError, match="model type 'vit'"):
        TransformerConfig.from_dict({"model_type": "vit"})


@pytest.mark.parametrize("preset", ["transformer_tiny", "decoder_lm_tiny"])
def test_save_and_load_round_trip_gives_identical_outputs(tmp_path, preset):
    model = create_model(preset, vocab_size=40).eval()
    path = model.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((path / "config.json").read_text())["model_type"] == "transformer"
    cls = EncoderDecoderTransformer if preset == "transformer_tiny" else DecoderOnlyTransformer
    loaded = cls.from_pretrained(path)
    ids = torch.randint(3, 40, (2, 6))
    with torch.no_grad():
        if preset == "transformer_tiny":
            a, b = model(ids, ids), loaded(ids, ids)
        else:
            a, b = model(ids), loaded(ids)
    assert torch.equal(a, b)
    assert loaded.decoder.lm_head.weight is loaded.decoder.embed.tokens.weight  # tying survives the round trip
    # Saving again over the same directory replaces it cleanly.
    model.save_pretrained(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_untied_separate_vocab_round_trip(tmp_path):
    config = TransformerConfig(
        vocab_size=30, src_vocab_size=20, d_model=32, num_heads=4, encoder_layers=1, decoder_layers=1, d_ff=64,
        tie_embeddings=False,
    )  # fmt: skip
    model = EncoderDecoderTransformer(config).eval()
    loaded = EncoderDecoderTransformer.from_pretrained(model.save_pretrained(tmp_path / "m"))
    src, tgt = torch.randint(3, 20, (2, 5)), torch.randint(3, 30, (2, 4))
    with torch.no_grad():
        assert torch.equal(model(src, tgt), loaded(src, tgt))


def test_from_pretrained_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        EncoderDecoderTransformer.from_pretrained(tmp_path)
    model = create_model("transformer_tiny")
    model.save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="do not fit"):
        DecoderOnlyTransformer.from_pretrained(tmp_path / "m")


def test_out_of_vocabulary_ids_are_rejected():
    model = create_model("transformer_tiny", vocab_size=40)
    with pytest.raises(ValueError, match="outside"):
        model(torch.tensor([[1, 45]]), torch.tensor([[1]]))


def test_presets_are_registered():
    names = {p.name for p in list_presets()}
    assert {"transformer_base", "transformer_tiny", "decoder_lm_tiny"} <= names


def test_atomic_directory_has_the_mode_of_a_plain_directory(tmp_path):
    (tmp_path / "plain").mkdir()
    with atomic_directory(tmp_path / "saved") as tmp:
        (tmp / "file.txt").write_text("x")
    assert (tmp_path / "saved" / "file.txt").read_text() == "x"
    assert (tmp_path / "saved").stat().st_mode == (tmp_path / "plain").stat().st_mode
    assert {p.name for p in tmp_path.iterdir()} == {"plain", "saved"}  # no temporary directory left behind


def test_read_state_dict_reads_safetensors_and_unwraps_torch_checkpoints(tmp_path):
    state = {"a.weight": torch.randn(2, 3), "b": torch.arange(4)}
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "ckpt.pth")
    for name in ("w.safetensors", "ckpt.pth"):
        loaded = read_state_dict(tmp_path / name)
        assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], v) for k, v in state.items())


class _NotAllowed:  # unpickling this needs code execution, which weights_only refuses
    pass


def test_read_state_dict_refuses_what_is_not_a_state_dict(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_state_dict(tmp_path / "missing.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="does not hold a state dict"):
        read_state_dict(tmp_path / "list.pth")
    torch.save({"w": _NotAllowed()}, tmp_path / "object.pth")
    with pytest.raises(ValueError, match="weights_only=True"):
        read_state_dict(tmp_path / "object.pth")


def test_rename_by_rules_first_match_wins():
    rules = [(r"^blocks\.(\d+)\.attn\.", r"layers.\1.attention."), (r"^blocks\.", "other.")]
    assert rename_by_rules("blocks.3.attn.proj.weight", rules) == "layers.3.attention.proj.weight"
    assert rename_by_rules("blocks.3.mlp.fc1.weight", rules) == "other.3.mlp.fc1.weight"
    assert rename_by_rules("head.weight", rules) is None


def test_unique_state_dict_keeps_the_first_name_of_each_tied_tensor():
    weight = torch.randn(4, 3)
    state = {"embed.weight": weight, "head.weight": weight, "head.bias": torch.zeros(4), "rows": weight[1:]}
    unique = unique_state_dict(state)
    assert list(unique) == ["embed.weight", "head.bias", "rows"]  # a slice at another offset is its own tensor
    assert torch.equal(unique["rows"], weight[1:]) and unique["rows"].is_contiguous()


@dataclass
class _TiedConfig(ConfigBase):
    model_type = "tied_test_model"

    vocab: int = 7
    dim: int = 3


class _Tied(PretrainedModel):
    config_class = _TiedConfig

    def __init__(self, config: _TiedConfig):
        super().__init__(config)
        self.head = nn.Linear(config.dim, config.vocab)
        self.embed = nn.Embedding(config.vocab, config.dim)
        self.head.weight = self.embed.weight
        self.positions = nn.ModuleList(
            [LearnedPositionalEmbedding(5, config.dim), LearnedPositionalEmbedding2D((2, 2), config.dim, 1)]
        )
        self.norm = nn.LayerNorm(config.dim)


def test_save_pretrained_writes_a_given_state_without_tied_copies(tmp_path):
    model = _Tied(_TiedConfig())
    state = {name: tensor * 2 for name, tensor in model.state_dict().items()}  # e.g. gathered from FSDP shards
    state["embed.weight"] = state["head.weight"]
    saved = load_file(str(model.save_pretrained(tmp_path / "m", state=state) / "model.safetensors"))
    assert sorted(saved) == sorted(set(state) - {"embed.weight"})
    loaded = _Tied.from_pretrained(tmp_path / "m")
    assert loaded.embed.weight is loaded.head.weight and torch.equal(loaded.head.weight, state["head.weight"])
    assert torch.equal(loaded.norm.bias, state["norm.bias"])


def test_no_weight_decay_names_token_and_learned_position_embeddings():
    assert _Tied(_TiedConfig()).no_weight_decay() == {"embed.weight", "positions.0.weight", "positions.1.weight"}
    model = create_model("transformer_tiny", vocab_size=40, position="learned")
    names = model.no_weight_decay()
    owners = {type(model.get_submodule(name.rpartition(".")[0])) for name in names}
    assert owners == {nn.Embedding, LearnedPositionalEmbedding}
