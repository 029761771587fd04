"""The core part of ``polyformer demo``: train a small encoder-decoder to reverse sequences, then decode."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from polyformer.apps.recipes.reversal import ReversalSettings, decode_tokens, exact_match, make_batch, train

__all__ = ["run"]


def run(echo: Callable[[str], None]) -> None:
    """Train the reversal model on the engine and show greedy and beam-search exact match."""
    settings = ReversalSettings()
    echo(
        f"[core] training a {settings.layers}+{settings.layers}-layer encoder-decoder to reverse sequences "
        f"({settings.steps} steps)"
    )
    start = time.perf_counter()
    model = train(settings, log=lambda line: echo("  " + line))
    echo(f"  trained in {time.perf_counter() - start:.1f}s")
    src, tgt = make_batch(settings, 500, torch.Generator().manual_seed(1234))
    echo(
        f"  exact match on 500 new sequences: greedy {exact_match(model, src, tgt):.1%}, beam 4 "
        f"{exact_match(model, src, tgt, 4):.1%}"
    )
    with torch.no_grad():
        out = model.generate(src[:5], max_new_tokens=src.shape[1] + 1, num_beams=4)
    echo("  input          -> beam search     (target)")
    for i in range(5):
        source, guess, target = decode_tokens(src[i]), decode_tokens(out.sequences[i]), decode_tokens(tgt[i])
        echo(f"  {source:<14} -> {guess:<15} ({target}) {'ok' if guess == target else 'WRONG'}")
