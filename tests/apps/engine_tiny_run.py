"""A tiny model, data set and command line for the engine tests (also run as a subprocess and under torchrun).

    python tests/apps/engine_tiny_run.py --out DIR [--steps N] [--resume DIR] [--sleep S] [--fsdp] [--fsdp-out DIR]
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from polyformer.apps.engine import ClassificationTask, TrainingConfig, shutdown_distributed, train
from polyformer.core import ConfigBase, PretrainedModel

FEATURES, CLASSES = 8, 4


@dataclass
class TinyConfig(ConfigBase):
    model_type = "tiny_classifier"

    hidden: int = 32  # hidden width
    dropout: float = 0.0  # dropout after the hidden layer


class TinyClassifier(PretrainedModel):
    """Embedding-free MLP with a norm and a learned class bias token, enough to exercise the engine."""

    config_class = TinyConfig
    head_prefixes = ("head",)  # what freeze_backbone_steps keeps training

    def __init__(self, config: TinyConfig):
        super().__init__(config)
        self.inp = nn.Linear(FEATURES, config.hidden)
        self.norm = nn.LayerNorm(config.hidden)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(torch.nn.functional.gelu(self.norm(self.inp(x)))))


class NoisyBlobs(Dataset):
    """Four Gaussian blobs; each access adds fresh noise from the global RNG (a random augmentation)."""

    def __init__(self, size: int = 96, seed: int = 0, noise: float = 0.3):
        self.noise = noise
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(size) % CLASSES
        centers = torch.randn(CLASSES, FEATURES, generator=generator) * 2
        self.points = centers[self.labels] + torch.randn(size, FEATURES, generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.points[index] + self.noise * torch.randn(FEATURES), self.labels[index]


@contextmanager
def single_thread():
    """One intra-op thread, as in the subprocess runs, so float reductions agree bit for bit."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_model(seed: int = 0, dropout: float = 0.0) -> TinyClassifier:
    torch.manual_seed(seed)
    return TinyClassifier(TinyConfig(dropout=dropout))


def tiny_config(out_dir, **overrides) -> TrainingConfig:
    fields = dict(
        out_dir=None if out_dir is None else str(out_dir), batch_size=16, max_steps=12, lr=3e-2, warmup_steps=2,
        precision="fp32",
        checkpoint_every=4, log_every=2, quiet=True, plot=False, best_metric="accuracy",
    )  # fmt: skip
    return TrainingConfig(**{**fields, **overrides})


def run(out_dir, **overrides):
    """Train the tiny model; returns (model, result)."""
    model = build_model(dropout=overrides.pop("dropout", 0.0))
    task = overrides.pop("task", None) or ClassificationTask(CLASSES)
    on_step_end = overrides.pop("on_step_end", None)
    echo = {"echo": overrides.pop("echo")} if "echo" in overrides else {}
    config = tiny_config(out_dir, **overrides)
    result = train(
        model, task, NoisyBlobs(), config, eval_data=NoisyBlobs(40, seed=1, noise=0.0), on_step_end=on_step_end, **echo
    )
    return model, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--resume")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--fsdp", action="store_true")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--fsdp-out", help="after the first run, train again with FSDP into this directory")
    args = parser.parse_args()
    torch.set_num_threads(1)
    slow_down = (lambda step, values: time.sleep(args.sleep)) if args.sleep else None
    runs = [(args.out, args.fsdp)] + ([(args.fsdp_out, True)] if args.fsdp_out else [])
    for out, fsdp in runs:
        model = build_model(dropout=args.dropout)
        config = tiny_config(out, max_steps=args.steps, resume=args.resume, fsdp=fsdp)
        train(
            model,
            ClassificationTask(CLASSES),
            NoisyBlobs(),
            config,
            eval_data=NoisyBlobs(40, seed=1, noise=0.0),
            on_step_end=slow_down,
        )
    shutdown_distributed()


if __name__ == "__main__":
    main()
