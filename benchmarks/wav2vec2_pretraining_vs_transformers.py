"""Pretraining-step throughput of our wav2vec 2.0 against Hugging Face ``Wav2Vec2ForPreTraining``, same weights.

Both hold the same random weights (transformers' model, saved and read by ``load_hf_wav2vec2``): the paper's
BASE shape by default, ``--size small`` for the 4-layer CPU shape of our recipes. One training step is the
forward pass on ``--batch`` clips of ``--seconds`` of audio with the same span mask (p = 0.065, 10 frames) and
the same 100 distractors per masked frame, the contrastive + diversity loss, backward and an AdamW step; in
fp32 and, where the CPU has native bf16, under bf16 autocast. LayerDrop is off in both (it would make the
work random); both use PyTorch's SDPA attention. The ratio is HF time / our time (above 1: ours is faster);
the goal is 1.2. The models take turns call by call and each one's fastest call counts (``timing.py``).

Run: ``python benchmarks/wav2vec2_pretraining_vs_transformers.py [--batch 4] [--seconds 8] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import transformers

from polyformer.benchmarks.timing import bf16_rows, cpu_autocast, fastest, prepare, throughput_row
from polyformer.speech.wav2vec2 import load_hf_wav2vec2, sample_negatives, span_mask

SHAPES = {
    "base": {},
    "small": dict(hidden_size=256, num_attention_heads=4, num_hidden_layers=4, intermediate_size=1024,
                  conv_dim=(256,) * 7, num_conv_pos_embeddings=64, num_conv_pos_embedding_groups=8,
                  codevector_dim=128, proj_codevector_dim=128, num_codevectors_per_group=160),  # fmt: skip
}


def build_models(size: str, directory: Path):
    """transformers' model and ours with the same (random) weights."""
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(layerdrop=0.0, mask_time_prob=0.65, **SHAPES[size])
    reference = transformers.Wav2Vec2ForPreTraining._from_config(config, attn_implementation="sdpa")
    reference.save_pretrained(directory)
    ours = load_hf_wav2vec2(directory)
    return reference.train(), ours.train()


def _step(model: torch.nn.Module, loss_of: Callable[[], torch.Tensor], bf16: bool) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with cpu_autocast(bf16):
            loss = loss_of()
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="base", choices=sorted(SHAPES))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    print(prepare(args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        reference, ours = build_models(args.size, Path(tmp))
    generator = torch.Generator().manual_seed(0)
    samples = round(args.seconds * 16000)
    audio = torch.randn(args.batch, samples, generator=generator)
    frames = ours.config.frames_for(samples)
    lengths = torch.full((args.batch,), frames)
    mask = span_mask(lengths, frames, 0.065, 10, generator=generator)
    negatives = sample_negatives(mask, ours.config.num_negatives, generator=generator)
    cfg = ours.config
    print(
        f"wav2vec 2.0 {args.size} ({cfg.encoder_layers} layers, width {cfg.d_model}; random weights): pretraining "
        f"step (forward, contrastive + diversity loss, backward, AdamW), batch {args.batch} x {args.seconds:g} s, "
        f"{int(mask.sum())} of {mask.numel()} frames masked, {cfg.num_negatives} distractors"
    )
    for bf16 in [False] + ([True] if bf16_rows() else []):
        steps = {
            "transformers": _step(reference, lambda: reference(audio, mask_time_indices=mask,
                                                               sampled_negative_indices=negatives).loss, bf16),
            "polyformer": _step(ours, lambda: ours(audio, time_mask=mask, negatives=negatives).loss, bf16),
        }  # fmt: skip
        print(throughput_row(bf16, fastest(steps, args.rounds, warmup=1), args.batch, "clips"), flush=True)


if __name__ == "__main__":
    main()
