"""Rebuild ``bible_en_es.tsv.gz``, the verse-aligned English-Spanish Bible shipped with polyformer.text.

Sources (both public domain): the World English Bible (SWORD module ``engWEB2015eb``, Debian package
``sword-text-web`` 426.0-1, OSIS markup, ``Versification=NRSVA``) and the Reina-Valera 1909 (SWORD module
``spaRV1909eb``, Debian package ``sword-text-sparv`` 2.60-1, OSIS markup, ``Versification=KJV``). They are read
with the PyPI package ``pysword`` (used here only; it is not a polyformer dependency). Nothing is installed
system-wide: the two ``.deb`` files are downloaded and unpacked into a scratch folder.

Usage::

    mkdir -p /tmp/bible && cd /tmp/bible
    apt-get update                                   # refreshes the package lists only (needs root or sudo)
    apt-get download sword-text-web sword-text-sparv # into the current folder; no root needed
    dpkg-deb -x sword-text-web_*_all.deb web          # unpack without installing
    dpkg-deb -x sword-text-sparv_*_all.deb sparv
    pip install --target /tmp/bible/pylib pysword==0.2.8   # or plain `pip install pysword` in any venv
    cd /work/main   # the polyformer checkout, installed (editable) in the Python that runs this script
    PYTHONPATH=/tmp/bible/pylib python text/data/make_bible_corpus.py /tmp/bible/web /tmp/bible/sparv

Each argument is a folder holding a SWORD library (a ``mods.d/*.conf`` plus the module data), searched
recursively, so the unpacked package root (with ``usr/share/sword`` inside) works. ``--output`` (default: this
folder's ``bible_en_es.tsv.gz``) chooses where the file goes. A run takes about ten seconds.

What it does:

* reads every verse of both modules in their own versification (the raw OSIS text, not pysword's cleaner);
* cleans each verse: cuts everything after the end of the book (the WEB appends its glossary to Revelation
  22:21), drops footnotes, cross references, alternate readings, speaker labels (Song of Solomon), non-canonical
  titles and milestones, keeps the canonical psalm titles (the RV1909 has them inside verse 1 as well), removes
  every tag with its Strong's numbers and morphology, unescapes entities and normalises whitespace; Spanish
  words split only by markup (``<transChange>`` next to ``<w>``) get their space back;
* Spanish only: removes the KJV-style subscriptions after the last "Amén." of Romans to Hebrews ("Fué escrita de
  Corinto ...", not part of the WEB) and undoes the drop capitals that start each chapter ("EN el principio" ->
  "En el principio"), recasing each word as it is most often written elsewhere in the RV1909;
* aligns by reference (book, chapter, verse) over the 66 books both have and keeps the pairs whose two texts are
  non-empty, except the misaligned ones: the RV1909 module squeezes its own verse numbering into KJV slots, so
  some chapters are shifted by a verse (Numbers 13, 1 Samuel 24, Jonah 2, Hosea 12, ...) and some verses hold a
  neighbour's text; :func:`length_check` finds them from the verse lengths and :data:`MISALIGNED` adds one case
  by hand (the script prints the verse numbers that differ per chapter, every dropped reference, the most
  extreme length ratios and a few well-known verses, for checking by eye);
* assigns the split by whole book (``polyformer.text.bible.HELD_OUT_BOOKS``) and writes a gzip'd TSV (header
  ``book chapter verse split en es``, canonical order) with ``mtime=0``, so reruns are byte-identical. It stops
  if any field still holds a tag, a bracket, a Strong's or morphology code, an entity, a tab or a newline.
"""

from __future__ import annotations

import argparse
import collections
import functools
import gzip
import html
import io
import itertools
import math
import re
import statistics
import sys
from collections.abc import Iterable
from pathlib import Path

from polyformer.text.bible import BIBLE_BOOKS, BIBLE_COLUMNS, BIBLE_SPLITS, split_of_book

OUTPUT = Path(__file__).with_name("bible_en_es.tsv.gz")
Key = tuple[str, int, int]  # (book, chapter, verse)

