"""A toy task that proves the core end to end: an encoder-decoder learns to reverse sequences.

Random token sequences (length 8 to 12) go in; the model must emit them reversed, then EOS.
Training is teacher-forced cross-entropy, run by the training engine
(:func:`polyformer.apps.engine.train`); evaluation decodes with the shared generation code
(greedy or beam search, through the KV cache) and counts exact matches.

Shape legend: B batch, S source length, T target length, V vocabulary.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from polyformer.apps.engine import Seq2SeqTask, TrainingConfig
from polyformer.apps.engine import train as engine_train
from polyformer.core import EncoderDecoderTransformer, TransformerConfig

PAD, BOS, EOS, FIRST_SYMBOL = 0, 1, 2, 3


@dataclass
class ReversalSettings:
    num_symbols: int = 16  # distinct tokens in the sequences
    min_len: int = 8  # shortest sequence
    max_len: int = 12  # longest sequence
    steps: int = 700  # optimiser steps
    batch_size: int = 128  # sequences per step
    lr: float = 3e-3  # peak learning rate (linear warmup, cosine decay to 0)
    warmup: int = 60  # warmup steps
    d_model: int = 64  # model width
    layers: int = 2  # encoder and decoder layers each
    seed: int = 0  # seed of model init and data


def make_batch(settings: ReversalSettings, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Right-padded sources (B, S) and their reversals (B, S), PAD after each sequence."""
    lengths = torch.randint(settings.min_len, settings.max_len + 1, (batch_size,), generator=generator)
    shape = (batch_size, settings.max_len)
    symbols = torch.randint(FIRST_SYMBOL, FIRST_SYMBOL + settings.num_symbols, shape, generator=generator)
    positions = torch.arange(settings.max_len)
    real = positions[None] < lengths[:, None]
    src = symbols.masked_fill(~real, PAD)
    # Reverse within each row's own length: target[i] = src[len - 1 - i].
    index = (lengths[:, None] - 1 - positions[None]).clamp(min=0)
    tgt = src.gather(1, index).masked_fill(~real, PAD)
    return src, tgt


def build_model(settings: ReversalSettings) -> EncoderDecoderTransformer:
    config = TransformerConfig(
        vocab_size=FIRST_SYMBOL + settings.num_symbols,
        d_model=settings.d_model,
        num_heads=4,
        encoder_layers=settings.layers,
        decoder_layers=settings.layers,
        d_ff=2 * settings.d_model,
        dropout=0.0,
        norm_first=True,
        position="learned",
        max_len=settings.max_len + 2,
        pad_id=PAD,
        bos_id=BOS,
        eos_id=EOS,
    )
    return EncoderDecoderTransformer(config)


def teacher_forcing_pair(tgt: Tensor) -> tuple[Tensor, Tensor]:
    """Decoder input [BOS, y] and labels [y, EOS] (B, T + 1), PAD beyond."""
    b = tgt.shape[0]
    lengths = tgt.ne(PAD).sum(1)
    decoder_in = torch.cat([torch.full((b, 1), BOS), tgt], dim=1)
    labels = torch.cat([tgt, torch.full((b, 1), PAD)], dim=1)
    labels[torch.arange(b), lengths] = EOS
    return decoder_in, labels


class ReversalSamples(Dataset):
    """``count`` random sequences as ``(src (S,), decoder_in (T + 1,), labels (T + 1,))``, drawn once from ``seed``."""

    def __init__(self, settings: ReversalSettings, count: int, seed: int):
        src, tgt = make_batch(settings, count, torch.Generator().manual_seed(seed))
        self.src = src
        self.decoder_in, self.labels = teacher_forcing_pair(tgt)

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        return self.src[index], self.decoder_in[index], self.labels[index]


def train(
    settings: ReversalSettings, log: Callable[[str], None] | None = None, out_dir: str | Path | None = None
) -> EncoderDecoderTransformer:
    """Train a fresh model with the training engine; returns it on the CPU in eval mode.

    Each step sees ``batch_size`` new sequences (one pass over ``steps * batch_size`` samples);
    AdamW without weight decay, linear warmup then cosine decay, gradients clipped to norm 1.

    Args:
        settings: task, model and optimisation sizes.
        log: gets a progress line every 100 steps.
        out_dir: the engine's run directory (checkpoint, metrics.jsonl, model/); None uses a
            temporary directory that is deleted afterwards.
    """
    torch.manual_seed(settings.seed)
    model = build_model(settings)
    data = ReversalSamples(settings, settings.steps * settings.batch_size, settings.seed)
    start = time.perf_counter()

    def report(step: int, values: dict[str, float]) -> None:
        if log is not None and step % 100 == 0:
            log(f"step {step}/{settings.steps}  loss {values['loss']:.4f}  {time.perf_counter() - start:.1f}s")

    with contextlib.ExitStack() as stack:
        if out_dir is None:
            out_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="reversal-"))
        config = TrainingConfig(
            out_dir=str(out_dir), batch_size=settings.batch_size, max_steps=settings.steps, lr=settings.lr,
            warmup_steps=settings.warmup, weight_decay=0.0, betas=(0.9, 0.98), clip_grad_norm=1.0,
            precision="fp32", seed=settings.seed, log_every=100, quiet=True, plot=False, keep_last=1,
        )  # fmt: skip
        engine_train(model, Seq2SeqTask(pad_id=PAD), data, config, on_step_end=report)
    return model.cpu().eval()


@torch.no_grad()
def exact_match(model: EncoderDecoderTransformer, src: Tensor, tgt: Tensor, num_beams: int = 1) -> float:
    """Fraction of sources whose decoded output equals the reversal followed by EOS."""
    out = model.generate(src, max_new_tokens=src.shape[1] + 1, num_beams=num_beams).sequences
    _, labels = teacher_forcing_pair(tgt)
    width = max(out.shape[1], labels.shape[1])
    out = F.pad(out, (0, width - out.shape[1]), value=PAD)
    labels = F.pad(labels, (0, width - labels.shape[1]), value=PAD)
    return out.eq(labels).all(dim=1).float().mean().item()


def decode_tokens(ids: Tensor) -> str:
    """Symbols as letters, stopping at EOS: token 3 -> 'a', 4 -> 'b', ..."""
    letters = []
    for token in ids.tolist():
        if token in (EOS, PAD):
            break
        letters.append(chr(ord("a") + token - FIRST_SYMBOL) if token >= FIRST_SYMBOL else "?")
    return "".join(letters)
