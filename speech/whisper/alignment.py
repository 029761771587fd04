"""Word-level timestamps: cross-attention of the alignment heads + dynamic time warping.

For a decoded window, the decoder is run once more over ``sot_sequence + text tokens + <|endoftext|>``
with its cross-attention weights kept. The weights of the model's alignment heads (each
renormalised over the audio's frames, standardised per frame, median-filtered along time) are
averaged into one token x frame matrix; the cheapest monotonic path through its negation (DTW)
assigns every token a span of encoder frames (20 ms each), and a word spans its tokens.

Shape legend: T text tokens, S encoder frames (50 per second).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .model import Whisper
from .tokenizer import TIME_PRECISION, WhisperTokenizer

__all__ = ["Word", "dtw_path", "split_words", "word_timestamps"]

PUNCTUATION_AFTER = "\"'.。,，!！?？:：”)]}、"
PUNCTUATION_BEFORE = "\"'“¿([{-"


@dataclass
class Word:
    """One word with its times in seconds and mean token probability."""

    word: str
    start: float
    end: float
    probability: float
    tokens: int = 1  # text tokens the word is made of


def dtw_path(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest monotonic path through ``cost`` (T, S) from (0, 0) to (T-1, S-1), moving down,
    right or diagonally; returns its row and column indices.

    Each row of the accumulated cost is one vectorised min-plus scan: ``c[j] = x[j] + min(a[j],
    c[j-1])`` with ``a`` the best of the cells above and above-left equals ``P[j] + min_{k<=j}(a[k]
    - P[k-1])`` for the prefix sums ``P`` of the row.
    """
    t, s = cost.shape
    if t == 0 or s == 0:
        raise ValueError("DTW needs a non-empty cost matrix")
    acc = np.full((t + 1, s + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, t + 1):
        above = np.minimum(acc[i - 1, :-1], acc[i - 1, 1:])  # a[j] for j = 1..S: diagonal or up
        prefix = np.cumsum(cost[i - 1])
        shifted = np.concatenate([[0.0], prefix[:-1]])
        acc[i, 1:] = prefix + np.minimum.accumulate(above - shifted)
    # Trace back from the end, preferring the diagonal, then up, then left (as openai/whisper).
    i, j = t, s
    rows, cols = [], []
    while i > 0 and j > 0:
        rows.append(i - 1)
        cols.append(j - 1)
        diagonal, up, left = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
        if diagonal <= up and diagonal <= left:
            i, j = i - 1, j - 1
        elif up <= left:
            i -= 1
        else:
            j -= 1
    return np.array(rows[::-1]), np.array(cols[::-1])


def split_words(tokenizer: WhisperTokenizer, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
    """Group text tokens into words: a word starts at a token beginning with a space; punctuation
    sticks to the word it follows (or precedes, for opening marks)."""
    words: list[str] = []
    groups: list[list[int]] = []
    for token in tokens:
        piece = tokenizer.decode([token])
        starts_word = piece.startswith(" ") or not words
        if starts_word and not (piece.strip() and all(ch in PUNCTUATION_AFTER for ch in piece.strip()) and words):
            words.append(piece)
            groups.append([token])
        else:
            words[-1] += piece
            groups[-1].append(token)
    merged_words: list[str] = []
    merged_groups: list[list[int]] = []
    for word, group in zip(words, groups):  # an opening mark alone joins the next word
        if merged_words and merged_words[-1].strip() and all(c in PUNCTUATION_BEFORE for c in merged_words[-1].strip()):
            merged_words[-1] += word
            merged_groups[-1] += group
        else:
            merged_words.append(word)
            merged_groups.append(group)
    return merged_words, merged_groups


def _median_filter(x: Tensor, width: int) -> Tensor:
    """Median filter along the last dimension, reflect-padded (x (..., S))."""
    if width <= 1 or x.shape[-1] <= width // 2:
        return x
    pad = width // 2
    flat = x.reshape(-1, 1, x.shape[-1])  # reflect padding wants (N, C, S)
    padded = torch.nn.functional.pad(flat, (pad, pad), mode="reflect").reshape(*x.shape[:-1], -1)
    return padded.unfold(-1, width, 1).median(dim=-1).values


@torch.no_grad()
def word_timestamps(
    model: Whisper,
    tokenizer: WhisperTokenizer,
    memory: Tensor,
    sot_sequence: list[int],
    text_tokens: list[int],
    num_frames: int,
    time_offset: float = 0.0,
    median_width: int = 7,
) -> list[Word]:
    """Words of one window's text tokens with start/end times (seconds, plus ``time_offset``).

    Args:
        memory: the window's encoder output (1, S, D).
        sot_sequence: the prompt the tokens were decoded after (without previous text).
        text_tokens: the decoded tokens (timestamps and end-of-text are dropped here).
        num_frames: mel frames of real audio in the window (at most 3000).
    """
    heads = model.config.alignment_heads
    if not heads:
        layers, per = model.config.decoder_layers, model.config.num_heads
        heads = [[layer, head] for layer in range(layers // 2, layers) for head in range(per)]
    text_tokens = [t for t in text_tokens if t < tokenizer.eot]
    if not text_tokens:
        return []
    tokens = torch.tensor([sot_sequence + text_tokens + [tokenizer.eot]], device=memory.device)
    logits, out = model.decoder(tokens, memory=memory, output_attentions=True)
    probs = logits[0, len(sot_sequence) - 1 : -1].float().softmax(dim=-1)
    token_probs = probs[torch.arange(len(text_tokens)), torch.tensor(text_tokens)].cpu().numpy()
    frames = max(1, min(num_frames // 2, memory.shape[1]))
    weights = torch.stack([out.cross_attentions[layer][0, head] for layer, head in heads]).float()  # (heads, T', S)
    weights = weights[:, :, :frames]
    weights = weights / weights.sum(dim=-1, keepdim=True).clamp(min=1e-10)
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    weights = _median_filter((weights - mean) / (std + 1e-10), median_width)
    matrix = weights.mean(dim=0)[len(sot_sequence) : -1]  # (T, S): text tokens only
    rows, cols = dtw_path(-matrix.double().cpu().numpy())
    words, groups = split_words(tokenizer, text_tokens)
    # The first path step of each token gives its start frame.
    jumps = np.concatenate([[True], np.diff(rows) > 0])
    starts_by_token = cols[jumps] * TIME_PRECISION
    boundaries = np.cumsum([0] + [len(g) for g in groups])
    ends = np.append(starts_by_token, frames * TIME_PRECISION)
    result = []
    for word, lo, hi in zip(words, boundaries[:-1], boundaries[1:]):
        start, end = float(ends[lo]), float(ends[hi]) if hi < len(ends) else frames * TIME_PRECISION
        result.append(Word(word, round(time_offset + start, 2), round(time_offset + max(start, end), 2),
                           float(np.mean(token_probs[lo:hi])), int(hi - lo)))  # fmt: skip
    return result