#: OSIS book identifiers of the 66 shared books, in the order of ``BIBLE_BOOKS``.
OSIS_IDS = (
    "Gen", "Exod", "Lev", "Num", "Deut", "Josh", "Judg", "Ruth", "1Sam", "2Sam", "1Kgs", "2Kgs", "1Chr", "2Chr",
    "Ezra", "Neh", "Esth", "Job", "Ps", "Prov", "Eccl", "Song", "Isa", "Jer", "Lam", "Ezek", "Dan", "Hos", "Joel",
    "Amos", "Obad", "Jonah", "Mic", "Nah", "Hab", "Zeph", "Hag", "Zech", "Mal",
    "Matt", "Mark", "Luke", "John", "Acts", "Rom", "1Cor", "2Cor", "Gal", "Eph", "Phil", "Col", "1Thess",
    "2Thess", "1Tim", "2Tim", "Titus", "Phlm", "Heb", "Jas", "1Pet", "2Pet", "1John", "2John", "3John", "Jude",
    "Rev",
)
BOOK_OF_OSIS = dict(zip(OSIS_IDS, BIBLE_BOOKS, strict=True))

#: Verses present in both modules under the same reference but not with the same content, dropped by hand on
#: top of what :func:`length_check` finds: the RV1909 module numbers 2 Corinthians 13 with 13 verses (its 13:12
#: holds WEB 13:12-13, its 13:13 the WEB's 13:14), the WEB with 14.
MISALIGNED = {("2 Corinthians", 13, verse) for verse in (12, 13, 14)}

#: Verse pairs whose lengths differ by more than this many standard deviations are dropped (about 0.1% of them).
MAX_LENGTH_Z = 4.0

#: Books whose last Spanish verse carries a KJV-style subscription after "Amén.".
SUBSCRIBED_BOOKS = (
    "Romans", "1 Corinthians", "2 Corinthians", "Galatians", "Ephesians", "Philippians", "Colossians",
    "1 Thessalonians", "2 Thessalonians", "1 Timothy", "2 Timothy", "Titus", "Philemon", "Hebrews",
)

# Elements dropped with their content: notes and cross references (OSIS, ThML), alternate readings, speaker labels.
_DROPPED = ("note", "rdg", "rdgGroup", "catchWord", "speaker", "figure", "index", "scripRef", "scripCom")
_DROPPED_RE = re.compile(r"<(" + "|".join(_DROPPED) + r")\b[^>]*?(?<!/)>.*?</\1\s*>", re.DOTALL | re.IGNORECASE)
_GBF_NOTE_RE = re.compile(r"<RF>.*?<Rf>", re.DOTALL)  # GBF footnote
_TITLE_RE = re.compile(r"<title\b([^>]*?)(?<!/)>(.*?)</title\s*>", re.DOTALL | re.IGNORECASE)
_BOOK_END_RE = re.compile(r'<div\b(?=[^>]*\btype="book")(?=[^>]*\beID=)[^>]*>')
# A word-level tag that closes right where the next opens: the RV1909 writes `</transChange><w ...>` between words.
_GLUED_RE = re.compile(r"(</(?:w|transChange)>)(?=<(?:w|transChange)\b)")
# Tags that sit inside running text (removing them must not add a space); any other tag becomes a space.
_INLINE = {"w", "q", "transchange", "seg", "hi", "divinename", "name", "foreign", "abbr", "a", "mentioned", "font"}
_TAG_RE = re.compile(r"<\s*(/?)\s*([A-Za-z][\w:.-]*)?[^>]*>")
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+([,.;:!?])")
_UPPER = "A-ZÁÉÍÓÚÑÜÂÊÎÔÛ"
_CAPS_RUN_RE = re.compile(rf"(?<!\w)[{_UPPER}]+(?:\s+[{_UPPER}]+)*(?!\w)")
_WORD_RE = re.compile(r"\w+")

#: Leaks that must never reach the output: markup, Strong's / morphology codes, entities, bracketed notes.
LEAK_RE = re.compile(r"[<>{}\[\]\t\n\r]|\b[HG]\d{2,5}\b|strong:|lemma=|morph=|\w=\"|&\w+;|&#\d+;")


