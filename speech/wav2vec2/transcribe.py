"""CTC transcription of waveforms of any length with a :class:`~polyformer.speech.wav2vec2.Wav2Vec2ForCTC`.

Each clip is normalised (zero mean, unit variance, as in training) and cut into windows of at most
``window_seconds`` (attention cost grows with the square of the length); windows of similar length are batched
together with their padding masked, each window is read out greedily (best class per frame, repeats merged,
blanks dropped) or, with ``beam_size`` > 1, by CTC prefix beam search (core's :func:`ctc_beam_search`), and a
clip's windows are joined with spaces.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from polyformer.core.objectives import ctc_beam_search, ctc_greedy_decode

from ..audio import SAMPLE_RATE, normalize_waveform
from ..data import collate_audio
from .model import Wav2Vec2ForCTC
from .vocabulary import CtcVocabulary

__all__ = ["transcribe_ctc"]


def transcribe_ctc(
    model: Wav2Vec2ForCTC,
    vocabulary: CtcVocabulary,
    audios: Sequence[Tensor],
    batch_size: int = 8,
    window_seconds: float = 30.0,
    beam_size: int = 1,
) -> list[str]:
    """The transcription of each 16 kHz waveform (N,) in ``audios`` (greedy with ``beam_size`` 1).

    Raises:
        ValueError: an empty clip, one shorter than the model's receptive field, or a bad batch, window or beam size.
    """
    if batch_size < 1 or window_seconds <= 0 or beam_size < 1:
        raise ValueError("batch_size and beam_size must be >= 1 and window_seconds > 0")
    shortest = model.config.receptive_field
    window = round(window_seconds * SAMPLE_RATE)
    pieces: list[tuple[int, Tensor]] = []  # (clip index, window samples)
    for index, audio in enumerate(audios):
        audio = torch.as_tensor(audio, dtype=torch.float32).reshape(-1)
        if audio.numel() < shortest:
            raise ValueError(f"clip {index} has {audio.numel()} samples, fewer than the model's receptive field "
                             f"({shortest})")  # fmt: skip
        for start in range(0, audio.numel(), window):
            part = audio[start : start + window]
            if part.numel() >= shortest or start == 0:
                pieces.append((index, normalize_waveform(part)))
    device = next(model.parameters()).device
    order = sorted(range(len(pieces)), key=lambda i: pieces[i][1].numel())
    texts: list[list[str]] = [[] for _ in audios]
    decoded: dict[int, str] = {}
    model = model.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            audio, mask = collate_audio([pieces[i][1] for i in chunk])
            logits, lengths = model(audio.to(device), mask.to(device))
            if beam_size > 1:
                found = ctc_beam_search(logits.float(), lengths, blank=vocabulary.blank, beam_size=beam_size)
            else:
                found = ctc_greedy_decode(logits.float(), lengths, blank=vocabulary.blank)
            for i, ids in zip(chunk, found):
                decoded[i] = vocabulary.decode(ids)
    for i, (index, _) in enumerate(pieces):  # windows in their original order
        if decoded[i]:
            texts[index].append(decoded[i])
    return [" ".join(parts) for parts in texts]
