"""polyformer ViT vs timm ``VisionTransformer``: inference and training-step throughput, same process.

Both models are ``vit_tiny_patch16_224`` (Touvron et al. 2021 shapes: width 192, 12 layers,
3 heads) with the same weights (ours loaded from timm's state dict), batch 8 of 224x224
images. bf16 rows run under ``torch.autocast`` (inference in ``torch.inference_mode``); "ours
bf16 eager" is our model with ``backend="eager"``, which on CPUs is faster in bf16 than
torch's fused attention kernel at this sequence length (197 tokens). Ratios are images/s of ours over images/s of timm in fp32, so machine speed cancels
out. Timings on a shared CPU are noisy, so the models are called in turn, call by call, and
each one's fastest call counts.

Run::

    .venv/bin/python benchmarks/vit_vs_timm.py [--batch 8] [--rounds 10] [--threads N]

Shape legend: B batch, C = 3 channels, 224 x 224 images, K = 1000 classes.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable

import timm
import torch
import torch.nn.functional as F
from torch import nn

from polyformer.vision.vit import ViT, convert_timm_state_dict, vit_config_from_timm

NAME = "vit_tiny_patch16_224"


def build_models() -> tuple[nn.Module, nn.Module, nn.Module]:
    """timm's model, ours (default ``sdpa`` attention backend) and ours with the ``eager`` backend, same weights."""
    reference = timm.create_model(NAME, pretrained=False)
    state = reference.state_dict()
    config = vit_config_from_timm(NAME, state)
    ours, ours_eager = ViT(config), ViT(config.replace(backend="eager"))
    for model in (ours, ours_eager):
        model.load_weights(convert_timm_state_dict(state))
    return reference, ours, ours_eager


def autocast(bf16: bool) -> contextlib.AbstractContextManager:
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def inference_step(model: nn.Module, images: torch.Tensor, bf16: bool) -> Callable[[], None]:
    def step() -> None:
        with torch.inference_mode(), autocast(bf16):
            model(images)

    return step


def training_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, bf16: bool) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)

    def step() -> None:
        with autocast(bf16):
            loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def measure(steps: dict[str, Callable[[], None]], batch: int, rounds: int) -> dict[str, float]:
    """Images/s of each step from its fastest of ``rounds`` timed calls, the steps interleaved.

    The fastest call is the least disturbed by other processes on a shared machine; because the
    steps alternate call by call, slow phases of the machine hit all of them alike.
    """
    for step in steps.values():  # warm-up (allocator, oneDNN kernels)
        step()
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: batch / min(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description="polyformer ViT vs timm throughput")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10, help="timed calls of each step (the fastest counts)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reference, ours, ours_eager = build_models()
    images = torch.randn(args.batch, 3, 224, 224)
    labels = torch.randint(0, 1000, (args.batch,))
    rows = []
    for mode in ("inference", "training"):
        for model in (reference, ours, ours_eager):
            model.train(mode == "training")
        if mode == "inference":
            steps = {
                "timm fp32": inference_step(reference, images, False),
                "ours fp32": inference_step(ours, images, False),
                "ours bf16": inference_step(ours, images, True),
                "ours bf16 eager": inference_step(ours_eager, images, True),
                "timm bf16": inference_step(reference, images, True),
            }
        else:
            steps = {
                "timm fp32": training_step(reference, images, labels, False),
                "ours fp32": training_step(ours, images, labels, False),
                "ours bf16": training_step(ours, images, labels, True),
                "ours bf16 eager": training_step(ours_eager, images, labels, True),
                "timm bf16": training_step(reference, images, labels, True),
            }
        speed = measure(steps, args.batch, args.rounds)
        base = speed["timm fp32"]
        rows += [(mode, name, value, value / base) for name, value in speed.items()]
    print(f"{NAME}, batch {args.batch}, 224x224, {torch.get_num_threads()} threads, torch {torch.__version__}, timm {timm.__version__}")
    print(f"{'mode':<10} {'model':<16} {'images/s':>9} {'vs timm fp32':>13}")
    for mode, name, value, ratio in rows:
        print(f"{mode:<10} {name:<16} {value:>9.1f} {ratio:>12.2f}x")


if __name__ == "__main__":
    main()