def clean_osis(text: str) -> str:
    """Plain text of one verse of OSIS (also ThML or GBF) markup.

    Args:
        text: The raw verse as stored in the SWORD module.

    Returns:
        The verse with notes, non-canonical titles, speaker labels and all tags removed, entities unescaped and
        whitespace normalised (possibly empty).
    """
    end = _BOOK_END_RE.search(text)
    if end:
        text = text[: end.start()]
    text = _DROPPED_RE.sub(" ", text)
    text = _GBF_NOTE_RE.sub(" ", text)
    text = _TITLE_RE.sub(lambda m: f" {m.group(2)} " if 'canonical="true"' in m.group(1) else " ", text)
    text = _GLUED_RE.sub(r"\1 ", text)
    text = _TAG_RE.sub(lambda m: "" if (m.group(2) or "").lower() in _INLINE else " ", text)
    text = html.unescape(text)
    text = " ".join(text.split())
    return _SPACE_BEFORE_PUNCT_RE.sub(r"\1", text)


def drop_subscription(text: str) -> str:
    """``text`` without a KJV-style subscription ("... Amén. Fué escrita de Roma ...") at its end."""
    match = re.search(r"Amén\.\s+(.+)$", text)
    if match and re.search(r"escrit|enviad", match.group(1), re.IGNORECASE):
        return text[: match.start() + len("Amén.")]
    return text


def casing_lexicon(texts: Iterable[str]) -> dict[str, str]:
    """The most frequent spelling of each word (keyed by its lower case) among the words not written in capitals."""
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for text in texts:
        for word in _WORD_RE.findall(text):
            if not word.isupper():
                counts[word.lower()][word] += 1
    return {key: forms.most_common(1)[0][0] for key, forms in counts.items()}


def undo_drop_capitals(text: str, lexicon: dict[str, str]) -> str:
    """Recase the first run of capitalised words of a chapter's first verse ("Y JEHOVÁ dijo" -> "Y Jehová dijo").

    Each word takes its most frequent spelling elsewhere (lower case when unknown), and the first word is
    capitalised again when it starts a sentence. Runs of one-letter words and the acrostic letters of Psalm 119
    (kept in capitals, as the WEB has them) are skipped.
    """
    for match in _CAPS_RUN_RE.finditer(text):
        if not any(len(word) > 1 for word in match.group().split()):
            continue  # a capital "A" or "Y" on its own is ordinary text
        if re.match(rf"\.\s+[{_UPPER}]{{2,}}", text[match.end() :]):
            continue  # a heading before the drop capital: the acrostic letters of Psalm 119 ("ALEPH. BIENAVENTURADOS")
        break
    else:
        return text
    words = [lexicon.get(word.lower(), word.lower()) for word in match.group().split()]
    before = text[: match.start()].rstrip(" ¿¡(«“\"'")
    if not before or before[-1] in ".:!?":
        words[0] = words[0][:1].upper() + words[0][1:]
    return text[: match.start()] + " ".join(words) + text[match.end() :]


def find_module(folder: Path, language: str):
    """Open the Bible module of ``language`` in the SWORD library under ``folder``.

    Returns:
        ``(name, conf, bible)``: the module name, its conf entries (lower-case keys) and a ``pysword`` SwordBible.
    """
    from pysword.modules import SwordModules  # only needed to rebuild the corpus

    confs = sorted(folder.rglob("mods.d/*.conf"))
    if not confs:
        raise SystemExit(f"no mods.d/*.conf under {folder}; unpack the .deb with dpkg-deb -x first")
    found = {}
    for conf in confs:
        library = SwordModules(str(conf.parent.parent))
        for name, entries in library.parse_modules().items():
            if entries.get("lang", "").lower() == language:
                found[name] = (entries, library)
    if len(found) != 1:
        raise SystemExit(f"expected one {language!r} module under {folder}, found {sorted(found)}")
    name, (entries, library) = next(iter(found.items()))
    bible = library.get_bible_from_module(name)
    if hasattr(bible, "_decompressed_text"):  # zText: pysword inflates the whole book for every verse; cache it
        bible._decompressed_text = functools.lru_cache(maxsize=4)(bible._decompressed_text)
    return name, entries, bible


