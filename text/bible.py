"""An embedded, verse-aligned English-Spanish Bible: a small real parallel corpus for translation and LM demos.

Source: the *World English Bible* (English, SWORD module ``engWEB2015eb`` 426.0, Debian package
``sword-text-web``) and the *Reina-Valera 1909* (Spanish, SWORD module ``spaRV1909eb`` 2.60, Debian package
``sword-text-sparv``). Licence: both texts are in the public domain (their SWORD conf files say
``DistributionLicense=Public Domain``); "World English Bible" is a trademark of eBible.org, and the text here has
been cleaned of markup and notes (see below), so treat it as *derived from* the World English Bible.

Size: 30,779 verse pairs (train 30,035, valid 385, test 359) from the 66 books the two have in common (the
WEB's deuterocanonical books have no Spanish side and are left out), one gzip-compressed TSV file
``data/bible_en_es.tsv.gz`` of 2.7 MB (8.5 MB uncompressed) with the columns ``book``, ``chapter``, ``verse``,
``split``, ``en``, ``es``, in canonical order.

How it was made: ``text/data/make_bible_corpus.py`` reads both SWORD modules with ``pysword``, strips the OSIS
markup (Strong's numbers, morphology, footnotes, cross references, speaker labels, the WEB glossary), the RV1909
epistle subscriptions and its drop capitals, and keeps the verses whose reference (book, chapter, verse) is
non-empty in both, except about 300 that a length-based alignment check finds misaligned (the RV1909 module
shifts some chapters by a verse against the WEB, e.g. Numbers 13, Jonah 2); that script's docstring gives the
exact commands. The split is fixed by whole books (:data:`HELD_OUT_BOOKS`), so no verse of a held-out book is
ever seen in training. The English side uses "Yahweh" for the divine name, the Spanish side "Jehová", and the
Spanish keeps the 1909 spelling (``á`` for ``a``, ``fué``, ...).
"""

from __future__ import annotations

import csv
import functools
import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BIBLE_BOOKS",
    "BIBLE_COLUMNS",
    "BIBLE_SPLITS",
    "HELD_OUT_BOOKS",
    "VersePair",
    "bible_path",
    "load_bible_pairs",
    "split_of_book",
]

_DATA = Path(__file__).with_name("data")
_FILE = "bible_en_es.tsv.gz"
_REBUILD_HINT = "reinstall polyformer or rerun text/data/make_bible_corpus.py"

BIBLE_SPLITS = ("train", "valid", "test")
BIBLE_COLUMNS = ("book", "chapter", "verse", "split", "en", "es")

#: The 66 books both translations have, in canonical order (the names used in the ``book`` column).
BIBLE_BOOKS = (
    "Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua", "Judges", "Ruth",
    "1 Samuel", "2 Samuel", "1 Kings", "2 Kings", "1 Chronicles", "2 Chronicles", "Ezra", "Nehemiah", "Esther",
    "Job", "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon", "Isaiah", "Jeremiah", "Lamentations",
    "Ezekiel", "Daniel", "Hosea", "Joel", "Amos", "Obadiah", "Jonah", "Micah", "Nahum", "Habakkuk", "Zephaniah",
    "Haggai", "Zechariah", "Malachi",
    "Matthew", "Mark", "Luke", "John", "Acts", "Romans", "1 Corinthians", "2 Corinthians", "Galatians",
    "Ephesians", "Philippians", "Colossians", "1 Thessalonians", "2 Thessalonians", "1 Timothy", "2 Timothy",
    "Titus", "Philemon", "Hebrews", "James", "1 Peter", "2 Peter", "1 John", "2 John", "3 John", "Jude",
    "Revelation",
)

#: Whole books held out of training, by split; every other book is ``train``. Small books from both
#: testaments and several genres (narrative, prophecy, letters), each split about 1.2% of the verses.
HELD_OUT_BOOKS: dict[str, tuple[str, ...]] = {
    "valid": ("Obadiah", "Micah", "Zephaniah", "Haggai", "2 Thessalonians", "James", "2 John"),
    "test": ("Ruth", "Joel", "Jonah", "Habakkuk", "Titus", "Philemon", "3 John", "Jude"),
}


