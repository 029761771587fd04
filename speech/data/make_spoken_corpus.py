"""Build the spoken corpus shipped in ``spoken_corpus/`` (or a bigger one), and the ``librivox/`` folder.

The spoken corpus is English speech synthesised by two text-to-speech engines from short public-domain
sentences, split by voice so that the test set holds only voices never heard in training.

What it needs (none of it is a polyformer dependency; only this script uses it)::

    apt-get update
    apt-get install espeak-ng flite sword-text-web   # the two TTS engines and the World English Bible
    pip install pysword                              # reads the SWORD Bible module (tested with 0.2.8)

Instead of installing ``sword-text-web`` system-wide you can unpack it anywhere and point ``--sword`` at it::

    apt-get download sword-text-web && dpkg-deb -x sword-text-web_*_all.deb /tmp/web
    ... --sword /tmp/web/usr/share/sword

Regenerate the shipped data (from the polyformer checkout; about a minute and a half on two cores)::

    python -m polyformer.speech.data.make_spoken_corpus --out speech/data/spoken_corpus --size small
    python -m polyformer.speech.data.make_spoken_corpus --librivox speech/data/librivox   # needs pocketsphinx-testdata

``--size large`` (20,000 training clips, 1,000 validation and 1,000 test, FLAC ``PCM_16``) or ``--clips N``
(N training clips) makes a bigger corpus (``--size large`` takes about 20 minutes and 0.9 GB); ``--seed`` changes
the sentence selection and the voice parameters. The output is deterministic given the seed and the versions
of the engines (espeak-ng 1.51 and flite 2.2 made the shipped corpus).

Sentences. The World English Bible (SWORD module ``engWEB2015eb``, Debian package ``sword-text-web``), which is
in the public domain; the corpus holds fragments derived from it, not the WEB itself. Each book's OSIS text is
stripped of its markup (footnotes, titles, speaker labels and the glossary after Revelation are dropped), cut
into sentences, and sentences longer than ten words into clauses (at commas, semicolons, colons, dashes and
brackets). A fragment is kept when it has 3 to 10 words, holds no digit or letter outside A-Z, and every word
occurs at least :data:`MIN_WORD_COUNT` times in the whole Bible (so rare names are left out). The transcription
is the fragment in lowercase letters a-z, apostrophes (only inside words: ``god's``, ``don't``) and single
spaces; the engines read the same words with the fragment's pauses kept as commas. Unique transcriptions are
shuffled with the seed and dealt to test first, then validation, then train, so no test or validation sentence
appears in train.

Voices. espeak-ng: eight English accents (``en``, ``en-us``, ``en-gb-scotland``, ``en-gb-x-rp``,
``en-gb-x-gbclan``, ``en-gb-x-gbcwmd``, ``en-029``, ``en-us-nyc``) times twelve variants (``+m1`` .. ``+m7``,
``+f1`` .. ``+f5``), each clip with a random pitch (``-p`` 20-80) and speed (``-s`` 130-210 words a minute).
flite: ``kal``, ``kal16``, ``awb``, ``rms``, ``slt``, each clip with a random ``duration_stretch`` (0.8-1.25)
and ``int_f0_target_mean`` (a range per voice). :data:`TEST_VOICES` (one espeak-ng voice per accent, and
flite's ``rms``) are held out for ``test/``; ``train/`` and ``validation/`` use the other 92 voices. A clip's
engine is flite with probability :data:`FLITE_SHARE`, then its voice is the next of that engine's voices for the
split, in an order shuffled with the seed, so that all voices speak about equally often (and every training
voice is in train/ once it has a few hundred clips).

Audio. Each clip is resampled to 16 kHz mono (``polyformer.speech.audio.resample``; espeak-ng speaks at
22,050 Hz, flite's ``kal`` at 8 kHz), trimmed to at most 0.1 s of silence (below -40 dB of the clip's loudest
10 ms frame) at either end, peak-normalised to 0.95 and written as FLAC with soundfile. Measured on 120 clips
of these voices, FLAC ``PCM_16`` takes 20.4 kB per second of speech and ``PCM_S8`` 6.7 kB, at a median
signal-to-quantisation-noise ratio of 36 dB; the 8-bit clips stay fully intelligible (the speech recogniser
PocketSphinx made no more errors on them than on the 16-bit ones), so ``--size small`` uses ``PCM_S8``, at a
third of the size, and fills a budget of :data:`SMALL_BUDGET_BYTES` on disk (every file counted in whole 4 KiB
blocks, as ``du`` does) with training clips after its 200 test and 60 validation clips: about 20 minutes of
speech. ``--size large`` uses ``PCM_16``; ``--subtype`` overrides either.

Each split folder holds ``NNNNN.flac`` files and a ``metadata.csv`` with the columns
``file_name,transcription,voice,engine`` (Hugging Face's audiofolder layout; read it with
:func:`polyformer.speech.data.read_audio_splits`).

``--librivox OUT_DIR`` converts the five LibriVox recordings (Jane Austen, *Sense and Sensibility*, read for
LibriVox, public domain) in Debian's ``pocketsphinx-testdata`` (``apt-get install pocketsphinx-testdata``) to
FLAC ``PCM_16`` with a ``metadata.csv`` (``file_name,transcription``); the transcriptions are the package's
reference texts exactly, without ``<s>`` / ``</s>`` and the utterance id.
"""

