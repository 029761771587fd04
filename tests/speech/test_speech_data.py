"""Audio dataset readers (metadata.csv, JSONL, bare folders, split folders, bad rows) and the shipped corpora."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from polyformer.speech.audio import SAMPLE_RATE
from polyformer.speech.data import (
    LIBRIVOX_DIR,
    AudioClips,
    SpeechDataError,
    check_audio_files,
    read_audio_dataset,
    read_audio_splits,
)
from polyformer.speech.data.make_spoken_corpus import to_sentence, trim_silence

LIBRIVOX_TEXTS = {
    "sense_and_sensibility_01_austen_64kb-0870.flac": (
        "and mister john dashwood had then leisure to consider how much there might be prudently in his power "
        "to do for them"
    ),
    "sense_and_sensibility_01_austen_64kb-0880.flac": "he was not an ill disposed young man",
    "sense_and_sensibility_01_austen_64kb-0890.flac": (
        "unless to be rather cold hearted and rather selfish is to be ill disposed"
    ),
    "sense_and_sensibility_01_austen_64kb-0920.flac": (
        "had he married a more a amiable woman he might have been made still more respectable than he was"
    ),
    "sense_and_sensibility_01_austen_64kb-0930.flac": "he might even have been made amiable himself",
}
TRANSCRIPTION = re.compile(r"[a-z']+( [a-z']+)*")


def write_tone(path: Path, seconds: float = 0.05, sample_rate: int = 8000) -> Path:
    """A short sine tone (a real, decodable audio file) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    soundfile.write(str(path), (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sample_rate)
    return path


def write_csv(folder: Path, header: list[str], rows: list[list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metadata.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def read_rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "metadata.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ----------------------------------------------------------------------------------------------- metadata.csv
def test_metadata_csv_with_extra_columns(tmp_path):
    write_tone(tmp_path / "a.wav")
    write_tone(tmp_path / "sub" / "b.flac")
    write_csv(
        tmp_path, ["file_name", "transcription", "voice"], [["a.wav", " hello world ", "x"], ["sub/b.flac", "hi", "y"]]
    )
    clips = read_audio_dataset(tmp_path)
    assert isinstance(clips, AudioClips) and len(clips) == 2
    assert clips.paths == [tmp_path / "a.wav", tmp_path / "sub" / "b.flac"]
    assert clips.texts == ["hello world", "hi"]
    assert clips.extra == {"voice": ["x", "y"]}
    assert clips.skipped == []


@pytest.mark.parametrize("column", ["text", "sentence"])
def test_metadata_csv_accepts_other_transcription_column_names(tmp_path, column):
    write_tone(tmp_path / "a.wav")
    write_csv(tmp_path, ["file_name", column], [["a.wav", "one two"]])
    assert read_audio_dataset(tmp_path).texts == ["one two"]


def test_metadata_csv_path_is_accepted_directly_and_rows_may_span_lines(tmp_path):
    write_tone(tmp_path / "a.wav")
    write_tone(tmp_path / "b.wav")
    metadata = write_csv(tmp_path, ["file_name", "transcription"], [["a.wav", "two\nlines"], ["b.wav", "x"]])
    clips = read_audio_dataset(metadata)
    assert clips.texts == ["two\nlines", "x"]
    (tmp_path / "b.wav").unlink()
    with pytest.raises(SpeechDataError, match=r"metadata\.csv, line 4: file 'b\.wav' does not exist"):
        read_audio_dataset(tmp_path)


def test_missing_folder_and_folder_without_metadata(tmp_path):
    with pytest.raises(SpeechDataError, match=r"nowhere: no such folder or file"):
        read_audio_dataset(tmp_path / "nowhere")
    write_tone(tmp_path / "a.wav")
    with pytest.raises(SpeechDataError, match=r"no metadata\.csv \(a labelled audio folder needs one"):
        read_audio_dataset(tmp_path)
    with pytest.raises(SpeechDataError, match=r"expected a folder \(with metadata\.csv\) or a \.jsonl manifest"):
        read_audio_dataset(tmp_path / "a.wav")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            ["path", "transcription"],
            r"metadata\.csv: no 'file_name' column in the header \(found: path, transcription\)",
        ),
        (["file_name", "label"], r"metadata\.csv: no transcription column \('transcription' or 'text' or 'sentence'\)"),
    ],
)
def test_csv_without_the_needed_columns(tmp_path, header, message):
    write_tone(tmp_path / "a.wav")
    write_csv(tmp_path, header, [["a.wav", "x"]])
    with pytest.raises(SpeechDataError, match=message):
        read_audio_dataset(tmp_path)
    with pytest.raises(SpeechDataError, match=message):
        read_audio_dataset(tmp_path, skip_bad=True)  # structural errors are never skipped


