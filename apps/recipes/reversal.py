"""A toy task that proves the core end to end: an encoder-decoder learns to reverse sequences.

Random token sequences (length 8 to 12) go in; the model must emit them reversed, then EOS.
Training is teacher-forced cross-entropy; evaluation decodes with the shared generation code
(greedy or beam search, through the KV cache) and counts exact matches.

Shape legend: B batch, S source length, T target length, V vocabulary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from polyformer.core import EncoderDecoderTransformer, TransformerConfig

PAD, BOS, EOS, FIRST_SYMBOL = 0, 1, 2, 3


@dataclass
class ReversalSettings:
    num_symbols: int = 16  # distinct tokens in the sequences
    min_len: int = 8  # shortest sequence
    max_len: int = 12  # longest sequence
    steps: int = 700  # optimiser steps
    batch_size: int = 128  # sequences per step
    lr: float = 3e-3  # peak learning rate (linear warmup, cosine decay)
    warmup: int = 60  # warmup steps
    d_model: int = 64  # model width
    layers: int = 2  # encoder and decoder layers each
    seed: int = 0  # seed of model init and data


def make_batch(settings: ReversalSettings, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Right-padded sources (B, S) and their reversals (B, S), PAD after each sequence."""
    lengths = torch.randint(settings.min_len, settings.max_len + 1, (batch_size,), generator=generator)
    symbols = torch.randint(FIRST_SYMBOL, FIRST_SYMBOL + settings.num_symbols, (batch_size, settings.max_len), generator=generator)
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


def train(settings: ReversalSettings, log: Callable[[str], None] | None = None) -> EncoderDecoderTransformer:
    """Train a fresh model on freshly sampled batches; returns it in eval mode."""
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    model = build_model(settings)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0, betas=(0.9, 0.98))

    def lr_factor(step: int) -> float:
        if step < settings.warmup:
            return (step + 1) / settings.warmup
        progress = (step - settings.warmup) / max(1, settings.steps - settings.warmup)
        return 0.5 * (1.0 + torch.cos(torch.tensor(progress * torch.pi)).item())

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    model.train()
    start = time.perf_counter()
    for step in range(settings.steps):
        src, tgt = make_batch(settings, settings.batch_size, generator)
        decoder_in, labels = teacher_forcing_pair(tgt)
        logits = model(src, decoder_in)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=PAD)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if log is not None and (step + 1) % 100 == 0:
            log(f"step {step + 1}/{settings.steps}  loss {loss.item():.4f}  {time.perf_counter() - start:.1f}s")
    return model.eval()


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
