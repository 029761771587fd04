"""Translation with core's encoder-decoder transformer (Vaswani et al. 2017), with one vocabulary shared by both
languages or a source vocabulary of its own (``source_tokenizer``; saved as ``source_tokenizer.json`` beside the
target's ``tokenizer.json``).

- :class:`TranslationPairs`: sentence pairs tokenized once into ``(src, tgt)`` id tensors, the
  target as ``BOS y EOS`` (what :class:`~polyformer.apps.engine.Seq2SeqTask` shifts for teacher
  forcing), pairs longer than ``max_tokens`` on either side dropped and counted;
  :func:`pad_pairs` is its collate function.
- :func:`translation_config`: the model config for a tokenizer (its vocabulary and special ids).
- :func:`translate`: batched beam search (or greedy) decoding to strings, longest inputs first.
- :func:`save_translation_model` / :func:`load_translation_model`: one directory with the model
  and its tokenizer.

Shape legend: B batch, S source length, T target length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from polyformer.core import EncoderDecoderTransformer, TransformerConfig

from ..tokenizer import TextTokenizer

__all__ = [
    "SOURCE_TOKENIZER_FILE",
    "TranslationPairs",
    "load_source_tokenizer",
    "load_translation_model",
    "pad_pairs",
    "save_tokenizers",
    "save_translation_model",
    "tokenizer_files",
    "translate",
    "translation_config",
]


def _special_ids(tokenizer: TextTokenizer) -> dict[str, int]:
    ids = {role: tokenizer.token_id(role) for role in ("pad", "bos", "eos")}
    missing = [role for role, value in ids.items() if value is None]
    if missing:
        raise ValueError(
            f"a translation tokenizer needs pad, bos and eos tokens; {tokenizer} lacks {missing} "
            "(train a 'bpe' or 'unigram' tokenizer)"
        )
    return {f"{role}_id": value for role, value in ids.items()}


SOURCE_TOKENIZER_FILE = "source_tokenizer.json"  # a separate source vocabulary, beside the target's tokenizer.json


def _check_source(tokenizer: TextTokenizer, source_tokenizer: TextTokenizer | None) -> None:
    if source_tokenizer is not None and source_tokenizer.pad_id != tokenizer.pad_id:
        raise ValueError(
            f"the source and target tokenizers must share the padding id (source {source_tokenizer.pad_id}, "
            f"target {tokenizer.pad_id})"
        )


def translation_config(
    tokenizer: TextTokenizer, source_tokenizer: TextTokenizer | None = None, **fields: Any
) -> TransformerConfig:
    """A :class:`TransformerConfig` over the target ``tokenizer``'s vocabulary and special ids (and the source
    tokenizer's vocabulary when it has its own), with ``fields`` on top."""
    _check_source(tokenizer, source_tokenizer)
    source = None if source_tokenizer is None else source_tokenizer.vocab_size
    ids = _special_ids(tokenizer)
    return TransformerConfig(vocab_size=tokenizer.vocab_size, src_vocab_size=source, **ids, **fields)