def test_empty_metadata_file(tmp_path):
    (tmp_path / "metadata.csv").write_text("")
    with pytest.raises(SpeechDataError, match=r"metadata\.csv: empty file"):
        read_audio_dataset(tmp_path)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (["gone.wav", "text"], r"metadata\.csv, line 3: file 'gone\.wav' does not exist"),
        (
            ["notes.txt", "text"],
            r"metadata\.csv, line 3: file 'notes\.txt' is not an audio file \(expected one of \.wav",
        ),
        (["a.wav", "  "], r"metadata\.csv, line 3: empty transcription for 'a\.wav'"),
        (["", "text"], r"metadata\.csv, line 3: empty file name"),
        (["a.wav", "text", "surplus"], r"metadata\.csv, line 3: expected 2 fields, got 3"),
    ],
)
def test_each_bad_row_names_file_and_line_or_is_skipped(tmp_path, row, message):
    write_tone(tmp_path / "a.wav")
    (tmp_path / "notes.txt").write_text("not audio")
    write_csv(tmp_path, ["file_name", "transcription"], [["a.wav", "good"], row])
    with pytest.raises(SpeechDataError, match=message):
        read_audio_dataset(tmp_path)
    clips = read_audio_dataset(tmp_path, skip_bad=True)
    assert clips.texts == ["good"]
    assert len(clips.skipped) == 1
    file, line, reason = clips.skipped[0]
    assert file == str(tmp_path / "metadata.csv") and line == 3 and re.search(message.split(": ", 1)[1], reason)


def test_skip_bad_counts_every_bad_row_and_an_empty_result_is_an_error(tmp_path):
    write_tone(tmp_path / "a.wav")
    rows = [["a.wav", "ok"], ["x.wav", "missing"], ["a.wav", ""], ["y.mp4", "video"], ["a.wav", "again"]]
    write_csv(tmp_path, ["file_name", "transcription"], rows)
    clips = read_audio_dataset(tmp_path, skip_bad=True)
    assert clips.texts == ["ok", "again"]
    assert [line for _, line, _ in clips.skipped] == [3, 4, 5]
    write_csv(tmp_path, ["file_name", "transcription"], [["x.wav", "missing"], ["z.wav", "missing"]])
    with pytest.raises(
        SpeechDataError, match=r"no audio clips in .*metadata\.csv \(all 2 entries were bad; the first: "
    ):
        read_audio_dataset(tmp_path, skip_bad=True)
    write_csv(tmp_path, ["file_name", "transcription"], [])
    with pytest.raises(SpeechDataError, match=r"^no audio clips in .*metadata\.csv$"):
        read_audio_dataset(tmp_path)


# ----------------------------------------------------------------------------------------------- jsonl
def test_jsonl_manifest_relative_and_absolute_paths(tmp_path):
    write_tone(tmp_path / "clips" / "a.wav")
    absolute = write_tone(tmp_path / "elsewhere" / "b.ogg")
    manifest = write_jsonl(
        tmp_path / "clips" / "train.jsonl",
        [{"audio": "a.wav", "text": "first", "speaker": "s1"}, "", {"audio": str(absolute), "text": "second"}],
    )
    clips = read_audio_dataset(manifest)
    assert clips.paths == [tmp_path / "clips" / "a.wav", absolute]
    assert clips.texts == ["first", "second"]
    assert clips.extra == {"speaker": ["s1", ""]}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"audio": "a.wav", "text": ', r"m\.jsonl, line 2: malformed JSON \("),
        ("[1, 2]", r"m\.jsonl, line 2: expected a JSON object, got list"),
        ({"text": "no audio"}, r"m\.jsonl, line 2: missing key 'audio'"),
        ({"audio": "a.wav"}, r"m\.jsonl, line 2: missing key 'text'"),
        ({"audio": "a.wav", "text": 3}, r"m\.jsonl, line 2: 'text' must be a string, got int"),
        ({"audio": "b.wav", "text": "x"}, r"m\.jsonl, line 2: file 'b\.wav' does not exist"),
        ({"audio": "a.wav", "text": ""}, r"m\.jsonl, line 2: empty transcription for 'a\.wav'"),
    ],
)
def test_jsonl_bad_lines(tmp_path, line, message):
    write_tone(tmp_path / "a.wav")
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"audio": "a.wav", "text": "good"}, line])
    with pytest.raises(SpeechDataError, match=message):
        read_audio_dataset(manifest)
    clips = read_audio_dataset(manifest, skip_bad=True)
    assert len(clips) == 1 and [number for _, number, _ in clips.skipped] == [2]


# ----------------------------------------------------------------------------------------------- unlabelled
def test_unlabelled_folder_finds_audio_recursively_sorted(tmp_path):
    for name in ["b.wav", "a/z.flac", "a/c.OGG", ".hidden/x.wav"]:
        write_tone(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not audio")
    clips = read_audio_dataset(tmp_path, labelled=False)
    assert clips.texts is None
    assert clips.paths == [tmp_path / "a" / "c.OGG", tmp_path / "a" / "z.flac", tmp_path / "b.wav"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpeechDataError, match=r"no audio clips in .*empty \(looked for \.wav"):
        read_audio_dataset(tmp_path / "empty", labelled=False)


def test_unlabelled_index_ignores_texts(tmp_path):
    write_tone(tmp_path / "a.wav")
    write_csv(tmp_path, ["file_name", "voice"], [["a.wav", "v1"]])  # no transcription column needed
    clips = read_audio_dataset(tmp_path, labelled=False)
    assert clips.texts is None and clips.extra == {"voice": ["v1"]}
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"audio": "a.wav"}, {"audio": "a.wav", "text": ""}])
    assert len(read_audio_dataset(manifest, labelled=False)) == 2