@dataclass(frozen=True)
class VersePair:
    """One verse in English and Spanish.

    Attributes:
        book: English book name, one of :data:`BIBLE_BOOKS` (e.g. ``"John"``).
        chapter: Chapter number, from 1.
        verse: Verse number, from 1.
        split: ``"train"``, ``"valid"`` or ``"test"`` (fixed by book, see :data:`HELD_OUT_BOOKS`).
        en: The World English Bible text of the verse.
        es: The Reina-Valera 1909 text of the verse.
    """

    book: str
    chapter: int
    verse: int
    split: str
    en: str
    es: str

    @property
    def reference(self) -> str:
        """The usual reference, e.g. ``"John 3:16"``."""
        return f"{self.book} {self.chapter}:{self.verse}"


def split_of_book(book: str) -> str:
    """The split a whole book belongs to.

    Args:
        book: A name from :data:`BIBLE_BOOKS`.

    Returns:
        ``"valid"`` or ``"test"`` for the books in :data:`HELD_OUT_BOOKS`, otherwise ``"train"``.

    Raises:
        ValueError: If ``book`` is not one of :data:`BIBLE_BOOKS`.
    """
    if book not in BIBLE_BOOKS:
        raise ValueError(f"unknown book {book!r}; books: {', '.join(BIBLE_BOOKS)}")
    for split, books in HELD_OUT_BOOKS.items():
        if book in books:
            return split
    return "train"


def bible_path() -> Path:
    """Path of the embedded corpus file ``text/data/bible_en_es.tsv.gz``."""
    return _DATA / _FILE


@functools.lru_cache(maxsize=2)
def _read_pairs(path: Path, mtime_ns: int, size: int) -> tuple[VersePair, ...]:
    """All verse pairs of the file at ``path`` (cached per path, modification time and size)."""
    del mtime_ns, size  # only part of the cache key
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    except (OSError, EOFError, UnicodeDecodeError, zlib.error, csv.Error) as err:
        raise ValueError(f"cannot read the embedded Bible corpus {path}: {err}; {_REBUILD_HINT}") from err
    if not rows or tuple(rows[0]) != BIBLE_COLUMNS:
        header = "\t".join(BIBLE_COLUMNS)
        raise ValueError(f"{path} does not start with the header {header!r}; {_REBUILD_HINT}")
    pairs = []
    for line_number, row in enumerate(rows[1:], start=2):
        try:
            if len(row) != len(BIBLE_COLUMNS):
                raise ValueError(f"{len(row)} fields instead of {len(BIBLE_COLUMNS)}")
            book, chapter, verse, split, en, es = row
            if split not in BIBLE_SPLITS:
                raise ValueError(f"unknown split {split!r}")
            pairs.append(VersePair(book, int(chapter), int(verse), split, en, es))
        except ValueError as err:
            raise ValueError(f"{path}, line {line_number}: {err}; {_REBUILD_HINT}") from err
    if not pairs:
        raise ValueError(f"{path} holds no verses; {_REBUILD_HINT}")
    return tuple(pairs)


def load_bible_pairs(split: str | None = None) -> list[VersePair]:
    """The verse pairs of the embedded English-Spanish Bible, in canonical order.

    Args:
        split: ``"train"``, ``"valid"`` or ``"test"``; ``None`` (the default) returns every verse.

    Returns:
        A new list of :class:`VersePair`, one per aligned verse.

    Raises:
        ValueError: If ``split`` is unknown, or if the file is missing or corrupt (reinstall polyformer or rerun
            ``text/data/make_bible_corpus.py``).
    """
    if split is not None and split not in BIBLE_SPLITS:
        raise ValueError(f"unknown split {split!r}; splits: {', '.join(BIBLE_SPLITS)} (or None for all)")
    path = bible_path()
    try:
        stat = path.stat()
    except OSError as err:
        raise ValueError(f"cannot read the embedded Bible corpus {path}: {err}; {_REBUILD_HINT}") from err
    pairs = _read_pairs(path, stat.st_mtime_ns, stat.st_size)
    if split is None:
        return list(pairs)
    return [pair for pair in pairs if pair.split == split]
