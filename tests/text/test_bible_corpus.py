"""The embedded English-Spanish Bible: it loads, splits by whole books, holds clean text; its builder cleans OSIS."""

import gzip
import importlib.util
import random
import re
from pathlib import Path

import pytest

from polyformer.text import bible
from polyformer.text.bible import (
    BIBLE_BOOKS,
    BIBLE_SPLITS,
    HELD_OUT_BOOKS,
    VersePair,
    bible_path,
    load_bible_pairs,
    split_of_book,
)

SCRIPT = Path(bible.__file__).with_name("data") / "make_bible_corpus.py"
# Markup, bracketed notes, Strong's / morphology codes, entities, tabs, newlines.
LEAK = re.compile(r"[<>{}\[\]\t\n\r]|\b[HG]\d{1,5}\b|strong:|lemma=|morph=|&\w+;|&#\d+;")


@pytest.fixture(scope="module")
def pairs() -> list[VersePair]:
    return load_bible_pairs()


@pytest.fixture(scope="module")
def by_reference(pairs) -> dict[str, VersePair]:
    return {pair.reference: pair for pair in pairs}


@pytest.fixture(scope="module")
def builder():
    spec = importlib.util.spec_from_file_location("make_bible_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports pysword only when run, so this works without it
    return module


def test_file_loads_with_typed_fields(pairs):
    assert bible_path().is_file() and bible_path().name == "bible_en_es.tsv.gz"
    assert 30_000 < len(pairs) < 31_200
    assert all(isinstance(pair, VersePair) for pair in pairs)
    assert all(isinstance(pair.chapter, int) and pair.chapter >= 1 for pair in pairs)
    assert all(isinstance(pair.verse, int) and pair.verse >= 1 for pair in pairs)
    assert all(pair.en and pair.es for pair in pairs)
    assert len({pair.reference for pair in pairs}) == len(pairs), "a reference appears twice"
    assert {pair.book for pair in pairs} == set(BIBLE_BOOKS)
    order = [(BIBLE_BOOKS.index(pair.book), pair.chapter, pair.verse) for pair in pairs]
    assert order == sorted(order), "verses are not in canonical order"
    with pytest.raises(AttributeError):
        pairs[0].en = "changed"  # frozen


def test_each_split_is_non_empty_and_the_splits_are_disjoint_by_book(pairs):
    books = {}
    for split in BIBLE_SPLITS:
        subset = load_bible_pairs(split)
        assert subset and all(pair.split == split for pair in subset)
        books[split] = {pair.book for pair in subset}
    assert sum(len(load_bible_pairs(split)) for split in BIBLE_SPLITS) == len(pairs)
    assert not books["train"] & books["valid"] and not books["train"] & books["test"]
    assert not books["valid"] & books["test"]
    for split in ("valid", "test"):
        assert 0.005 < len(load_bible_pairs(split)) / len(pairs) < 0.03, f"{split} should hold about 1-3% of verses"


def test_held_out_books_are_exactly_the_documented_ones(pairs):
    assert set(HELD_OUT_BOOKS) == {"valid", "test"}
    assert HELD_OUT_BOOKS["test"] == ("Ruth", "Joel", "Jonah", "Habakkuk", "Titus", "Philemon", "3 John", "Jude")
    assert HELD_OUT_BOOKS["valid"] == ("Obadiah", "Micah", "Zephaniah", "Haggai", "2 Thessalonians", "James", "2 John")
    for split in ("valid", "test"):
        assert {pair.book for pair in pairs if pair.split == split} == set(HELD_OUT_BOOKS[split])
    held_out = set(HELD_OUT_BOOKS["valid"]) | set(HELD_OUT_BOOKS["test"])
    assert {pair.book for pair in pairs if pair.split == "train"} == set(BIBLE_BOOKS) - held_out
    assert all(pair.split == split_of_book(pair.book) for pair in pairs)
    assert split_of_book("Genesis") == "train" and split_of_book("Jonah") == "test"
    with pytest.raises(ValueError, match="unknown book"):
        split_of_book("Tobit")


def test_no_field_holds_markup_notes_codes_tabs_or_newlines(pairs):
    leaks = [(pair.reference, field) for pair in pairs for field in (pair.book, pair.en, pair.es) if LEAK.search(field)]
    assert leaks == []
    assert not any("  " in text or text != text.strip() for pair in pairs for text in (pair.en, pair.es))
    # the WEB's Hebrew and Greek footnotes and its glossary appended to Revelation 22:21 are gone
    assert not any(re.search(r"[\u0590-\u05ff\u0370-\u03ff\u1f00-\u1fff]", pair.en) for pair in pairs)
    assert not any("Glossary" in pair.en for pair in pairs)


def test_well_known_verses_read_right_in_both_languages(by_reference):
    john = by_reference["John 3:16"]
    assert john.book == "John" and (john.chapter, john.verse, john.split) == (3, 16, "train")
    assert "God so loved the world" in john.en and "only born Son" in john.en
    assert "Dios" in john.es and "amó" in john.es and "unigénito" in john.es
    genesis = by_reference["Genesis 1:1"]
    assert genesis.en == "In the beginning, God created the heavens and the earth."
    assert genesis.es == "En el principio crió Dios los cielos y la tierra."  # drop capital "EN" undone
    psalm = by_reference["Psalms 23:1"]
    assert "Yahweh is my shepherd" in psalm.en and "Jehová es mi pastor" in psalm.es
    assert psalm.en.startswith("A Psalm by David.") and psalm.es.startswith("Salmo de David.")  # canonical titles
    ruth = by_reference["Ruth 1:16"]
    assert ruth.split == "test" and "your God my God" in ruth.en and "tu Dios mi Dios" in ruth.es
    assert by_reference["Philemon 1:25"].es.endswith("Amén.")  # the subscription "A Filemón fué enviada ..." is cut
    assert by_reference["Song of Solomon 1:2"].en.startswith("Let him kiss me")  # speaker label "Beloved" removed


def test_known_misaligned_verses_are_left_out(by_reference):
    # The RV1909 module shifts these chapters by a verse against the WEB; the builder drops them.
    for reference in ("Numbers 13:2", "Jonah 2:1", "Hosea 12:1", "2 Corinthians 13:13"):
        assert reference not in by_reference
    assert "Jonah 1:16" not in by_reference and "Jonah 3:1" in by_reference


def test_unknown_split_raises_naming_the_valid_ones():
    with pytest.raises(ValueError, match="train, valid, test"):
        load_bible_pairs("validation")


def test_missing_or_corrupt_file_raises_value_error(tmp_path, monkeypatch):
    missing = tmp_path / "missing.tsv.gz"
    monkeypatch.setattr(bible, "bible_path", lambda: missing)
    with pytest.raises(ValueError, match="rerun text/data/make_bible_corpus.py"):
        load_bible_pairs()
    missing.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="reinstall polyformer"):
        load_bible_pairs()
    with gzip.open(missing, "wt", encoding="utf-8") as handle:
        handle.write("book\tchapter\tverse\tsplit\ten\tes\nJohn\tthree\t16\ttrain\tx\ty\n")
    with pytest.raises(ValueError, match="line 2"):
        load_bible_pairs()
    with gzip.open(missing, "wt", encoding="utf-8") as handle:
        handle.write("wrong header\n")
    with pytest.raises(ValueError, match="header"):
        load_bible_pairs()