from __future__ import annotations

import argparse
import collections
import csv
import html
import io
import math
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from polyformer.speech.audio import SAMPLE_RATE, resample

SWORD_DIR = Path("/usr/share/sword")
SWORD_MODULE = "engWEB2015eb"
LIBRIVOX_SOURCE = Path("/usr/share/pocketsphinx/test/data/librivox")
SPLITS = ("train", "validation", "test")
COLUMNS = ("file_name", "transcription", "voice", "engine")

MIN_WORDS, MAX_WORDS = 3, 10
MIN_WORD_COUNT = 20
PEAK = 0.95
EDGE_SILENCE_S = 0.1
SILENCE_DB = -40.0
MIN_CLIP_S = 0.3
BLOCK = 4096
DIR_ENTRY_BYTES = 32  # a folder's own size grows by about this much per file (ext4)
SMALL_BUDGET_BYTES = 9_500_000  # with librivox/ (about 0.4 MB) the shipped speech data stays near 10 MB

ESPEAK, FLITE = "espeak-ng", "flite"
ESPEAK_ACCENTS = (
    "en",
    "en-us",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
#: flite voice -> range of its ``int_f0_target_mean`` in Hz (``rms`` ignores it; its speed still varies).
FLITE_VOICES = {"kal": (85, 140), "kal16": (85, 140), "awb": (95, 150), "rms": (90, 140), "slt": (140, 220)}
FLITE_SHARE = 0.3
#: Held out for test/: one espeak-ng voice per accent (both sexes, variants also heard with other accents in
#: training) and one flite voice.
TEST_VOICES = (
    (ESPEAK, "en+m4"),
    (ESPEAK, "en-us+f3"),
    (ESPEAK, "en-gb-scotland+m6"),
    (ESPEAK, "en-gb-x-rp+f5"),
    (ESPEAK, "en-gb-x-gbclan+m2"),
    (ESPEAK, "en-gb-x-gbcwmd+f1"),
    (ESPEAK, "en-029+m7"),
    (ESPEAK, "en-us-nyc+f4"),
    (FLITE, "rms"),
)


@dataclass(frozen=True)
class Sentence:
    """One fragment: its transcription and the text the engines read (the same words, with pauses)."""

    transcription: str
    spoken: str


@dataclass(frozen=True)
class Voice:
    engine: str
    name: str


@dataclass(frozen=True)
class Plan:
    """How many clips each split gets (``train=None``: as many as fit in ``budget`` bytes) and the FLAC subtype."""

    train: int | None
    validation: int
    test: int
    subtype: str
    budget: int | None = None


SIZES = {
    "small": Plan(train=None, validation=60, test=200, subtype="PCM_S8", budget=SMALL_BUDGET_BYTES),
    "large": Plan(train=20_000, validation=1_000, test=1_000, subtype="PCM_16"),
}


class CorpusError(RuntimeError):
    """Something the corpus needs is missing or unusable; the message says what and how to get it."""


# ----------------------------------------------------------------------------------------------- sentences
_GLOSSARY = re.compile(r'<div\b[^>]*type="glossary".*', re.S)
_DROPPED_ELEMENTS = re.compile(r"<(note|title|speaker|catchWord|rdg)\b[^>]*?(?<!/)>.*?</\1>", re.S)
_WORD_TAG = re.compile(r"</?w\b[^>]*>")
_ANY_TAG = re.compile(r"<[^>]+>")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’]*\s+")
_CLAUSE_BREAK = re.compile(r"[,;:()—–]|\s-\s")
_IN_WORD_APOSTROPHE = re.compile(r"(?<=[A-Za-z])[’'](?=[A-Za-z])")
_QUOTES = re.compile(r"[\"'“”‘’]")
_IN_WORD_HYPHEN = re.compile(r"(?<=[A-Za-z])-(?=[A-Za-z])")
_ALLOWED = re.compile(r"[A-Za-z\x01 ,;:.!?()\-—–]*")
_TOKEN = re.compile(r"[A-Za-z]+(?:\x01[A-Za-z]+)*|[,;:.!?()\-—–]")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def clean_osis(raw: str) -> str:
    """Plain text of one book's OSIS markup: no glossary, notes, titles, speakers, tags or entities."""
    text = _GLOSSARY.sub(" ", raw)
    text = _DROPPED_ELEMENTS.sub(" ", text)
    text = _WORD_TAG.sub("", text)
    text = _ANY_TAG.sub(" ", text)
    return " ".join(html.unescape(text).split())