def read_module(bible) -> tuple[dict[Key, str], collections.Counter[str]]:
    """Every verse of a module, cleaned, keyed by (book, chapter, verse) for the 66 shared books.

    Returns:
        The verses (empty ones included) and counts: ``slots`` (verses in the versification), ``nonempty``,
        ``outside`` (non-empty verses of books outside the 66).
    """
    verses: dict[Key, str] = {}
    counts: collections.Counter[str] = collections.Counter()
    for books in bible.get_structure().get_books().values():
        for book in books:
            name = BOOK_OF_OSIS.get(book.osis_name)
            for chapter, length in enumerate(book.chapter_lengths, start=1):
                for verse in range(1, length + 1):
                    raw = bible.get(books=book.name, chapters=chapter, verses=verse, clean=False)
                    text = clean_osis(raw)
                    counts["slots"] += 1
                    counts["nonempty"] += bool(text)
                    if name is None:
                        counts["outside"] += bool(text)
                    else:
                        verses[name, chapter, verse] = text
    return verses, counts


def spanish_fixes(verses: dict[Key, str]) -> None:
    """Drop the subscriptions and undo the drop capitals of the RV1909 in place."""
    for book in SUBSCRIBED_BOOKS:
        last = max(key for key, text in verses.items() if key[0] == book and text)
        verses[last] = drop_subscription(verses[last])
    lexicon = casing_lexicon(text for (_, _, verse), text in verses.items() if verse != 1)
    for key, text in verses.items():
        if key[2] == 1:
            verses[key] = undo_drop_capitals(text, lexicon)


def nonempty_by_chapter(verses: dict[Key, str]) -> dict[tuple[str, int], set[int]]:
    """The numbers of the non-empty verses of each chapter."""
    chapters: dict[tuple[str, int], set[int]] = collections.defaultdict(set)
    for (book, chapter, verse), text in verses.items():
        if text:
            chapters[book, chapter].add(verse)
    return chapters


