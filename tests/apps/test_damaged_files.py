"""Damaged weights and model directories of another family, through every command and pipeline that loads a model:
one clear line, a non-zero exit code, no traceback; from Python, one exception type to catch."""

import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file

from polyformer.apps import pipeline
from polyformer.apps.cli import main
from polyformer.apps.pipelines import SHIPPED_CHECKPOINTS, ModelFamilyError
from polyformer.core.pretrained import WEIGHTS_NAME
from polyformer.core.weights import WeightsFileError, read_safetensors, read_safetensors_header

CLIP = "speech/data/librivox/sense_and_sensibility_01_austen_64kb-0870.flac"
DNA = "ACGTTGCAAGGCTTACCGATCGATCGGATCCATGCAGTACGATCGATTTACGGCATGCAA"

# shipped model -> (the command line that loads it, with {model} and {image}; the pipeline task)
LOADERS = {
    "vit_fashion_mnist": ("vision predict --model {model} {image}", "image-classification"),
    "detr_shapes": ("vision detect --model {model} {image}", "object-detection"),
    "translation_en_es": ("text translate --model {model} hello", "translation"),
    "dnabert_splice": (f"bio predict --model {{model}} {DNA}", "dna-classification"),
    "speech_spoken": (f"speech transcribe --model {{model}} {CLIP}", "automatic-speech-recognition"),
    "speech_ctc_spoken": (f"speech transcribe --model {{model}} {CLIP}", "automatic-speech-recognition"),
}
DAMAGE = ("truncated", "random-bytes", "wrong-dtype", "wrong-shape")
EXPECTED = {
    "truncated": "truncated: expected",
    "random-bytes": "not a safetensors file",
    "wrong-dtype": "has dtype torch.int64, the model needs floating-point",
    "wrong-shape": "the model needs [",
}


def _damage(path, kind: str) -> None:
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:100_000])
        return
    if kind == "random-bytes":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
        return
    state = read_safetensors(path)
    name = next(name for name, tensor in state.items() if tensor.is_floating_point() and tensor.dim() == 2)
    tensor = state[name]
    state[name] = torch.ones_like(tensor, dtype=torch.int64) if kind == "wrong-dtype" else tensor[:-1].clone()
    save_file(state, str(path), metadata=read_safetensors_header(path).metadata)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """(model, kind) -> a copy of the shipped model directory with its weights damaged that way."""
    root = tmp_path_factory.mktemp("damaged")
    copies = {}
    for model in LOADERS:
        for kind in DAMAGE:
            target = root / f"{model}-{kind}"
            shutil.copytree(SHIPPED_CHECKPOINTS[model], target)
            _damage(target / WEIGHTS_NAME, kind)
            copies[model, kind] = target
    return copies


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("image") / "grey.png"
    Image.fromarray(np.full((28, 28), 128, dtype=np.uint8)).save(path)
    return path


def _one_clear_line(result, *expected: str) -> str:
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # a handled error, not a crash
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("kind", DAMAGE)
@pytest.mark.parametrize("model", list(LOADERS))
def test_each_command_reports_damaged_weights_in_one_line(damaged, image, model, kind):
    directory = damaged[model, kind]
    args = LOADERS[model][0].format(model=directory, image=image).split()
    result = CliRunner().invoke(main, args)
    _one_clear_line(result, str(directory / WEIGHTS_NAME), EXPECTED[kind])


@pytest.mark.parametrize("model", list(LOADERS))
def test_each_pipeline_raises_one_exception_type(damaged, model):
    for kind in ("truncated", "wrong-shape"):
        with pytest.raises(WeightsFileError, match=EXPECTED[kind].replace("[", r"\[")) as caught:
            pipeline(LOADERS[model][1], model=str(damaged[model, kind]))
        assert caught.value.path == damaged[model, kind] / WEIGHTS_NAME


@pytest.mark.parametrize(
    "args, holds, use",
    [
        ("text generate --model translation_en_es hello", "a translation model", "polyformer text translate"),
        ("text translate --model dnabert_splice hello", "a BERT-style encoder", "polyformer text classify"),
        ("speech transcribe --model vit_fashion_mnist " + CLIP, "an image classifier (ViT)", "vision predict"),
        ("vision predict --model speech_spoken {image}", "a speech recogniser (Whisper)", "speech transcribe"),
        ("vision detect --model vit_fashion_mnist {image}", "an image classifier", 'pipeline("image-classification")'),
        ("bio predict --model detr_shapes " + DNA, "an object detector (DETR)", "polyformer vision detect"),
    ],
)
def test_a_model_of_another_family_names_the_command_that_takes_it(image, args, holds, use):
    result = CliRunner().invoke(main, args.format(image=image).split())
    _one_clear_line(result, f"holds {holds}", ", but ", use)


def test_the_pipeline_refuses_another_family_with_a_typed_error():
    with pytest.raises(ModelFamilyError, match=r'translation model .* use it with .* or pipeline\("translation"\)'):
        pipeline("text-generation", model="translation_en_es")


def test_check_reports_each_file(damaged):
    result = CliRunner().invoke(main, ["check", "speech_spoken", "translation_en_es"])
    assert result.exit_code == 0, result.output
    files = [p for name in ("speech_spoken", "translation_en_es") for p in SHIPPED_CHECKPOINTS[name].iterdir()]
    assert result.output.count("ok ") == len(files) and "all files intact" in result.output
    bad = damaged["speech_spoken", "truncated"]
    result = CliRunner().invoke(main, ["check", str(bad)])
    assert result.exit_code == 1
    assert f"DAMAGED  {bad / WEIGHTS_NAME}: truncated: expected 23," in result.output
    assert "Error: 1 damaged file(s)" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "args, model, kind",
    [
        ("text generate --model {model} hello", "translation_en_es", "truncated"),
        ("text classify --model {model} hello", "dnabert_splice", "truncated"),
        ("text eval bible --model {model}", "translation_en_es", "wrong-shape"),
        ("speech eval librivox --model {model}", "speech_spoken", "random-bytes"),
        ("vision eval vision/data/embedded/fashion_mnist --model {model}", "vit_fashion_mnist", "wrong-dtype"),
        ("speech finetune-asr librivox --init {model} --max-steps 1 --out {out}", "speech_spoken", "truncated"),
        ("bio finetune splice --init {model} --max-steps 1 --out {out}", "dnabert_splice", "random-bytes"),
    ],
)
def test_evaluation_and_fine_tuning_commands_report_damaged_weights_too(damaged, tmp_path, args, model, kind):
    directory = damaged[model, kind]
    result = CliRunner().invoke(main, args.format(model=directory, out=tmp_path / "run").split())
    _one_clear_line(result, str(directory / WEIGHTS_NAME), EXPECTED[kind])
    assert not (tmp_path / "run").exists()
