"""Load an encoder model directory, ours or Hugging Face BERT's, as the task a caller asks for.

Text (BERT) and bio (DNABERT) both keep encoder models as directories: ours (``config.json`` of an
:class:`EncoderConfig` + ``model.safetensors``) or Hugging Face BERT's (read by
:mod:`.convert_hf_bert`). :func:`load_encoder_directory` tells them apart, finds which head a
directory of ours holds from its weight names, and returns the model in eval mode; the domains add
their tokenizers around it.
"""

from __future__ import annotations

from pathlib import Path

from .config import EncoderConfig
from .convert_hf_bert import BERT_TASKS, is_hf_bert_directory, load_hf_bert
from .pretrained import CONFIG_NAME, MODEL_CLASS_KEY, WEIGHTS_NAME, PretrainedModel
from .weights import read_safetensors_header

__all__ = ["load_encoder_directory", "stored_encoder_task"]


def stored_encoder_task(directory: str | Path) -> str:
    """Which ``BERT_TASKS`` model one of our encoder directories holds (read from its weight names)."""
    header = read_safetensors_header(Path(directory) / WEIGHTS_NAME)
    names, saved_by = list(header.tensors), header.metadata.get(MODEL_CLASS_KEY)
    for task, (model_class, _) in BERT_TASKS.items():
        if saved_by == model_class.__name__:
            return task
    # Saved without the class name: tell by the weights (a classifier without BERT's pooler is
    # ambiguous; it is taken for a token classifier, as it was before the name was saved).
    if any(name.startswith("mlm_head.") for name in names):
        return "masked_lm"
    if "classifier.weight" in names:
        return "sequence_classification" if "backbone.pooler.0.weight" in names else "token_classification"
    return "base"


def load_encoder_directory(directory: str | Path, task: str | None = None) -> tuple[PretrainedModel, str]:
    """The encoder model in ``directory`` and where it comes from (``"polyformer"`` or ``"huggingface"``).

    Args:
        directory: our encoder directory or a Hugging Face BERT directory.
        task: a :data:`~polyformer.core.convert_hf_bert.BERT_TASKS` key; None = what the directory holds.
            ``"base"`` gives the bare encoder of any directory; another head than the stored one is an error.

    Raises:
        FileNotFoundError: no ``config.json``.
        ValueError: not an encoder config, an unknown task, or a head the directory lacks.
    """
    directory = Path(directory)
    if not (directory / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{directory / CONFIG_NAME} not found: give an encoder model directory")
    if task is not None and task not in BERT_TASKS:
        raise ValueError(f"unknown encoder task {task!r}; choose one of {sorted(BERT_TASKS)}")
    if is_hf_bert_directory(directory):
        return load_hf_bert(directory, task), "huggingface"
    EncoderConfig.load(directory / CONFIG_NAME)  # fails clearly for another model type
    stored = stored_encoder_task(directory)
    if task not in (None, stored, "base"):
        raise ValueError(f"{directory} holds a {stored} model, not a {task} model")
    model = BERT_TASKS[stored][0].from_pretrained(directory)
    if task == "base" and stored != "base":
        model = model.backbone  # the bare encoder of a head model
    return model.eval(), "polyformer"
