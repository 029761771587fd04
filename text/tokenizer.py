"""Tokenizers for the text models, through the Hugging Face ``tokenizers`` library (nothing hand-written).

:class:`TextTokenizer` wraps a ``tokenizers.Tokenizer`` and knows which of its tokens play the
roles a model needs (padding, unknown, class/separator, mask, begin/end of sequence). It is

- trained on the user's text files: ``TextTokenizer.train(files, kind=...)`` with ``kind``
  ``"wordpiece"`` (BERT: lower-casing optional, ``[CLS] A [SEP] B [SEP]``), ``"bpe"``
  (byte-level, GPT-2 style: any text is encodable, ``A </s>``) or ``"unigram"`` (SentencePiece
  style with a metaspace: ``A </s>``);
- loaded from a ``tokenizer.json`` file, a BERT ``vocab.txt``, or a directory holding either (a
  Hugging Face model directory or one of ours), with the token roles read from its
  ``tokenizer_config.json`` / ``special_tokens_map.json`` when present;
- saved as ``tokenizer.json`` + ``tokenizer_config.json`` (the layout ``transformers``'
  ``PreTrainedTokenizerFast`` also reads), inside every model directory, so that a directory
  is all a user needs.

``encode`` returns padded (B, T) id and attention-mask tensors; ``decode`` turns ids back into text.

Shape legend: B batch, T tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from torch import Tensor

__all__ = [
    "TOKENIZER_CONFIG",
    "TOKENIZER_FILE",
    "TOKENIZER_KINDS",
    "EncodedBatch",
    "SpecialTokens",
    "TextTokenizer",
    "pad_token_ids",
]

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
VOCAB_FILE = "vocab.txt"
BPE_VOCAB, BPE_MERGES = "vocab.json", "merges.txt"  # GPT-2's byte-level BPE files
TOKENIZER_KINDS = ("wordpiece", "bpe", "unigram")


@dataclass(frozen=True)
class SpecialTokens:
    """The strings of the tokens that play a role; None = the tokenizer has no such token."""

    pad: str | None = None  # padding
    unk: str | None = None  # unknown
    cls: str | None = None  # start of a BERT input (classification token)
    sep: str | None = None  # end of a BERT segment
    mask: str | None = None  # masked-LM target
    bos: str | None = None  # begin of sequence
    eos: str | None = None  # end of sequence

    def present(self) -> list[str]:
        """The distinct token strings, in field order."""
        seen: list[str] = []
        for item in fields(self):
            value = getattr(self, item.name)
            if value is not None and value not in seen:
                seen.append(value)
        return seen


WORDPIECE_SPECIALS = SpecialTokens(pad="[PAD]", unk="[UNK]", cls="[CLS]", sep="[SEP]", mask="[MASK]")
SEQUENCE_SPECIALS = SpecialTokens(pad="<pad>", unk="<unk>", mask="<mask>", bos="<s>", eos="</s>")
# Names Hugging Face tokenizer configs use for the roles, and the strings to guess from when none is given.
_HF_NAMES = {
    "pad": "pad_token", "unk": "unk_token", "cls": "cls_token", "sep": "sep_token", "mask": "mask_token",
    "bos": "bos_token", "eos": "eos_token",
}  # fmt: skip
_GUESSES = {
    "pad": ("[PAD]", "<pad>"), "unk": ("[UNK]", "<unk>"), "cls": ("[CLS]",), "sep": ("[SEP]",),
    "mask": ("[MASK]", "<mask>"), "bos": ("<s>", "<|endoftext|>"), "eos": ("</s>", "<|endoftext|>"),
}  # fmt: skip


@dataclass
class EncodedBatch:
    """Token ids and attention mask of a batch, right-padded to its longest sequence."""

    input_ids: Tensor  # (B, T) int64
    attention_mask: Tensor  # (B, T) int64, 1 = real token
    token_type_ids: Tensor | None = None  # (B, T) int64 segment ids (pairs), else None

    @property
    def lengths(self) -> list[int]:
        return self.attention_mask.sum(dim=1).tolist()


def _build(kind: str, lowercase: bool) -> tuple[Tokenizer, Any, SpecialTokens]:
    """An untrained tokenizer of ``kind``, its trainer class and its special tokens."""
    if kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=None)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        return tokenizer, trainers.WordPieceTrainer, WORDPIECE_SPECIALS
    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=None))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        steps = [normalizers.NFC()] + ([normalizers.Lowercase()] if lowercase else [])
        tokenizer.normalizer = normalizers.Sequence(steps)
        return tokenizer, trainers.BpeTrainer, SEQUENCE_SPECIALS
    if kind == "unigram":
        tokenizer = Tokenizer(models.Unigram())
        steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
        tokenizer.normalizer = normalizers.Sequence(steps)
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        return tokenizer, trainers.UnigramTrainer, SEQUENCE_SPECIALS
    raise ValueError(f"unknown tokenizer kind {kind!r}; choose one of {', '.join(TOKENIZER_KINDS)}")


def _post_processor(specials: SpecialTokens, tokenizer: Tokenizer) -> processors.TemplateProcessing:
    """BERT's ``[CLS] A [SEP] (B [SEP])`` when the tokenizer has CLS/SEP, else ``A </s> (B </s>)``."""
    if specials.cls and specials.sep:
        ids = {t: tokenizer.token_to_id(t) for t in (specials.cls, specials.sep)}
        return processors.TemplateProcessing(
            single=f"{specials.cls} $A {specials.sep}", pair=f"{specials.cls} $A {specials.sep} $B:1 {specials.sep}:1",
            special_tokens=list(ids.items()),
        )  # fmt: skip
    eos = specials.eos
    return processors.TemplateProcessing(
        single=f"$A {eos}", pair=f"$A {eos} $B:1 {eos}:1", special_tokens=[(eos, tokenizer.token_to_id(eos))]
    )