# ----------------------------------------------------------------------------------------------- splits
def test_split_folders(tmp_path):
    for split in ["train", "validation", "test"]:
        write_tone(tmp_path / split / "a.wav")
        write_csv(tmp_path / split, ["file_name", "transcription"], [["a.wav", f"{split} words"]])
    splits = read_audio_splits(tmp_path)
    assert list(splits) == ["train", "validation", "test"]
    assert splits["test"].texts == ["test words"] and splits["test"].paths == [tmp_path / "test" / "a.wav"]
    (tmp_path / "validation" / "metadata.csv").unlink()
    with pytest.raises(SpeechDataError, match=r"validation: no metadata\.csv"):
        read_audio_splits(tmp_path)


def test_folder_without_splits_is_train_and_partial_splits_are_an_error(tmp_path):
    write_tone(tmp_path / "a.wav")
    write_csv(tmp_path, ["file_name", "transcription"], [["a.wav", "words"]])
    assert list(read_audio_splits(tmp_path)) == ["train"]
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"audio": "a.wav", "text": "x"}])
    assert read_audio_splits(manifest)["train"].texts == ["x"]
    other = tmp_path / "other"
    write_tone(other / "train" / "a.wav")
    with pytest.raises(SpeechDataError, match=r"split folders need both train/ and test/ \(found only train/\)"):
        read_audio_splits(other)
    assert len(read_audio_splits(other, labelled=False)["train"]) == 1


# ----------------------------------------------------------------------------------------------- decoding
def test_check_audio_files_raises_or_skips_undecodable_clips(tmp_path):
    write_tone(tmp_path / "good.wav")
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wave file")
    soundfile.write(str(tmp_path / "empty.wav"), np.zeros(0, dtype=np.float32), 16000)
    rows = [["good.wav", "a", "v1"], ["broken.wav", "b", "v2"], ["empty.wav", "c", "v3"]]
    write_csv(tmp_path, ["file_name", "transcription", "voice"], rows)
    clips = read_audio_dataset(tmp_path)  # the index does not decode
    assert len(clips) == 3
    with pytest.raises(SpeechDataError, match=r"broken\.wav: cannot decode audio"):
        check_audio_files(clips)
    checked = check_audio_files(clips, skip_bad=True)
    assert checked.paths == [tmp_path / "good.wav"] and checked.texts == ["a"] and checked.extra == {"voice": ["v1"]}
    assert [(Path(file).name, line) for file, line, _ in checked.skipped] == [("broken.wav", 0), ("empty.wav", 0)]
    assert "no audio samples" in checked.skipped[1][2]
    only_bad = AudioClips(clips.paths[1:], None)
    with pytest.raises(SpeechDataError, match=r"no decodable audio clips among the 2 given \(all 2 entries were bad"):
        check_audio_files(only_bad, skip_bad=True)


# ----------------------------------------------------------------------------------------------- corpus builder
def test_builder_normalises_fragments():
    sentence = to_sentence("God said, “Let there be light,” and there was light.")
    assert sentence.transcription == "god said let there be light and there was light"
    assert sentence.spoken == "god said, let there be light, and there was light."
    assert (
        to_sentence("Don’t be afraid, Abraham’s ‘friends’—go!").transcription == "don't be afraid abraham's friends go"
    )
    assert to_sentence("burnt-offering for the king?").spoken == "burnt offering for the king?"
    assert to_sentence("in the 5th year") is None  # digits
    assert to_sentence("to Zoë") is None  # a letter outside a-z
    assert to_sentence("he wept") is None  # too short


def test_builder_trims_long_edge_silence():
    speech = np.sin(np.linspace(0, 400 * np.pi, SAMPLE_RATE // 2)).astype(np.float32)
    audio = np.concatenate([np.zeros(SAMPLE_RATE), speech, np.zeros(2 * SAMPLE_RATE)]).astype(np.float32)
    trimmed = trim_silence(audio)
    assert len(speech) <= len(trimmed) <= len(speech) + int(0.22 * SAMPLE_RATE)


def test_shipped_librivox_clips_and_reference_texts():
    clips = read_audio_dataset(LIBRIVOX_DIR)
    assert {path.name: text for path, text in zip(clips.paths, clips.texts)} == LIBRIVOX_TEXTS
    assert {path.name for path in LIBRIVOX_DIR.iterdir()} == set(LIBRIVOX_TEXTS) | {"metadata.csv"}
    durations = [soundfile.info(str(path)).duration for path in clips.paths]
    assert all(2.5 < seconds < 8 for seconds in durations)
    assert all(soundfile.info(str(path)).samplerate == SAMPLE_RATE for path in clips.paths)
