"""Training-step throughput of our DETR against Hugging Face ``DetrForObjectDetection``, same config and weights.

Both are DETR-R50 as in the paper (ResNet-50 with frozen batch norm, width 256, 6 + 6 layers, 100
queries, 91 classes, auxiliary losses on) holding the same random weights: transformers builds its model
(a timm ResNet-50 backbone), saves it, and ours loads that directory. One training step is forward,
DETR's set loss (Hungarian matching per decoder layer, cross-entropy, L1, GIoU) for a batch of
``--batch`` images of ``--size`` x ``--size`` pixels with 5 objects each, backward and an SGD step; in
fp32 and, where the CPU has native bf16, under bf16 autocast. The ratio is HF time / our time (above 1:
ours is faster); the goal is 1.0 in fp32. The models take turns call by call and each one's fastest call
counts (``timing.py``).

Run: ``python benchmarks/detr_vs_transformers.py [--size 800 --batch 2] [--rounds 3]`` (a few minutes on
2 CPU cores; ``--backbone resnet18 --size 256`` for a quick look).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import transformers

from polyformer.benchmarks.timing import bf16_rows, cpu_autocast, fastest, prepare, throughput_row
from polyformer.vision.detr import DETR, SetCriterion, Targets


def build_models(backbone: str, directory: Path) -> tuple[torch.nn.Module, DETR]:
    """transformers' DETR and ours with the same random weights."""
    config = transformers.DetrConfig(
        backbone=backbone, use_timm_backbone=True, use_pretrained_backbone=False, auxiliary_loss=True, dropout=0.0,
        num_labels=91,
    )  # fmt: skip
    reference = transformers.DetrForObjectDetection(config)
    reference.save_pretrained(directory)
    ours = DETR.from_pretrained(directory, dropout=0.0)
    return reference.train(), ours.train()


def random_targets(batch: int, objects: int, classes: int, seed: int = 0) -> list[Targets]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batch):
        centres = torch.rand(objects, 2, generator=generator) * 0.6 + 0.2
        sizes = torch.rand(objects, 2, generator=generator) * 0.2 + 0.05
        labels = torch.randint(0, classes, (objects,), generator=generator)
        out.append(Targets(labels, torch.cat([centres, sizes], dim=1)))
    return out


def hf_step(model: torch.nn.Module, images: torch.Tensor, targets: list[Targets], bf16: bool) -> Callable[[], None]:
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-9)
    labels = [{"class_labels": t.labels, "boxes": t.boxes} for t in targets]
    mask = torch.ones(images.shape[0], *images.shape[-2:], dtype=torch.long)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with cpu_autocast(bf16):
            loss = model(pixel_values=images, pixel_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()

    return step


def our_step(model: DETR, images: torch.Tensor, targets: list[Targets], bf16: bool) -> Callable[[], None]:
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-9)
    criterion = SetCriterion(model.config.num_classes)
    mask = torch.ones(images.shape[0], *images.shape[-2:], dtype=torch.bool)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with cpu_autocast(bf16):
            loss = criterion(model(images, mask), targets)["loss"]
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50", choices=["resnet18", "resnet50"])
    parser.add_argument("--size", type=int, default=800, help="square image side in pixels")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--objects", type=int, default=5, help="objects per image")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    print(prepare(args.threads))
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        reference, ours = build_models(args.backbone, Path(tmp))
    images = torch.randn(args.batch, 3, args.size, args.size)
    targets = random_targets(args.batch, args.objects, ours.config.num_classes)
    print(
        f"DETR-{args.backbone}: training step (forward, set loss with auxiliary layers, backward, SGD), "
        f"batch {args.batch} x 3 x {args.size} x {args.size}, {args.objects} objects per image"
    )
    precisions = [False] + ([True] if bf16_rows() else [])
    for bf16 in precisions:
        steps = {
            "transformers": hf_step(reference, images, targets, bf16),
            "polyformer": our_step(ours, images, targets, bf16),
        }
        print(throughput_row(bf16, fastest(steps, args.rounds, warmup=1), args.batch, "img"), flush=True)


if __name__ == "__main__":
    main()
