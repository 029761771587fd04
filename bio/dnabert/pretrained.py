"""Load and save a DNA encoder with its tokenizer and class names as one directory.

Two layouts load:

- ours: ``config.json`` of an :class:`~polyformer.core.EncoderConfig` + ``model.safetensors``, the
  tokenizer (``vocab.txt`` for k-mers, ``tokenizer.json`` for BPE) with ``dna_tokenizer.json`` saying
  which and how (k, overlapping), and for a classifier ``labels.json`` (class names in output order);
- DNABERT's: a Hugging Face ``BertForMaskedLM`` / ``BertForSequenceClassification`` /
  ``BertForTokenClassification`` directory (``config.json`` + ``model.safetensors`` or
  ``pytorch_model.bin``) with a k-mer ``vocab.txt``; the class names are its ``id2label``. The weight
  mapping is core's (:mod:`polyformer.core.convert_hf_bert`).

:func:`save_dnabert` writes either layout (``huggingface=True`` for DNABERT's, which ``transformers``
loads with the same outputs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from polyformer.core import EncoderOnlyTransformer, PretrainedModel
from polyformer.core.convert_hf_bert import save_hf_bert
from polyformer.core.encoder_loading import load_encoder_directory
from polyformer.core.pretrained import CONFIG_NAME

from ..bpe import TOKENIZER_FILE, DnaBpeTokenizer
from ..tokenizer import VOCAB_FILE, DnaTokenizer, KmerTokenizer

__all__ = ["LABELS_FILE", "TOKENIZER_SETTINGS", "DnaModel", "load_dna_tokenizer", "load_dnabert", "save_dna_files",
           "save_dna_tokenizer", "save_dnabert"]  # fmt: skip

TOKENIZER_SETTINGS = "dna_tokenizer.json"  # {"kind": "kmer", "k": 6, "overlapping": true} or {"kind": "bpe"}
LABELS_FILE = "labels.json"


@dataclass
class DnaModel:
    """A DNA encoder model, its tokenizer and class names, as loaded from one directory."""

    model: PretrainedModel
    tokenizer: DnaTokenizer
    labels: list[str] | None  # class names of a classifier, in output order; None for other models
    source: str  # "polyformer" or "huggingface"

    @property
    def encoder(self) -> EncoderOnlyTransformer:
        """The bare encoder (the head models hold it as ``backbone``)."""
        return self.model if isinstance(self.model, EncoderOnlyTransformer) else self.model.backbone

    @property
    def max_tokens(self) -> int | None:
        """The most tokens one input may have (None: no limit, e.g. ALiBi)."""
        return self.encoder.config.max_tokens


def save_dna_tokenizer(tokenizer: DnaTokenizer, directory: str | Path) -> None:
    """Write the tokenizer's files and ``dna_tokenizer.json`` into ``directory``."""
    directory = Path(directory)
    tokenizer.save(directory)
    if isinstance(tokenizer, KmerTokenizer):
        settings = {"kind": "kmer", "k": tokenizer.k, "overlapping": tokenizer.overlapping}
    else:
        settings = {"kind": "bpe"}
    (directory / TOKENIZER_SETTINGS).write_text(json.dumps(settings) + "\n", encoding="utf-8")


def load_dna_tokenizer(directory: str | Path) -> DnaTokenizer:
    """The tokenizer saved in ``directory``: as ``dna_tokenizer.json`` says, else a DNA BPE ``tokenizer.json``,
    else a DNABERT ``vocab.txt`` (overlapping k-mers, as DNABERT uses them).

    Raises:
        FileNotFoundError: none of those files.
        ValueError: files that are not a DNA tokenizer.
    """
    directory = Path(directory)
    settings_path = directory / TOKENIZER_SETTINGS
    if settings_path.is_file():
        settings = json.loads(settings_path.read_text(encoding="utf-8"))
        if settings.get("kind") == "bpe":
            return DnaBpeTokenizer.load(directory)
        tokenizer = KmerTokenizer.load(directory, overlapping=bool(settings.get("overlapping", True)))
        if tokenizer.k != settings.get("k", tokenizer.k):
            raise ValueError(f"{settings_path} says k={settings['k']} but {VOCAB_FILE} holds {tokenizer.k}-mers")
        return tokenizer
    if (directory / TOKENIZER_FILE).is_file():
        return DnaBpeTokenizer.load(directory)
    if (directory / VOCAB_FILE).is_file():
        return KmerTokenizer.load(directory)
    raise FileNotFoundError(f"{directory} has no DNA tokenizer ({VOCAB_FILE} for k-mers or {TOKENIZER_FILE} for BPE)")