def _check_files(files: Sequence[str | Path]) -> list[str]:
    """The files as strings; each must exist and be UTF-8 text."""
    if not files:
        raise ValueError("no training files given for the tokenizer")
    checked = []
    for file in files:
        path = Path(file)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer training file {path} not found")
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as err:
                    reason = f"not valid UTF-8 ({err.reason}); convert the file"
                    raise ValueError(f"{path}, line {number}: {reason}") from err
        checked.append(str(path))
    return checked


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` plus the roles of its special tokens; see the module docstring.

    Args:
        tokenizer: the Hugging Face tokenizer.
        specials: which of its tokens pad, mark unknowns, classes, separators, masks, begin and end.
        max_length: the longest input the model it belongs to takes (None = no limit).
    """

    def __init__(self, tokenizer: Tokenizer, specials: SpecialTokens, max_length: int | None = None):
        missing = [token for token in specials.present() if tokenizer.token_to_id(token) is None]
        if missing:
            raise ValueError(f"special tokens {missing} are not in the tokenizer's vocabulary")
        tokenizer.no_padding()  # padding and truncation are encode()'s job (a tokenizer.json may carry its own)
        tokenizer.no_truncation()
        self.tokenizer = tokenizer
        self.specials = specials
        self.max_length = max_length

    # -- building -----------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        files: Sequence[str | Path],
        kind: str = "wordpiece",
        vocab_size: int = 8000,
        min_frequency: int = 2,
        lowercase: bool = False,
        max_length: int | None = None,
    ) -> TextTokenizer:
        """Train a ``kind`` tokenizer (see :data:`TOKENIZER_KINDS`) on UTF-8 text files.

        Raises:
            FileNotFoundError: a file does not exist.
            ValueError: an unknown kind, a file that is not UTF-8 (naming the line), or a vocabulary too small.
        """
        tokenizer, trainer_class, specials = _build(kind, lowercase)
        if vocab_size < len(specials.present()) + 2:
            raise ValueError(f"vocab_size {vocab_size} is too small for the special tokens {specials.present()}")
        options: dict[str, Any] = dict(vocab_size=vocab_size, special_tokens=specials.present(), show_progress=False)
        if kind == "bpe":
            options.update(min_frequency=min_frequency, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        elif kind == "wordpiece":
            options.update(min_frequency=min_frequency)
        else:
            options.update(unk_token=specials.unk)
        tokenizer.train(_check_files(files), trainer_class(**options))
        tokenizer.post_processor = _post_processor(specials, tokenizer)
        return cls(tokenizer, specials, max_length)

    @classmethod
    def from_vocab(cls, vocab_file: str | Path, lowercase: bool = True, max_length: int | None = None) -> TextTokenizer:
        """A BERT WordPiece tokenizer from a ``vocab.txt`` (one token per line, the line number is its id)."""
        path = Path(vocab_file)
        try:
            tokens = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"cannot read the vocabulary {path}: {err}") from err
        vocab = {token: index for index, token in enumerate(tokens) if token}
        if "[UNK]" not in vocab:
            raise ValueError(f"{path} has no [UNK] token; is it a BERT vocab.txt?")
        tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        specials = SpecialTokens(**{role: token for role, token in vars(WORDPIECE_SPECIALS).items() if token in vocab})
        tokenizer.post_processor = _post_processor(specials, tokenizer)
        return cls(tokenizer, specials, max_length)

    @classmethod
    def from_bpe_files(
        cls,
        vocab: str | Path,
        merges: str | Path,
        settings: dict[str, Any] | None = None,
        max_length: int | None = None,
    ) -> TextTokenizer:
        """A GPT-2 style byte-level BPE from ``vocab.json`` + ``merges.txt`` (no tokens added around the text)."""
        try:
            model = models.BPE.from_file(str(vocab), str(merges))
        except Exception as err:  # tokenizers raises a bare Exception on malformed files
            raise ValueError(f"cannot read the BPE files {vocab} and {merges}: {err}") from err
        tokenizer = Tokenizer(model)
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        return cls(tokenizer, _roles(tokenizer, settings or {}), max_length)

    @classmethod
    def from_marian(cls, directory: str | Path, side: str = "source") -> TextTokenizer:
        """A Marian (OPUS-MT) tokenizer: the SentencePiece model ``source.spm`` / ``target.spm`` over the ids of
        ``vocab.json``, as ``transformers``' ``MarianTokenizer`` encodes (tested to the same ids).

        The SentencePiece model's pieces and scores become a ``tokenizers`` Unigram model, its normaliser
        (the precompiled NFKC map) a ``Precompiled`` normaliser, and its whitespace handling a metaspace;
        EOS (``</s>``) is appended. Reading the ``.spm`` file needs the PyPI ``sentencepiece`` package.

        Raises:
            FileNotFoundError: the ``.spm`` file or ``vocab.json`` is missing.
            ValueError: ``side`` is not "source" or "target", or the files do not fit.
        """
        if side not in ("source", "target"):
            raise ValueError(f"side must be 'source' or 'target', got {side!r}")
        directory = Path(directory)
        spm_file, vocab_file = directory / f"{side}.spm", directory / BPE_VOCAB
        for needed in (spm_file, vocab_file):
            if not needed.is_file():
                raise FileNotFoundError(f"{needed} not found: a Marian directory holds source.spm, target.spm and "
                                        "vocab.json")  # fmt: skip
        try:
            from sentencepiece import sentencepiece_model_pb2
        except ImportError as err:
            message = "reading .spm files needs sentencepiece and protobuf: pip install sentencepiece protobuf"
            raise ValueError(message) from err
        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(spm_file.read_bytes())
        vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
        if "<unk>" not in vocab or "</s>" not in vocab:
            raise ValueError(f"{vocab_file} has no <unk> or </s> token; is it a Marian vocabulary?")
        scores = {piece.piece: piece.score for piece in proto.pieces}
        never = min(scores.values(), default=0.0) - 10.0  # pieces of the other side's model: never chosen here
        ordered = sorted(vocab.items(), key=lambda item: item[1])
        tokenizer = Tokenizer(models.Unigram([(piece, scores.get(piece, never)) for piece, _ in ordered],
                                             unk_id=vocab["<unk>"]))  # fmt: skip
        steps = [normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap)]
        tokenizer.normalizer = normalizers.Sequence([*steps, normalizers.Replace(" {2,}", " ")])
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
        tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
        tokenizer.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A $B </s>", special_tokens=[("</s>", vocab["</s>"])]
        )
        specials = SpecialTokens(pad="<pad>" if "<pad>" in vocab else None, unk="<unk>", eos="</s>")
        tokenizer.add_special_tokens(specials.present())  # in the vocabulary already: only marked special
        return cls(tokenizer, specials)

    @classmethod
    def load(cls, path: str | Path) -> TextTokenizer:
        """Load a ``tokenizer.json``, a ``vocab.txt``, or a directory holding one of them (or GPT-2's
        ``vocab.json`` + ``merges.txt``).

        The token roles come from the directory's ``tokenizer_config.json`` and
        ``special_tokens_map.json`` when present (ours or Hugging Face's), else from the usual
        strings (``[PAD]``/``<pad>``, ``[CLS]``, ``</s>``, ...).

        Raises:
            FileNotFoundError: nothing to load at ``path``.
            ValueError: a file that is not a tokenizer.
        """
        path = Path(path)
        directory = path if path.is_dir() else path.parent
        settings = _read_settings(directory)
        lowercase = bool(settings.get("do_lower_case", True))
        max_length = settings.get("model_max_length")
        max_length = int(max_length) if isinstance(max_length, int) and 0 < max_length < 1_000_000 else None
        if path.is_dir():
            if (path / TOKENIZER_FILE).is_file():
                path = path / TOKENIZER_FILE
            elif (path / VOCAB_FILE).is_file():
                path = path / VOCAB_FILE
            elif (path / BPE_VOCAB).is_file() and (path / BPE_MERGES).is_file():
                return cls.from_bpe_files(path / BPE_VOCAB, path / BPE_MERGES, settings, max_length)
            elif (path / "target.spm").is_file() and (path / BPE_VOCAB).is_file():
                return cls.from_marian(path, "target")  # the decoded side; from_marian(path) gives the source
            else:
                raise FileNotFoundError(
                    f"{path} holds neither {TOKENIZER_FILE}, {VOCAB_FILE}, {BPE_VOCAB} + {BPE_MERGES} nor Marian's "
                    f"target.spm + {BPE_VOCAB}"
                )
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer {path} not found")
        if path.name == VOCAB_FILE or path.suffix == ".txt":
            return cls.from_vocab(path, lowercase, max_length)
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as err:  # tokenizers raises a bare Exception on a malformed file
            raise ValueError(f"{path} is not a tokenizers tokenizer.json: {err}") from err
        return cls(tokenizer, _roles(tokenizer, settings), max_length)

    def files(self) -> dict[str, str]:
        """The texts of ``tokenizer.json`` and ``tokenizer_config.json``, by file name."""
        settings: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast"}
        for role, name in _HF_NAMES.items():
            value = getattr(self.specials, role)
            if value is not None:
                settings[name] = value
        if self.max_length is not None:
            settings["model_max_length"] = self.max_length
        return {TOKENIZER_FILE: self.tokenizer.to_str(), TOKENIZER_CONFIG: json.dumps(settings, indent=2) + "\n"}

    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json`` and ``tokenizer_config.json`` into ``directory`` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in self.files().items():
            (directory / name).write_text(text, encoding="utf-8")
        return directory

    # -- using ----------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def token_id(self, role: str) -> int | None:
        """The id of the token playing ``role`` ("pad", "unk", "cls", "sep", "mask", "bos", "eos"), or None."""
        token = getattr(self.specials, role)
        return None if token is None else self.tokenizer.token_to_id(token)

    @property
    def pad_id(self) -> int:
        """The padding id (0 when the tokenizer has no padding token)."""
        found = self.token_id("pad")
        return 0 if found is None else found

    def encode(
        self,
        texts: str | Sequence[str],
        pairs: Sequence[str] | None = None,
        add_special_tokens: bool = True,
        max_length: int | None = None,
    ) -> EncodedBatch:
        """Tokenize a text or a batch (with optional second segments), truncate and right-pad.

        Args:
            texts: one string or a batch.
            pairs: second segments, one per text (BERT sentence pairs), or None.
            add_special_tokens: add the template tokens (``[CLS]``/``[SEP]`` or ``</s>``).
            max_length: truncate to this many tokens (default: the tokenizer's ``max_length``).

        Raises:
            ValueError: an empty batch, a non-string item, or pairs of another length.
        """
        batch = [texts] if isinstance(texts, str) else list(texts)
        if not batch:
            raise ValueError("nothing to encode: the batch is empty")
        bad = [type(item).__name__ for item in batch if not isinstance(item, str)]
        if bad:
            raise ValueError(f"texts must be strings, got {bad[0]}")
        if pairs is not None and len(pairs) != len(batch):
            raise ValueError(f"{len(pairs)} second segments for {len(batch)} texts")
        inputs = batch if pairs is None else list(zip(batch, pairs))
        limit = max_length or self.max_length
        if limit:  # the library's truncation keeps the template's end tokens ([SEP], </s>)
            self.tokenizer.enable_truncation(limit)
        try:
            encodings = self.tokenizer.encode_batch(inputs, add_special_tokens=add_special_tokens)
        finally:
            self.tokenizer.no_truncation()
        ids = [e.ids for e in encodings]
        types = [e.type_ids for e in encodings]
        width = max(1, max(len(row) for row in ids))
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        token_types = torch.zeros((len(ids), width), dtype=torch.long)
        for row, (values, kinds) in enumerate(zip(ids, types)):
            input_ids[row, : len(values)] = torch.tensor(values, dtype=torch.long)
            mask[row, : len(values)] = 1
            token_types[row, : len(kinds)] = torch.tensor(kinds, dtype=torch.long)
        return EncodedBatch(input_ids, mask, token_types if pairs is not None else None)

    def decode(self, ids: Tensor | Sequence[int] | Sequence[Sequence[int]], skip_special_tokens: bool = True):
        """Ids (T,) -> one string; (B, T) or a list of lists -> a list of strings. Padding is dropped."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        ids = list(ids)
        if ids and isinstance(ids[0], (list, tuple)):
            return [self.decode(row, skip_special_tokens) for row in ids]
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def tokens(self, text: str) -> list[str]:
        """The token strings of ``text`` (with the template's special tokens)."""
        return self.tokenizer.encode(text).tokens

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"TextTokenizer({self.vocab_size} tokens, specials {self.specials.present()})"


def _read_settings(directory: Path) -> dict[str, Any]:
    """``tokenizer_config.json`` merged with ``special_tokens_map.json`` (either may be missing)."""
    settings: dict[str, Any] = {}
    for name in (SPECIAL_TOKENS_MAP, TOKENIZER_CONFIG):
        path = directory / name
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as err:
                raise ValueError(f"cannot read {path}: {err}") from err
            if isinstance(data, dict):
                settings.update(data)
    return settings


def _roles(tokenizer: Tokenizer, settings: dict[str, Any]) -> SpecialTokens:
    """Token roles from Hugging Face settings (a string or an ``{"content": ...}`` object), else guessed."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    roles: dict[str, str | None] = {}
    for role, name in _HF_NAMES.items():
        value = settings.get(name)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str) and value in vocab:
            roles[role] = value
        elif name not in settings:
            roles[role] = next((guess for guess in _GUESSES[role] if guess in vocab), None)
    return SpecialTokens(**roles)


def pad_token_ids(rows: Sequence[Tensor], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-pad id sequences to (B, T) with ``pad_id``, and their (B, T) bool mask (True = real token)."""
    ids = torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True, padding_value=pad_id)
    lengths = torch.tensor([len(row) for row in rows])
    return ids, torch.arange(ids.shape[1])[None] < lengths[:, None]