def split_fragments(text: str) -> Iterator[str]:
    """Sentences of ``text``; a sentence over :data:`MAX_WORDS` words is cut into its clauses instead."""
    for sentence in _SENTENCE_END.split(text):
        if len(sentence.split()) <= MAX_WORDS:
            yield sentence
        else:
            yield from (clause for clause in _CLAUSE_BREAK.split(sentence) if clause.strip())


def to_sentence(fragment: str) -> Sentence | None:
    """The fragment's transcription and spoken form, or None if it has a digit, a foreign letter or a bad length.

    Apostrophes are kept only inside words; hyphens inside words become spaces; quotation marks go; any other
    punctuation inside the fragment becomes a comma (a pause) in the spoken form only.
    """
    text = _IN_WORD_HYPHEN.sub(" ", _QUOTES.sub(" ", _IN_WORD_APOSTROPHE.sub("\x01", fragment)))
    if not _ALLOWED.fullmatch(text):
        return None
    words: list[str] = []
    spoken: list[str] = []
    for token in _TOKEN.findall(text):
        if token[0].isalpha():
            word = token.lower().replace("\x01", "'")
            words.append(word)
            spoken.append(word)
        elif spoken and not spoken[-1].endswith(","):
            spoken[-1] += ","
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return None
    end = text.rstrip()[-1:]
    spoken[-1] = spoken[-1].rstrip(",") + (end if end in "?!" else ".")
    return Sentence(" ".join(words), " ".join(spoken))


def read_web_books(sword_dir: Path) -> list[str]:
    """The World English Bible, one plain-text string per book, read from a SWORD library with pysword."""
    try:
        from pysword.modules import SwordModules
    except ImportError as err:
        raise CorpusError("this script reads the Bible with pysword: pip install pysword") from err
    if not any(conf.stem.lower() == SWORD_MODULE.lower() for conf in (sword_dir / "mods.d").glob("*.conf")):
        raise CorpusError(
            f"{sword_dir}: no SWORD module {SWORD_MODULE} (apt-get install sword-text-web, or pass --sword DIR)"
        )
    library = SwordModules(str(sword_dir))
    library.parse_modules()
    bible = library.get_bible_from_module(SWORD_MODULE)
    books = bible.get_structure().get_books()
    return [clean_osis(bible.get(books=[book.osis_name], clean=False, join=" ")) for book in books["ot"] + books["nt"]]


def select_sentences(books: Sequence[str]) -> list[Sentence]:
    """Unique usable fragments in canonical order, each of whose words is common in the whole text."""
    counts = collections.Counter(word for book in books for word in _WORD.findall(book.lower().replace("’", "'")))
    chosen: dict[str, Sentence] = {}
    for book in books:
        for fragment in split_fragments(book):
            sentence = to_sentence(fragment)
            if sentence is None or sentence.transcription in chosen:
                continue
            if all(counts[word] >= MIN_WORD_COUNT for word in sentence.transcription.split()):
                chosen[sentence.transcription] = sentence
    return list(chosen.values())


