"""Load and save a BERT with its tokenizer as one directory, and compute sentence embeddings.

:func:`load_bert` takes our model directory (``config.json`` of an ``EncoderConfig`` +
``model.safetensors`` + the tokenizer's files) or a Hugging Face BERT directory (``BertModel``,
``BertForMaskedLM``, ``BertFor...Classification``, including sentence-transformers models such as
all-MiniLM-L6-v2, with ``tokenizer.json`` or ``vocab.txt``) and returns the model, its tokenizer
and how it pools sentence embeddings. The pooling follows sentence-transformers
(Reimers & Gurevych 2019): ``1_Pooling/config.json`` names the mode (mean, CLS or max),
``modules.json`` listing a ``Normalize`` module makes the vectors unit length, and
``sentence_bert_config.json``'s ``max_seq_length`` truncates; without those files, the mean of
the real tokens' last hidden states, not normalised.

Shape legend: B batch, T tokens, D model dim.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from polyformer.core import EncoderOnlyTransformer, PretrainedModel, mean_pool
from polyformer.core.encoder_loading import load_encoder_directory

from ..tokenizer import TOKENIZER_FILE, VOCAB_FILE, TextTokenizer

__all__ = [
    "POOLING_MODES",
    "BertBundle",
    "SentencePooling",
    "load_bert",
    "read_pooling",
    "save_bert",
    "sentence_embeddings",
]

POOLING_MODES = ("mean", "cls", "max")
_ST_POOLING_KEYS = {  # sentence-transformers' 1_Pooling/config.json flags -> our modes
    "pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
}  # fmt: skip
POOLING_FILE = "pooling.json"  # ours: {"mode": ..., "normalize": ..., "max_length": ...}


@dataclass(frozen=True)
class SentencePooling:
    """How token vectors become one sentence vector."""

    mode: str = "mean"  # mean | cls | max over the real tokens' last hidden states
    normalize: bool = False  # scale each vector to unit length
    max_length: int | None = None  # truncate inputs to this many tokens (None: the model's positions)

    def __post_init__(self) -> None:
        if self.mode not in POOLING_MODES:
            raise ValueError(f"pooling mode must be one of {POOLING_MODES}, got {self.mode!r}")


@dataclass
class BertBundle:
    """A BERT model, its tokenizer and its sentence pooling, as loaded from one directory."""

    model: PretrainedModel
    tokenizer: TextTokenizer
    pooling: SentencePooling
    source: str  # "polyformer" or "huggingface"

    @property
    def encoder(self) -> EncoderOnlyTransformer:
        """The bare encoder (the head models hold it as ``backbone``)."""
        return self.model if isinstance(self.model, EncoderOnlyTransformer) else self.model.backbone


def read_pooling(directory: str | Path) -> SentencePooling:
    """The sentence pooling a model directory declares (ours or sentence-transformers'), else mean."""
    directory = Path(directory)
    ours = directory / POOLING_FILE
    if ours.is_file():
        return SentencePooling(**_json(ours))
    mode, normalize, max_length = "mean", False, None
    modules = _json(directory / "modules.json") if (directory / "modules.json").is_file() else []
    pooling_dir = next((m.get("path") for m in modules if str(m.get("type", "")).endswith("Pooling")), "1_Pooling")
    settings = directory / str(pooling_dir) / "config.json"
    if settings.is_file():
        chosen = [name for key, name in _ST_POOLING_KEYS.items() if _json(settings).get(key)]
        if len(chosen) != 1:
            raise ValueError(f"{settings}: expected exactly one of mean, CLS or max pooling, found {chosen or 'none'}")
        mode = chosen[0]
    normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules)
    bert_config = directory / "sentence_bert_config.json"
    if bert_config.is_file() and isinstance(_json(bert_config).get("max_seq_length"), int):
        max_length = int(_json(bert_config)["max_seq_length"])
    return SentencePooling(mode, normalize, max_length)


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err


def load_bert(directory: str | Path, task: str | None = None) -> BertBundle:
    """The BERT in ``directory`` (ours or Hugging Face's), its tokenizer and pooling; the model in eval mode.

    Args:
        directory: the model directory.
        task: "base", "masked_lm", "sequence_classification" or "token_classification"; None =
            what the directory holds.

    Raises:
        FileNotFoundError: no config, weights or tokenizer.
        ValueError: not a BERT, or a tokenizer whose vocabulary does not fit the model.
    """
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory / 'config.json'} not found: give a BERT model directory")
    if not any((directory / name).is_file() for name in (TOKENIZER_FILE, VOCAB_FILE)):
        raise FileNotFoundError(f"{directory} has no tokenizer ({TOKENIZER_FILE} or {VOCAB_FILE})")
    model, source = load_encoder_directory(directory, task)
    tokenizer = TextTokenizer.load(directory)
    vocab = model.config.vocab_size
    if tokenizer.vocab_size > vocab:
        raise ValueError(
            f"the tokenizer in {directory} has {tokenizer.vocab_size} tokens but the model only {vocab} embeddings; "
            "they do not belong together"
        )
    pooling = read_pooling(directory)
    return BertBundle(model, tokenizer, pooling, source)


def save_bert(bundle: BertBundle, directory: str | Path) -> Path:
    """Write the model (ours: ``config.json`` + ``model.safetensors``), its tokenizer and pooling into ``directory``."""
    directory = Path(directory)
    bundle.model.save_pretrained(directory)
    bundle.tokenizer.save(directory)
    pooling = bundle.pooling
    (directory / POOLING_FILE).write_text(
        json.dumps({"mode": pooling.mode, "normalize": pooling.normalize, "max_length": pooling.max_length}) + "\n"
    )
    return directory


def _pool(hidden: Tensor, mask: Tensor, mode: str) -> Tensor:
    """(B, T, D) token vectors and (B, T) mask -> (B, D)."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return hidden.masked_fill(~mask.unsqueeze(-1), torch.finfo(hidden.dtype).min).amax(dim=1)
    return mean_pool(hidden, mask)


@torch.no_grad()
def sentence_embeddings(bundle: BertBundle, texts: list[str], batch_size: int = 32) -> Tensor:
    """One vector per text (len(texts), D), pooled and normalised as ``bundle.pooling`` says.

    Raises:
        ValueError: ``texts`` is empty or holds something other than strings.
    """
    if not texts:
        raise ValueError("no texts to embed")
    encoder, pooling = bundle.encoder, bundle.pooling
    limit = min(pooling.max_length or encoder.config.max_len, encoder.config.max_len)
    device = next(encoder.parameters()).device
    vectors = []
    for start in range(0, len(texts), batch_size):
        batch = bundle.tokenizer.encode(texts[start : start + batch_size], max_length=limit)
        ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
        hidden = encoder(ids, mask).last_hidden_state  # (B, T, D)
        pooled = _pool(hidden, mask.bool(), pooling.mode)
        vectors.append(F.normalize(pooled, dim=-1) if pooling.normalize else pooled)
    return torch.cat(vectors).float().cpu()