def length_check(en: dict[Key, str], es: dict[Key, str]) -> set[Key]:
    """The shared references whose English and Spanish verses are probably not translations of each other.

    The RV1909 module squeezes its own verse numbering into KJV slots: some chapters are shifted by a verse
    (Numbers 13, Jonah 2, Hosea 12, ...), some verses carry their neighbour's text. To find them, each book is
    aligned on verse lengths in characters (dynamic programming in the manner of Gale & Church 1993, with
    1-1, 2-1, 1-2, 1-0 and 0-1 steps, a 1-1 step between equal references much cheaper than any other step and
    1-0 / 0-1 steps cheap for verses only one side has). A reference is suspect when that alignment does not pair
    it with itself, when it lies between two suspects of its chapter (the whole chapter is suspect when those two
    span more than half of it), when it is next to a verse that only one side has (the other side merged it into
    a neighbour), or when the lengths of its two sides are more than :data:`MAX_LENGTH_Z` standard deviations
    apart (a clause moved to the next verse, or a textual variant).

    Args:
        en: English verses by reference (empty strings allowed).
        es: Spanish verses by reference (empty strings allowed).

    Returns:
        The suspect references (some may name verses that do not exist; only membership matters).
    """
    pairs = [(len(en[key]), len(es[key])) for key in en if en[key] and es.get(key)]
    ratio = sum(b for _, b in pairs) / sum(a for a, _ in pairs)
    # variance of (l_es - ratio * l_en) per English character, from the median (robust to the misaligned verses)
    variance = max(statistics.median((b - ratio * a) ** 2 / a for a, b in pairs) / 0.4549, 0.01)
    same, other, merge, skip, lone = (-math.log(p) for p in (0.95, 0.01, 0.01, 0.005, 0.5))

    def z_score(length_en: int, length_es: int) -> float:
        mean = max((length_en + length_es / ratio) / 2, 1.0)
        return abs(length_es - ratio * length_en) / math.sqrt(mean * variance)

    def mismatch(length_en: int, length_es: int) -> float:
        if not length_en and not length_es:
            return 0.0
        return -math.log(max(math.erfc(z_score(length_en, length_es) / math.sqrt(2)), 1e-300))

    suspects: set[Key] = set()
    for book in BIBLE_BOOKS:
        keys_en = [key for key in en if key[0] == book and en[key]]
        keys_es = [key for key in es if key[0] == book and es[key]]
        len_en, len_es = [len(en[k]) for k in keys_en], [len(es[k]) for k in keys_es]
        one_sided = {key for key in keys_en + keys_es if not (en.get(key) and es.get(key))}
        band = abs(len(keys_en) - len(keys_es)) + 12
        cost: dict[tuple[int, int], float] = {(0, 0): 0.0}
        back: dict[tuple[int, int], tuple[int, int]] = {}
        for i in range(len(keys_en) + 1):
            for j in range(max(0, i - band), min(len(keys_es), i + band) + 1):
                best, step = math.inf, None
                for di, dj in ((1, 1), (2, 1), (1, 2), (1, 0), (0, 1)):
                    if (i - di, j - dj) not in cost:
                        continue
                    if (di, dj) == (1, 1):
                        penalty = same if keys_en[i - 1] == keys_es[j - 1] else other
                    elif (di, dj) == (1, 0):
                        penalty = lone if keys_en[i - 1] in one_sided else skip
                    elif (di, dj) == (0, 1):
                        penalty = lone if keys_es[j - 1] in one_sided else skip
                    else:
                        penalty = merge
                    total = cost[i - di, j - dj] + penalty + mismatch(sum(len_en[i - di : i]), sum(len_es[j - dj : j]))
                    if total < best:
                        best, step = total, (i - di, j - dj)
                if step is not None:
                    cost[i, j], back[i, j] = best, step
        matched: set[Key] = set()
        i, j = len(keys_en), len(keys_es)
        while (i, j) != (0, 0):
            pi, pj = back[i, j]
            if i - pi == 1 and j - pj == 1 and keys_en[pi] == keys_es[pj]:
                matched.add(keys_en[pi])
            i, j = pi, pj
        flagged = [key for key in keys_en if es.get(key) and key not in matched]
        for _, chapter, verse in one_sided:
            flagged += [(book, chapter, verse - 1), (book, chapter, verse + 1)]
        by_chapter: dict[int, list[int]] = collections.defaultdict(list)
        for _, chapter, verse in flagged:
            by_chapter[chapter].append(verse)
        for chapter, verses in by_chapter.items():
            first, last = min(verses), max(verses)
            size = sum(1 for key in keys_en if key[1] == chapter)
            if last - first + 1 > size / 2:  # most of the chapter is off: a shifted chapter, drop all of it
                first, last = 1, max(size, last)
            suspects.update((book, chapter, verse) for verse in range(first, last + 1))
        suspects.update(key for key in matched if z_score(len(en[key]), len(es[key])) > MAX_LENGTH_Z)
    return suspects


def format_references(keys: list[Key]) -> str:
    """Sorted references as compact ranges: ``Numbers 13:1-33, Jonah 2:1-10``."""
    parts: list[str] = []
    for (book, chapter), group in itertools.groupby(keys, key=lambda key: key[:2]):
        verses = [key[2] for key in group]
        start = previous = verses[0]
        for verse in [*verses[1:], None]:
            if verse is not None and verse == previous + 1:
                previous = verse
                continue
            parts.append(f"{book} {chapter}:{start}" + (f"-{previous}" if previous != start else ""))
            if verse is not None:
                start = previous = verse
    return ", ".join(parts)