@dataclass
class TranslationPairs(Dataset):
    """Tokenized pairs: item ``i`` is ``(src (S,), tgt (T,))`` with ``tgt = BOS y EOS``.

    Args:
        sources, targets: the sentences.
        tokenizer: the (target, or shared) tokenizer (its template appends EOS).
        max_tokens: pairs with more tokens than this on either side are dropped (counted in ``dropped``).
        source_tokenizer: the source side's own tokenizer, or None (shared).
    """

    sources: Sequence[str]
    targets: Sequence[str]
    tokenizer: TextTokenizer
    max_tokens: int = 128
    source_tokenizer: TextTokenizer | None = None
    dropped: int = 0
    items: list[tuple[Tensor, Tensor]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if len(self.sources) != len(self.targets):
            raise ValueError(f"{len(self.sources)} sources but {len(self.targets)} targets")
        bos = _special_ids(self.tokenizer)["bos_id"]
        source = self.source_tokenizer or self.tokenizer
        src_all = source.tokenizer.encode_batch(list(self.sources))
        tgt_all = self.tokenizer.tokenizer.encode_batch(list(self.targets))
        for src, tgt in zip(src_all, tgt_all):
            if len(src.ids) > self.max_tokens or len(tgt.ids) + 1 > self.max_tokens:
                self.dropped += 1
                continue
            self.items.append((torch.tensor(src.ids), torch.tensor([bos, *tgt.ids])))
        if not self.items:
            raise ValueError(f"no pair fits max_tokens={self.max_tokens} (all {self.dropped} are longer)")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.items[index]


def pad_pairs(batch: Sequence[tuple[Tensor, Tensor]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-pad a list of ``(src, tgt)`` to (B, S) and (B, T) with ``pad_id``."""
    sources = torch.nn.utils.rnn.pad_sequence([src for src, _ in batch], batch_first=True, padding_value=pad_id)
    targets = torch.nn.utils.rnn.pad_sequence([tgt for _, tgt in batch], batch_first=True, padding_value=pad_id)
    return sources, targets


@torch.no_grad()
def translate(
    model: EncoderDecoderTransformer,
    tokenizer: TextTokenizer,
    texts: Sequence[str],
    num_beams: int = 4,
    max_new_tokens: int | None = None,
    batch_size: int = 32,
    length_penalty: float = 1.0,
    source_tokenizer: TextTokenizer | None = None,
) -> list[str]:
    """Translate ``texts`` (in their order), ``batch_size`` at a time, longest first to pad little.

    Args:
        max_new_tokens: most target tokens; default 1.5x the source length + 10, within the model's positions.
        source_tokenizer: encodes the texts when the source side has its own vocabulary.

    Raises:
        ValueError: ``texts`` holds something other than strings.
    """
    if any(not isinstance(text, str) for text in texts):
        raise ValueError("translate takes strings")
    model.eval()
    device = next(model.parameters()).device
    limit = model.config.max_len
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out: list[str] = [""] * len(texts)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = (source_tokenizer or tokenizer).encode([texts[i] for i in chunk], max_length=limit)
        src, mask = batch.input_ids.to(device), batch.attention_mask.bool().to(device)
        steps = max_new_tokens or int(1.5 * src.shape[1]) + 10
        steps = max(1, min(steps, limit - 1))
        generated = model.generate(src, mask, max_new_tokens=steps, num_beams=num_beams, length_penalty=length_penalty)
        for index, text in zip(chunk, tokenizer.decode(generated.sequences.cpu())):
            out[index] = text.strip()
    return out


def save_translation_model(
    model: EncoderDecoderTransformer,
    tokenizer: TextTokenizer,
    directory: str | Path,
    source_tokenizer: TextTokenizer | None = None,
) -> Path:
    """The model (``config.json`` + ``model.safetensors``) and its tokenizer(s) in one directory."""
    model.save_pretrained(directory)
    save_tokenizers(directory, tokenizer, source_tokenizer)
    return Path(directory)


def tokenizer_files(tokenizer: TextTokenizer, source_tokenizer: TextTokenizer | None = None) -> dict[str, str]:
    """File name -> text of the tokenizer(s) a translation model directory holds."""
    files = tokenizer.files()
    if source_tokenizer is not None:
        files[SOURCE_TOKENIZER_FILE] = source_tokenizer.files()["tokenizer.json"]
    return files


def save_tokenizers(directory: str | Path, tokenizer: TextTokenizer, source_tokenizer: TextTokenizer | None) -> None:
    """Write :func:`tokenizer_files` into ``directory``."""
    for name, text in tokenizer_files(tokenizer, source_tokenizer).items():
        (Path(directory) / name).write_text(text, encoding="utf-8")


def load_source_tokenizer(directory: str | Path) -> TextTokenizer | None:
    """The source side's own tokenizer of a translation model directory, or None when the vocabulary is shared."""
    path = Path(directory) / SOURCE_TOKENIZER_FILE
    return TextTokenizer.load(path) if path.is_file() else None


def load_translation_model(directory: str | Path) -> tuple[EncoderDecoderTransformer, TextTokenizer]:
    """A directory written by :func:`save_translation_model` (or a training run's ``model/``); the source
    tokenizer, if the model has one, comes from :func:`load_source_tokenizer`.

    Raises:
        FileNotFoundError: no model or no tokenizer there.
        ValueError: the tokenizer(s) do not fit the model's vocabularies or special ids.
    """
    directory = Path(directory)
    model = EncoderDecoderTransformer.from_pretrained(directory)
    tokenizer = TextTokenizer.load(directory)
    expected = _special_ids(tokenizer)
    found = {name: getattr(model.config, name) for name in expected}
    if tokenizer.vocab_size != model.config.vocab_size or found != expected:
        raise ValueError(
            f"the tokenizer in {directory} ({tokenizer.vocab_size} tokens, {expected}) does not match the model "
            f"({model.config.vocab_size} tokens, {found})"
        )
    source = load_source_tokenizer(directory)
    wanted = model.config.src_vocab_size
    if (source is None) != (wanted is None) or (source is not None and source.vocab_size != wanted):
        raise ValueError(
            f"the model in {directory} has a source vocabulary of {wanted or 'the target'}, but the directory holds "
            f"{'no' if source is None else source.vocab_size} separate source tokenizer"
        )
    return model, tokenizer
