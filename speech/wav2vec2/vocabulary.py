"""Character vocabularies for CTC, in the layout of transformers' ``Wav2Vec2CTCTokenizer`` (``vocab.json``).

Id 0 is ``<pad>``, which is also the CTC blank; ``<unk>`` is 1 and ``|`` (the word delimiter, standing for a
space) 2; then every other character of the training transcriptions, sorted. A vocabulary read from a Hugging
Face directory keeps its ids (``<pad>`` wherever it is, ``|`` as the delimiter).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["VOCAB_FILE", "CtcVocabulary"]

VOCAB_FILE = "vocab.json"
PAD, UNK, DELIMITER = "<pad>", "<unk>", "|"
_SPECIAL = {PAD, UNK, "<s>", "</s>"}


class CtcVocabulary:
    """Characters <-> ids for a CTC head: ``encode`` maps a space to ``|``; ``decode`` turns ``|`` back into a
    space and leaves out special tokens (the blank included).

    Args:
        tokens: id -> token; must hold ``<pad>`` (the blank) and ``|``.
    """

    def __init__(self, tokens: Sequence[str]):
        self.tokens = list(tokens)
        self.ids = {token: i for i, token in enumerate(self.tokens)}
        if len(self.ids) != len(self.tokens):
            raise ValueError("a CTC vocabulary lists a token twice")
        for needed in (PAD, DELIMITER):
            if needed not in self.ids:
                raise ValueError(f"a CTC vocabulary needs {needed!r}")
        self.blank = self.ids[PAD]

    @classmethod
    def build(cls, texts: Iterable[str]) -> CtcVocabulary:
        """``<pad>``, ``<unk>``, ``|`` and every other character of ``texts`` (sorted)."""
        characters = sorted({c for text in texts for c in text.strip()} - {" ", DELIMITER})
        return cls([PAD, UNK, DELIMITER, *characters])

    @classmethod
    def load(cls, path: str | Path) -> CtcVocabulary:
        """Read ``vocab.json`` (a file, or a directory holding one): ``{token: id}`` with ids 0..V-1."""
        path = Path(path)
        path = path / VOCAB_FILE if path.is_dir() else path
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read the CTC vocabulary {path}: {err}") from None
        if not isinstance(table, dict) or sorted(table.values()) != list(range(len(table))):
            raise ValueError(f"{path} is not a CTC vocabulary ({{token: id}} with ids 0..V-1)")
        return cls(sorted(table, key=table.get))

    def save(self, path: str | Path) -> Path:
        """Write ``vocab.json`` (into ``path`` when it is a directory)."""
        path = Path(path)
        path = path / VOCAB_FILE if path.is_dir() else path
        path.write_text(json.dumps(self.ids, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return path

    def __len__(self) -> int:
        return len(self.tokens)

    def unknown_characters(self, text: str) -> str:
        """The characters of ``text`` (spaces aside) that have no id, each once, in order."""
        seen = dict.fromkeys(c for c in text.strip() if c != " " and c not in self.ids)
        return "".join(seen)

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` (runs of spaces -> one ``|``); unknown characters -> ``<unk>`` (or an error without it)."""
        unknown = self.ids.get(UNK)
        out = []
        for word_index, word in enumerate(text.split()):
            if word_index:
                out.append(self.ids[DELIMITER])
            for character in word:
                if character not in self.ids and unknown is None:
                    raise ValueError(f"{character!r} is not in the CTC vocabulary")
                out.append(self.ids.get(character, unknown))
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Text of (already collapsed) ids: ``|`` -> space, special tokens left out, spaces tidied."""
        pieces = [self.tokens[i] for i in ids if 0 <= i < len(self.tokens)]
        text = "".join(" " if p == DELIMITER else p for p in pieces if p not in _SPECIAL)
        return " ".join(text.split())
