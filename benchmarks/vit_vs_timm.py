"""polyformer ViT vs timm ``VisionTransformer``: inference and training-step throughput, same process.

Both models are ``vit_tiny_patch16_224`` (Touvron et al. 2021 shapes: width 192, 12 layers,
3 heads) with the same weights (ours loaded from timm's state dict), batch 8 of 224x224
images. bf16 rows run under ``torch.autocast`` (inference in ``torch.inference_mode``). Ours
uses the default ``sdpa`` attention backend, which on a CPU in bf16 at this sequence length
(197 tokens) computes attention as matmul + softmax + matmul, faster there than torch's fused
kernel that timm calls. Ratios are images/s over timm's images/s in fp32, so machine speed
cancels out. The models are called in turn, call by call, and each one's fastest call counts
(``timing.py``).

Run::

    .venv/bin/python benchmarks/vit_vs_timm.py [--batch 8] [--rounds 10] [--threads N]

Shape legend: B batch, C = 3 channels, 224 x 224 images, K = 1000 classes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial

import timm
import torch
import torch.nn.functional as F
from torch import nn

from polyformer.benchmarks.timing import bf16_rows, cpu_autocast, fastest, prepare
from polyformer.vision.vit import ViT, convert_timm_state_dict, vit_config_from_timm

NAME = "vit_tiny_patch16_224"


def build_models() -> tuple[nn.Module, nn.Module]:
    """timm's model and ours (default ``sdpa`` attention backend) with the same weights."""
    reference = timm.create_model(NAME, pretrained=False)
    state = reference.state_dict()
    ours = ViT(vit_config_from_timm(NAME, state))
    ours.load_weights(convert_timm_state_dict(state))
    return reference, ours


def inference_step(model: nn.Module, images: torch.Tensor, bf16: bool) -> Callable[[], None]:
    def step() -> None:
        with torch.inference_mode(), cpu_autocast(bf16):
            model(images)

    return step


def training_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, bf16: bool) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)

    def step() -> None:
        with cpu_autocast(bf16):
            loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description="polyformer ViT vs timm throughput")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10, help="timed calls of each step (the fastest counts)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    setup = prepare(args.threads)
    torch.manual_seed(0)
    reference, ours = build_models()
    images = torch.randn(args.batch, 3, 224, 224)
    labels = torch.randint(0, 1000, (args.batch,))
    rows = []
    with_bf16 = bf16_rows()
    for mode in ("inference", "training"):
        for model in (reference, ours):
            model.train(mode == "training")
        step = inference_step if mode == "inference" else partial(training_step, labels=labels)
        steps = {"timm fp32": step(reference, images, bf16=False), "ours fp32": step(ours, images, bf16=False)}
        if with_bf16:
            steps.update({"ours bf16": step(ours, images, bf16=True), "timm bf16": step(reference, images, bf16=True)})
        speed = {name: args.batch / seconds for name, seconds in fastest(steps, args.rounds).items()}
        base = speed["timm fp32"]
        rows += [(mode, name, value, value / base) for name, value in speed.items()]
    print(f"{NAME}, batch {args.batch}, 224x224, timm {timm.__version__}, {setup}")
    print(f"{'mode':<10} {'model':<16} {'images/s':>9} {'vs timm fp32':>13}")
    for mode, name, value, ratio in rows:
        print(f"{mode:<10} {name:<16} {value:>9.1f} {ratio:>12.2f}x")


if __name__ == "__main__":
    main()