def deal_sentences(sentences: Sequence[Sentence], plan: Plan, seed: int) -> dict[str, list[Sentence]]:
    """Shuffle with ``seed`` and deal test, then validation, then train (the rest); no sentence in two splits."""
    pool = list(sentences)
    random.Random(seed).shuffle(pool)
    held = plan.test + plan.validation
    if len(pool) <= held:
        raise CorpusError(f"only {len(pool)} usable sentences, fewer than the {held} test and validation clips")
    return {"test": pool[: plan.test], "validation": pool[plan.test : held], "train": pool[held:]}


# ----------------------------------------------------------------------------------------------- voices
def all_voices() -> list[Voice]:
    espeak = [Voice(ESPEAK, f"{accent}+{variant}") for accent in ESPEAK_ACCENTS for variant in ESPEAK_VARIANTS]
    return espeak + [Voice(FLITE, name) for name in FLITE_VOICES]


def split_voices() -> dict[str, list[Voice]]:
    """Voices by split: the held-out test voices, and all the others for train and validation."""
    held_out = [Voice(engine, name) for engine, name in TEST_VOICES]
    missing = set(held_out) - set(all_voices())
    if missing:
        raise CorpusError(f"test voices not among the voices: {sorted(v.name for v in missing)}")
    training = [voice for voice in all_voices() if voice not in held_out]
    return {"train": training, "validation": training, "test": held_out}


class VoiceCycle:
    """Deals a split's voices: flite with probability :data:`FLITE_SHARE` (where the split has both engines),
    then the engine's next voice in an order shuffled once with the seed, so every voice speaks about as often.
    """

    def __init__(self, voices: Sequence[Voice], seed: str):
        order = random.Random(seed)
        self.queues: dict[str, list[Voice]] = {}
        for engine in (ESPEAK, FLITE):
            queue = [voice for voice in voices if voice.engine == engine]
            order.shuffle(queue)
            if queue:
                self.queues[engine] = queue
        self.dealt = dict.fromkeys(self.queues, 0)

    def next(self, rng: random.Random) -> Voice:
        if len(self.queues) == 2:
            engine = FLITE if rng.random() < FLITE_SHARE else ESPEAK
        else:
            engine = next(iter(self.queues))
        queue = self.queues[engine]
        self.dealt[engine] += 1
        return queue[(self.dealt[engine] - 1) % len(queue)]


def synth_command(voice: Voice, text: str, wav: Path, rng: random.Random) -> list[str]:
    """The engine's command line that speaks ``text`` into ``wav`` with this clip's random pitch and speed."""
    if voice.engine == ESPEAK:
        pitch, speed = rng.randint(20, 80), rng.randint(130, 210)
        return [ESPEAK, "-v", voice.name, "-p", str(pitch), "-s", str(speed), "-w", str(wav), text]
    low, high = FLITE_VOICES[voice.name]
    stretch, f0 = rng.uniform(0.8, 1.25), rng.uniform(low, high)
    return [
        FLITE, "-voice", voice.name, "--setf", f"duration_stretch={stretch:.3f}",
        "--setf", f"int_f0_target_mean={f0:.1f}", "-t", text, "-o", str(wav),
    ]  # fmt: skip


def require_engines() -> None:
    missing = [tool for tool in (ESPEAK, FLITE) if shutil.which(tool) is None]
    if missing:
        raise CorpusError(f"{' and '.join(missing)} not found: apt-get install espeak-ng flite")


