"""Text data: readers for plain text, labelled CSV and sentence pairs, and the embedded corpora's files."""

from .readers import (
    LabeledTexts,
    SentencePairs,
    TextDataError,
    TextLines,
    read_labeled,
    read_pairs,
    read_texts,
)

__all__ = [name for name in dir() if not name.startswith("_")]
