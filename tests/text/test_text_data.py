"""Text data readers: plain text, labelled CSV, sentence pairs; bad lines named by file and line or skipped."""

import pytest

from polyformer.text.data import TextDataError, read_labeled, read_pairs, read_texts


def test_plain_text_lines_and_folders(tmp_path):
    (tmp_path / "a.txt").write_text("\ufefffirst line\n\n  second  \n", encoding="utf-8")
    assert read_texts(tmp_path / "a.txt").texts == ["first line", "second"]
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "1.txt").write_text("doc one\ncontinues")
    (folder / "2.txt").write_text("   ")
    assert read_texts(folder).texts == ["doc one\ncontinues"]
    (tmp_path / "blank.txt").write_text("\n \n")
    with pytest.raises(TextDataError, match="blank.txt holds no text"):
        read_texts(tmp_path / "blank.txt")


def test_invalid_utf8_is_named_or_skipped(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes(b"fine\nfa\xe7ade\nalso fine\n")
    with pytest.raises(TextDataError, match=r"latin.txt, line 2: not valid UTF-8 .*--skip-bad"):
        read_texts(path)
    result = read_texts(path, skip_bad=True)
    assert result.texts == ["fine", "also fine"] and result.skipped[0][1] == 2


def test_labeled_csv(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('text,label\n"good, really",pos\nbad,neg\n"three",cols,extra\n,neg\n', encoding="utf-8")
    with pytest.raises(TextDataError, match=r"reviews.csv, line 4: 3 columns, the header has 2"):
        read_labeled(path)
    result = read_labeled(path, skip_bad=True)
    assert result.texts == ["good, really", "bad"] and result.labels == ["pos", "neg"]
    assert [line for _, line, _ in result.skipped] == [4, 5] and result.classes == ["neg", "pos"]
    (tmp_path / "one.csv").write_text("text,label\na,x\nb,x\n")
    with pytest.raises(TextDataError, match="single label"):
        read_labeled(tmp_path / "one.csv")
    (tmp_path / "nohead.csv").write_text("a,x\nb,y\n")
    with pytest.raises(TextDataError, match="header must name a 'text' and a 'label' column"):
        read_labeled(tmp_path / "nohead.csv")


def test_sentence_pairs_tsv_and_jsonl(tmp_path):
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("source\ttarget\nhello\thola\nonly one side\n\tvacío\n", encoding="utf-8")
    with pytest.raises(TextDataError, match=r"pairs.tsv, line 3: 1 tab-separated columns, expected 2"):
        read_pairs(tsv)
    result = read_pairs(tsv, skip_bad=True)
    assert (result.sources, result.targets) == (["hello"], ["hola"]) and len(result.skipped) == 2
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text('{"source": "a", "target": "b"}\n{"source": "c"}\nnot json\n', encoding="utf-8")
    with pytest.raises(TextDataError, match=r"pairs.jsonl, line 2: not a JSON object"):
        read_pairs(jsonl)
    assert read_pairs(jsonl, skip_bad=True).targets == ["b"]
    with pytest.raises(FileNotFoundError):
        read_pairs(tmp_path / "missing.tsv")
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(TextDataError, match="holds no sentence pairs"):
        read_pairs(tmp_path / "empty.tsv")
