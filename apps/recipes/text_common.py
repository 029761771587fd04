"""What the text recipes share: the tokenizer a run uses."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from polyformer.apps.engine import resolve_checkpoint, run_of
from polyformer.text.tokenizer import TOKENIZER_FILE, TextTokenizer

__all__ = ["run_tokenizer"]


def run_tokenizer(
    resume: str | None, path: str, texts: Sequence[str], kind: str, vocab_size: int, lowercase: bool
) -> tuple[TextTokenizer, str]:
    """The resumed run's tokenizer, else the one at ``path``, else one trained on ``texts``; and where it came from.

    A resumed run must keep its vocabulary, so its saved ``tokenizer.json`` wins over everything.
    """
    if resume:
        saved = run_of(resolve_checkpoint(resume)) / TOKENIZER_FILE
        if saved.is_file():
            return TextTokenizer.load(saved), f"the resumed run's ({saved})"
    if path:
        return TextTokenizer.load(path), path
    with tempfile.TemporaryDirectory(prefix="tokenizer-") as tmp:
        corpus = Path(tmp) / "train.txt"
        corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
        trained = TextTokenizer.train([corpus], kind=kind, vocab_size=vocab_size, lowercase=lowercase)
    return trained, f"{kind}, {trained.vocab_size} tokens, trained on the training text"