# ----------------------------------------------------------------------------------------------- audio
def trim_silence(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Cut leading and trailing silence (10 ms frames below :data:`SILENCE_DB` of the loudest) to 0.1 s."""
    frame = sample_rate // 100
    n_frames = max(1, len(audio) // frame)
    rms = np.sqrt(np.mean(audio[: n_frames * frame].reshape(n_frames, -1) ** 2, axis=1) + 1e-20)
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (SILENCE_DB / 20))
    pad = int(EDGE_SILENCE_S * sample_rate)
    start = max(0, int(loud[0]) * frame - pad)
    stop = min(len(audio), (int(loud[-1]) + 1) * frame + pad)
    return audio[start:stop]


def prepare_clip(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono 16 kHz, trimmed and peak-normalised float32 samples of one synthesised clip."""
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    audio = resample(audio, sample_rate, SAMPLE_RATE).numpy()
    if not len(audio) or not np.abs(audio).max() > 0:
        raise CorpusError("the engine produced silence")
    audio = trim_silence(audio)
    return (audio * (PEAK / np.abs(audio).max())).astype(np.float32)


def synthesise(voice: Voice, text: str, workdir: Path, rng: random.Random) -> np.ndarray:
    """Speak ``text`` with ``voice``: 16 kHz mono float32 samples, trimmed and peak-normalised."""
    wav = workdir / "clip.wav"
    wav.unlink(missing_ok=True)
    result = subprocess.run(synth_command(voice, text, wav, rng), capture_output=True, text=True)
    if result.returncode != 0 or not wav.is_file():
        raise CorpusError(f"{voice.engine} -v {voice.name} failed on {text!r}: {result.stderr.strip()}")
    audio, sample_rate = soundfile.read(str(wav), dtype="float32")
    clip = prepare_clip(audio, sample_rate)
    if len(clip) < MIN_CLIP_S * SAMPLE_RATE:
        raise CorpusError(f"{voice.engine} -v {voice.name} spoke {text!r} in only {len(clip)} samples")
    return clip


def blocks(n_bytes: int) -> int:
    """``n_bytes`` rounded up to whole :data:`BLOCK` blocks (at least one), as ``du`` counts a file."""
    return max(1, math.ceil(n_bytes / BLOCK)) * BLOCK


def disk_size(path: Path) -> int:
    return blocks(path.stat().st_size)


def folder_size(entries: int, file_bytes: int, metadata_bytes: int) -> int:
    """Disk use of a split folder: its files (already in blocks), metadata.csv, and the folder's own entries."""
    return file_bytes + blocks(metadata_bytes) + blocks(DIR_ENTRY_BYTES * entries)


def csv_line(row: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(row)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------- writing
def clear_folder(folder: Path) -> None:
    """Make ``folder`` and remove what an earlier run wrote there (FLACs and metadata.csv only)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in [*folder.glob("*.flac"), folder / "metadata.csv"]:
        stale.unlink(missing_ok=True)


def write_metadata(folder: Path, rows: Iterable[Sequence[str]], columns: Sequence[str]) -> Path:
    path = folder / "metadata.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    return path


@dataclass
class SplitReport:
    clips: int = 0
    seconds: float = 0.0
    bytes_on_disk: int = 0
    voices: int = 0


def write_split(
    folder: Path,
    sentences: Sequence[Sentence],
    voices: Sequence[Voice],
    count: int | None,
    budget: int | None,
    *,
    subtype: str,
    seed: int,
    workdir: Path,
) -> SplitReport:
    """Write up to ``count`` clips (train sentences repeat if there are too few), stopping before ``budget``."""
    clear_folder(folder)
    rows: list[tuple[str, str, str, str]] = []
    flac_bytes, metadata_bytes = 0, len(csv_line(COLUMNS))
    report = SplitReport()
    cycle = VoiceCycle(voices, f"{seed}/{folder.name}")
    index = 0
    while count is None or index < count:
        sentence = sentences[index % len(sentences)]
        rng = random.Random(f"{seed}/{folder.name}/{index}")
        voice = cycle.next(rng)
        clip = synthesise(voice, sentence.spoken, workdir, rng)
        path = folder / f"{index:05d}.flac"
        soundfile.write(str(path), clip, SAMPLE_RATE, subtype=subtype, format="FLAC")
        row = (path.name, sentence.transcription, voice.name, voice.engine)
        size, row_bytes = disk_size(path), len(csv_line(row))
        if budget is not None and folder_size(index + 2, flac_bytes + size, metadata_bytes + row_bytes) > budget:
            path.unlink()
            break
        rows.append(row)
        flac_bytes, metadata_bytes = flac_bytes + size, metadata_bytes + row_bytes
        report.clips += 1
        report.seconds += len(clip) / SAMPLE_RATE
        index += 1
    write_metadata(folder, rows, COLUMNS)
    report.bytes_on_disk = folder_size(len(rows) + 1, flac_bytes, metadata_bytes)
    report.voices = len({row[2] for row in rows})
    return report


def build_corpus(out: Path, plan: Plan, seed: int, sword_dir: Path) -> dict[str, SplitReport]:
    """Synthesise test, validation and train into ``out``; train fills what the budget leaves."""
    require_engines()
    sentences = deal_sentences(select_sentences(read_web_books(sword_dir)), plan, seed)
    voices = split_voices()
    counts = {"test": plan.test, "validation": plan.validation, "train": plan.train}
    reports: dict[str, SplitReport] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for split in ("test", "validation", "train"):
            left = None if plan.budget is None else plan.budget - sum(r.bytes_on_disk for r in reports.values())
            reports[split] = write_split(
                out / split, sentences[split], voices[split], counts[split], left,
                subtype=plan.subtype, seed=seed, workdir=Path(tmp),
            )  # fmt: skip
            print(f"{split}: {reports[split].clips} clips", file=sys.stderr)
    return {split: reports[split] for split in SPLITS}


# ----------------------------------------------------------------------------------------------- librivox
_TRANSCRIPT_LINE = re.compile(r"<s>\s*(?P<text>.*?)\s*</s>\s*\((?P<id>[^()\s]+)\)")


def read_librivox_transcripts(path: Path) -> dict[str, str]:
    """``{utterance id: reference text}`` from a Sphinx ``transcription`` file (``<s> words </s> (id)``)."""
    transcripts: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        match = _TRANSCRIPT_LINE.fullmatch(line.strip())
        if match is None:
            raise CorpusError(f"{path}, line {number}: expected '<s> words </s> (file_id)', got {line!r}")
        transcripts[match["id"]] = match["text"]
    return transcripts


def build_librivox(out: Path, source: Path = LIBRIVOX_SOURCE) -> SplitReport:
    """Convert the LibriVox WAVs of pocketsphinx-testdata to FLAC PCM_16 with a metadata.csv."""
    transcript_file = source / "transcription"
    if not transcript_file.is_file():
        raise CorpusError(f"{transcript_file} not found: apt-get install pocketsphinx-testdata")
    transcripts = read_librivox_transcripts(transcript_file)
    clear_folder(out)
    rows, report = [], SplitReport(bytes_on_disk=BLOCK)
    for utterance, text in transcripts.items():
        wav = source / f"{utterance}.wav"
        if not wav.is_file():
            raise CorpusError(f"{transcript_file}: no recording {wav.name} for utterance {utterance}")
        audio, sample_rate = soundfile.read(str(wav), dtype="float32", always_2d=True)
        audio = resample(audio.mean(axis=1), sample_rate, SAMPLE_RATE).numpy()
        flac = out / f"{utterance}.flac"
        soundfile.write(str(flac), audio, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
        rows.append((flac.name, text))
        report.clips += 1
        report.seconds += len(audio) / SAMPLE_RATE
        report.bytes_on_disk += disk_size(flac)
    report.bytes_on_disk += disk_size(write_metadata(out, rows, ("file_name", "transcription")))
    report.voices = 1
    return report


# ----------------------------------------------------------------------------------------------- command line
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder to write train/, validation/ and test/ into")
    parser.add_argument("--size", choices=sorted(SIZES), default="small", help="small: the shipped ~10 MB corpus")
    parser.add_argument("--clips", type=int, help="number of training clips (overrides --size's; no size budget)")
    parser.add_argument("--subtype", choices=("PCM_S8", "PCM_16", "PCM_24"), help="FLAC sample format")
    parser.add_argument("--seed", type=int, default=0, help="sentence selection and voice parameters")
    parser.add_argument("--sword", type=Path, default=SWORD_DIR, help="SWORD library holding engWEB2015eb")
    parser.add_argument("--librivox", type=Path, metavar="OUT_DIR", help="also convert the LibriVox test clips")
    parser.add_argument("--librivox-source", type=Path, default=LIBRIVOX_SOURCE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.out is None and args.librivox is None:
        parser.error("give --out DIR (the spoken corpus) and/or --librivox OUT_DIR")
    if args.clips is not None and args.clips < 1:
        parser.error("--clips must be at least 1")
    return args


def print_report(title: str, reports: dict[str, SplitReport]) -> None:
    for name, report in reports.items():
        print(
            f"{title}/{name}: {report.clips} clips, {report.seconds / 60:.1f} min, {report.voices} voices, "
            f"{report.bytes_on_disk / 1e6:.2f} MB on disk"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.out is not None:
            plan = SIZES[args.size]
            if args.clips is not None:
                plan = Plan(args.clips, plan.validation, plan.test, plan.subtype)
            if args.subtype is not None:
                plan = Plan(plan.train, plan.validation, plan.test, args.subtype, plan.budget)
            print_report(str(args.out), build_corpus(args.out, plan, args.seed, args.sword))
        if args.librivox is not None:
            print_report(str(args.librivox), {"all": build_librivox(args.librivox, args.librivox_source)})
    except CorpusError as err:
        print(f"make_spoken_corpus: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
