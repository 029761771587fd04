"""Transcribe audio of any length with a Whisper model, openai/whisper's way, many files at once.

Each file's log-mel features are computed once (with 30 s of padding, so the last window is
whole). Windows of 30 s are decoded in sequence: with timestamps, the next window starts where
the last complete segment ended (or after the whole window when the text ends on a single
timestamp); without, it starts after the whole window. A window whose no-speech probability is
above the threshold while its log-probability is low is skipped as silence. The text of earlier
windows conditions the next one (``<|startofprev|>``), unless the previous window needed a
temperature of 0.5 or more. Files are sorted by length and decoded in batches: each step
decodes the current window of every file in the batch together. A model trained here on short
clips (``fixed_window=False`` in its config) gets windows only as long as the batch's audio.

Shape legend: M mel bins, F frames (100 per second).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..audio import HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram, pad_or_trim
from .alignment import Word, word_timestamps
from .decoding import DecodingOptions, DecodingResult, decode_with_fallback, detect_language
from .model import Whisper
from .tokenizer import TIME_PRECISION, WhisperTokenizer

__all__ = ["Segment", "Transcription", "transcribe"]

FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100 mel frames per second
INPUT_STRIDE = 2  # mel frames per encoder position (and per timestamp step of 0.02 s)
WINDOW_MARGIN = 4  # frames of silence after the audio in a window of a model without a fixed window


@dataclass
class Segment:
    """A piece of the transcript with its time span (seconds)."""

    id: int
    seek: int  # the window's first mel frame
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[Word] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        if not self.words:
            out.pop("words")
        return out


@dataclass
class Transcription:
    """One file's result: the whole text, its segments and the language."""

    text: str
    segments: list[Segment]
    language: str | None
    language_probs: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"text": self.text, "language": self.language, "segments": [s.to_dict() for s in self.segments]}


@dataclass(eq=False)
class _File:
    mel: Tensor  # (M, content + 3000)
    content: int  # frames of real audio
    seek: int = 0
    tokens: list[int] = field(default_factory=list)  # every text and timestamp token so far
    prompt_from: int = 0  # conditioning uses tokens[prompt_from:]
    segments: list[Segment] = field(default_factory=list)
    language: str | None = None
    language_probs: dict[str, float] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.seek >= self.content


def _segments_of(
    result: DecodingResult, tokenizer: WhisperTokenizer, seek: int, window_frames: int
) -> tuple[list[tuple[float, float, list[int]]], int]:
    """Segments (start, end, tokens) of a decoded window and how many frames to advance."""
    tokens = result.tokens
    offset = seek / FRAMES_PER_SECOND
    tb = tokenizer.timestamp_begin
    is_stamp = [t >= tb for t in tokens]
    single_ending = len(is_stamp) >= 2 and is_stamp[-2:] == [False, True]
    consecutive = [i + 1 for i in range(len(tokens) - 1) if is_stamp[i] and is_stamp[i + 1]]
    pieces: list[tuple[float, float, list[int]]] = []
    if consecutive:
        slices = consecutive + ([len(tokens)] if single_ending else [])
        last = 0
        for current in slices:
            part = tokens[last:current]
            start = offset + (part[0] - tb) * TIME_PRECISION
            end = offset + (part[-1] - tb) * TIME_PRECISION
            pieces.append((start, end, part))
            last = current
        if single_ending:
            advance = window_frames
        else:
            advance = (tokens[last - 1] - tb) * INPUT_STRIDE
    else:
        duration = window_frames / FRAMES_PER_SECOND
        stamps = [t for t in tokens if t >= tb]
        if stamps and stamps[-1] != tb:
            duration = (stamps[-1] - tb) * TIME_PRECISION
        pieces.append((offset, offset + duration, tokens))
        advance = window_frames
    return pieces, max(advance, 1)


def _window_frames(files: list[_File]) -> int:
    """Frames of the batch's windows for a model without a fixed window: the longest remaining audio (up to 30 s)
    plus a little of the silence after it (as training's padding had), rounded up to an even count."""
    longest = max(min(N_FRAMES, f.content - f.seek) for f in files)
    return min(N_FRAMES, longest + WINDOW_MARGIN + (longest + WINDOW_MARGIN) % 2)