def test_builder_cleans_osis_markup(builder):
    raw = (
        '<w lemma="strong:H0430">In</w> <w lemma="strong:H7225">beginning</w>, <w lemma="strong:H0430">God</w>'
        '<note placement="foot"><reference type="annotateRef">1:1 </reference>The Hebrew “אֱלֹהִ֑ים”.</note>'
        '<w lemma="strong:H1254">created</w> &amp; <q marker="" who="Jesus">spoke</q>.<l eID="x" level="1"/>'
        '<speaker>Beloved</speaker> <chapter eID="Rev.22"/><div canonical="true" eID="g1" osisID="Rev" type="book"/>'
        '<div sID="g2" type="glossary"/> <title type="main">World English Bible Glossary</title> Abaddon ...'
    )
    assert builder.clean_osis(raw) == "In beginning, God created & spoke."
    psalm = '<title canonical="true" type="psalm">A Psalm by David.</title> <lg sID="a"/><w>Yahweh</w> is'
    assert builder.clean_osis(psalm) == "A Psalm by David. Yahweh is"
    glued = '<w lemma="strong:G1125">enviada</w><transChange type="added">por medio de</transChange><w>Febe</w>'
    assert builder.clean_osis(glued) == "enviada por medio de Febe"
    assert builder.clean_osis('preguntándo<transChange type="added">le</transChange>') == "preguntándole"


def test_builder_spanish_fixes(builder):
    lexicon = {"jehová": "Jehová", "dijo": "dijo", "ti": "ti", "en": "en"}
    assert builder.undo_drop_capitals("Y JEHOVÁ dijo á Noé", lexicon) == "Y Jehová dijo á Noé"
    assert builder.undo_drop_capitals("EN el principio", lexicon) == "En el principio"
    assert builder.undo_drop_capitals("Salmo de David. A TI, oh Jehová", lexicon) == "Salmo de David. A ti, oh Jehová"
    assert builder.undo_drop_capitals("ALEPH. BIENAVENTURADOS los", {}) == "ALEPH. Bienaventurados los"
    text = "La gracia sea con vosotros. Amén. Escrita de Roma con Epafrodito."
    assert builder.drop_subscription(text) == "La gracia sea con vosotros. Amén."
    assert builder.drop_subscription("Amén. Así sea.") == "Amén. Así sea."


def test_builder_length_check_finds_a_shifted_chapter(builder):
    rng = random.Random(0)
    en, es = {}, {}
    for chapter in (1, 2, 3):
        for verse in range(1, 26):
            length = rng.randint(20, 250)
            en["Genesis", chapter, verse] = "x" * length
            es["Genesis", chapter, verse] = "y" * round(length * rng.uniform(0.85, 1.15))  # a translation
    assert builder.length_check(en, es) == set()
    for verse in range(1, 25):  # chapter 2 of the Spanish one verse ahead, as in the RV1909's Numbers 13
        es["Genesis", 2, verse] = es["Genesis", 2, verse + 1]
    es["Genesis", 2, 25] = ""
    suspects = {key for key in builder.length_check(en, es) if key in en}
    assert {("Genesis", 2, verse) for verse in range(1, 26)} <= suspects
    assert suspects - {("Genesis", 2, verse) for verse in range(1, 26)} <= {("Genesis", 1, 25), ("Genesis", 3, 1)}