def write_tsv(rows: list[tuple[str, int, int, str, str, str]], output: Path) -> None:
    """Write ``rows`` under a header as a deterministic (``mtime=0``) gzip'd UTF-8 TSV."""
    body = io.StringIO()
    body.write("\t".join(BIBLE_COLUMNS) + "\n")
    for row in rows:
        fields = [str(field) for field in row]
        bad = [field for field in fields if "\t" in field or "\n" in field or "\r" in field]
        if bad:
            raise SystemExit(f"tab or newline in a field of {row[:3]}: {bad}")
        body.write("\t".join(fields) + "\n")
    with open(output, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as compressed:
            compressed.write(body.getvalue().encode("utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("english", type=Path, help="folder with the unpacked sword-text-web (WEB, Lang=en)")
    parser.add_argument("spanish", type=Path, help="folder with the unpacked sword-text-sparv (RV1909, Lang=es)")
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT, help=f"output file (default: {OUTPUT})")
    args = parser.parse_args()

    texts = {}
    for language, folder in (("en", args.english), ("es", args.spanish)):
        name, conf, bible = find_module(folder, language)
        verses, counts = read_module(bible)
        print(
            f"{language}: module {name} ({conf.get('description', '?')}, version {conf.get('version', '?')}), "
            f"SourceType={conf.get('sourcetype', '?')}, Versification={conf.get('versification', 'KJV')}: "
            f"{counts['slots']} verse slots, {counts['nonempty']} non-empty, of which {counts['outside']} in books "
            f"outside the 66 shared ones; {sum(map(bool, verses.values()))} non-empty in the 66 books"
        )
        texts[language] = verses
    en, es = texts["en"], texts["es"]
    spanish_fixes(es)

    shared = [key for key in en if key in es]
    chapters_en, chapters_es = nonempty_by_chapter(en), nonempty_by_chapter(es)
    for chapter in sorted(set(chapters_en) | set(chapters_es), key=lambda c: (BIBLE_BOOKS.index(c[0]), c[1])):
        only_en = sorted(chapters_en.get(chapter, set()) - chapters_es.get(chapter, set()))
        only_es = sorted(chapters_es.get(chapter, set()) - chapters_en.get(chapter, set()))
        if only_en or only_es:
            print(f"  verse numbers differ in {chapter[0]} {chapter[1]}: only en {only_en}, only es {only_es}")

    suspects = length_check(en, es)
    rows, dropped = [], collections.Counter()
    for key in sorted(shared, key=lambda k: (BIBLE_BOOKS.index(k[0]), k[1], k[2])):
        if not (en[key] and es[key]):
            dropped["an empty side"] += bool(en[key] or es[key])
            continue
        if key in MISALIGNED:
            dropped["misaligned (MISALIGNED)"] += 1
            continue
        if key in suspects:
            dropped["misaligned (length check)"] += 1
            continue
        book, chapter, verse = key
        rows.append((book, chapter, verse, split_of_book(book), en[key], es[key]))
    only_one = sum(bool(text) for key, text in en.items() if key not in es)
    only_one += sum(bool(text) for key, text in es.items() if key not in en)
    dropped["a reference only one module has"] = only_one
    print("dropped by the length check:", format_references(sorted(
        (key for key in suspects if en.get(key) and es.get(key) and key not in MISALIGNED),
        key=lambda k: (BIBLE_BOOKS.index(k[0]), k[1], k[2]),
    )))
    print(f"aligned {len(rows)} verse pairs; dropped: {dict(dropped)} (total {sum(dropped.values())})")

    leaks = [(row[:3], field) for row in rows for field in row[4:] if LEAK_RE.search(field)]
    if leaks:
        raise SystemExit(f"{len(leaks)} fields still hold markup or notes, e.g. {leaks[:3]}")
    ratios = sorted(rows, key=lambda row: len(row[5]) / len(row[4]))
    print("most extreme es/en length ratios (check the alignment by eye):")
    for row in ratios[:3] + ratios[-3:]:
        print(f"  {row[0]} {row[1]}:{row[2]} ({len(row[5]) / len(row[4]):.2f}) en: {row[4]!r}\n{'':10}es: {row[5]!r}")

    sizes = collections.Counter(row[3] for row in rows)
    print("verses per split:", {split: sizes[split] for split in BIBLE_SPLITS})
    index = {row[:3]: row for row in rows}
    for key in (("Genesis", 1, 1), ("John", 3, 16), ("Psalms", 23, 1), ("Revelation", 22, 21)):
        row = index.get(key)
        print(f"{key[0]} {key[1]}:{key[2]}", f"\n  en: {row[4]}\n  es: {row[5]}" if row else "MISSING")

    write_tsv(rows, args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")


if __name__ == "__main__":
    sys.exit(main())