@torch.no_grad()
def transcribe(
    model: Whisper,
    tokenizer: WhisperTokenizer,
    audios: Sequence[Tensor | np.ndarray] | Tensor,
    options: DecodingOptions | None = None,
    *,
    initial_prompt: str | None = None,
    condition_on_previous_text: bool = True,
    word_timestamps_: bool = False,
    batch_size: int = 8,
    progress=None,
) -> list[Transcription]:
    """Transcribe 16 kHz mono clips (each (N,)) of any length; one :class:`Transcription` each, in order.

    Args:
        options: decoding options (task, language, temperatures, beams, thresholds, timestamps).
        initial_prompt: text that conditions the first window (spelling, names, style).
        condition_on_previous_text: condition each window on the text before it.
        word_timestamps_: add word-level times to every segment (needs timestamps).
        batch_size: files decoded together.
        progress: called with the number of files finished, when given.
    """
    options = options or DecodingOptions()
    if isinstance(audios, Tensor) and audios.dim() == 1:
        audios = [audios]
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    clips = [torch.as_tensor(a, dtype=torch.float32).reshape(-1) for a in audios]
    for i, clip in enumerate(clips):
        if clip.numel() == 0:
            raise ValueError(f"audio {i} holds no samples")
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    prompt_tokens = tokenizer.encode(" " + initial_prompt.strip()) if initial_prompt else []
    order = sorted(range(len(clips)), key=lambda i: clips[i].numel())  # similar lengths batch together
    results: dict[int, Transcription] = {}
    for start in range(0, len(order), batch_size):
        group = order[start : start + batch_size]
        files = []
        for i in group:
            mel = log_mel_spectrogram(clips[i], model.config.n_mels, padding=N_SAMPLES)
            files.append(_File(mel, mel.shape[-1] - N_FRAMES, tokens=list(prompt_tokens)))
        while True:
            active = [f for f in files if not f.done]
            if not active:
                break
            frames = N_FRAMES if model.config.fixed_window else _window_frames(active)
            windows = torch.stack([pad_or_trim(f.mel[:, f.seek : f.seek + frames], frames) for f in active])
            memory = model.encode(windows.to(device=device, dtype=dtype)).last_hidden_state
            undecided = [f for f in active if f.language is None]
            if undecided:
                if options.language is not None or not tokenizer.multilingual:
                    for f in undecided:
                        f.language = options.language or "en"
                else:
                    rows = torch.tensor([i for i, f in enumerate(active) if f.language is None], device=device)
                    for f, probs in zip(undecided, detect_language(model, tokenizer, memory.index_select(0, rows))):
                        f.language, f.language_probs = max(probs, key=probs.get), probs
            previous = [
                f.tokens[f.prompt_from :] if condition_on_previous_text or f.prompt_from == 0 else [] for f in active
            ]
            decoded = decode_with_fallback(model, tokenizer, memory, options, previous, [f.language for f in active])
            for row, (f, result) in enumerate(zip(active, decoded)):
                window_frames = min(N_FRAMES, f.content - f.seek)
                skip = (
                    options.no_speech_threshold is not None
                    and result.no_speech_prob > options.no_speech_threshold
                    and (options.logprob_threshold is None or result.avg_logprob < options.logprob_threshold)
                )
                if skip:
                    f.seek += window_frames
                    continue
                pieces, advance = _segments_of(result, tokenizer, f.seek, window_frames)
                words: list[Word] = []
                if word_timestamps_:
                    sot = tokenizer.sot_sequence(f.language, options.task, timestamps=False)
                    words = word_timestamps(
                        model, tokenizer, memory[row : row + 1], sot, result.tokens, window_frames,
                        time_offset=f.seek / FRAMES_PER_SECOND,
                    )  # fmt: skip
                for seg_start, seg_end, seg_tokens in pieces:
                    text = tokenizer.decode(seg_tokens)
                    n_text = sum(1 for t in seg_tokens if t < tokenizer.eot)
                    seg_words, taken = [], 0
                    while words and taken < n_text:
                        word = words.pop(0)
                        taken += word.tokens
                        seg_words.append(word)
                    if not text.strip():
                        continue
                    f.segments.append(
                        Segment(
                            id=len(f.segments), seek=f.seek, start=round(seg_start, 3), end=round(seg_end, 3),
                            text=text, tokens=seg_tokens, temperature=result.temperature,
                            avg_logprob=result.avg_logprob, compression_ratio=result.compression_ratio,
                            no_speech_prob=result.no_speech_prob, words=seg_words,
                        )
                    )  # fmt: skip
                f.tokens.extend(result.tokens)
                if not condition_on_previous_text or result.temperature > 0.5:
                    f.prompt_from = len(f.tokens)
                f.seek += min(advance, window_frames) if options.timestamps else window_frames
        for i, f in zip(group, files):
            text = "".join(s.text for s in f.segments).strip()
            results[i] = Transcription(text, f.segments, f.language, f.language_probs)
        if progress is not None:
            progress(len(results))
    return [results[i] for i in range(len(clips))]