def save_dna_files(directory: str | Path, tokenizer: DnaTokenizer, labels: list[str] | None) -> None:
    """Write what a DNA model directory holds besides the model: the tokenizer and the class names (if any)."""
    save_dna_tokenizer(tokenizer, directory)
    if labels is not None:
        (Path(directory) / LABELS_FILE).write_text(json.dumps(labels) + "\n", encoding="utf-8")


def _labels(directory: Path, source: str, num_labels: int) -> list[str]:
    path = directory / LABELS_FILE
    if path.is_file():
        labels = json.loads(path.read_text(encoding="utf-8"))
    elif source == "huggingface":
        id2label = json.loads((directory / CONFIG_NAME).read_text()).get("id2label") or {}
        labels = [str(id2label.get(str(i), f"LABEL_{i}")) for i in range(num_labels)]
    else:
        labels = [f"LABEL_{i}" for i in range(num_labels)]
    if len(labels) != num_labels:
        raise ValueError(f"{directory}: {len(labels)} class names for a classifier with {num_labels} outputs")
    return labels


def load_dnabert(directory: str | Path, task: str | None = None) -> DnaModel:
    """The DNA encoder in ``directory`` (ours or a Hugging Face DNABERT), its tokenizer and class names; eval mode.

    Args:
        directory: the model directory.
        task: "base", "masked_lm", "sequence_classification" or "token_classification"; None = what
            the directory holds.

    Raises:
        FileNotFoundError: no config, weights or tokenizer.
        ValueError: not an encoder, or a tokenizer whose vocabulary does not fit the model.
    """
    directory = Path(directory)
    if not (directory / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{directory / CONFIG_NAME} not found: give a DNA model directory")
    tokenizer = load_dna_tokenizer(directory)
    model, source = load_encoder_directory(directory, task)
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ValueError(
            f"the tokenizer in {directory} has {tokenizer.vocab_size} tokens but the model {model.config.vocab_size} "
            "embeddings; they do not belong together"
        )
    classifier = hasattr(model, "classifier")
    labels = _labels(directory, source, model.config.num_labels) if classifier else None
    return DnaModel(model, tokenizer, labels, source)


def save_dnabert(bundle: DnaModel, directory: str | Path, huggingface: bool = False) -> Path:
    """Write the model, its tokenizer and class names into ``directory`` (replaced if it exists).

    Args:
        bundle: what to save.
        directory: the target directory.
        huggingface: write a Hugging Face DNABERT directory (BERT layout, ``id2label`` = the class
            names, ``vocab.txt``) instead of ours.

    Raises:
        ValueError: ``huggingface`` with a model or tokenizer BERT cannot express (BPE, ALiBi, GEGLU).
    """
    directory = Path(directory)
    if huggingface:
        if not isinstance(bundle.tokenizer, KmerTokenizer):
            raise ValueError("a Hugging Face DNABERT directory holds a k-mer vocab.txt; this model uses BPE")
        save_hf_bert(bundle.model, directory)
        if bundle.labels is not None:
            config = json.loads((directory / CONFIG_NAME).read_text())
            config["id2label"] = {str(i): name for i, name in enumerate(bundle.labels)}
            config["label2id"] = {name: i for i, name in enumerate(bundle.labels)}
            (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        bundle.tokenizer.save(directory)
        return directory
    bundle.model.save_pretrained(directory)
    save_dna_files(directory, bundle.tokenizer, bundle.labels)
    return directory
