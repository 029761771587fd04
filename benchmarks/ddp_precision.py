"""How far training on 2 processes (DDP) drifts from 1 process, in fp32 and in bf16 autocast, and why.

The engine's ``train()`` trains the same ViT (preset ``vit_nano_patch4_28``, 0.14M parameters,
seeded the same) on the first ``--images`` images of the embedded Fashion-MNIST subset with the
same global batch, several ways, every process with one thread (``OMP_NUM_THREADS=1``):

- ``ref``: 1 process, ``grad_accum=1`` (the reference of its precision);
- ``ddp2``: 2 processes under ``torch.distributed.run`` (gloo, CPU), each with half of every batch;
- ``accum2``: 1 process, ``grad_accum=2``: the same two half-batches, one after the other, no communication;
- ``repeat``: the bf16 reference trained again (0 = the run is deterministic).

Each row is the largest ``|w - w_ref|`` over all weights after the given steps and, after the
last step, ``rel-max`` (the largest per-tensor ``max|w - w_ref| / max|w_ref|``: large for
biases that started at 0) and ``rel-L2`` (``||w - w_ref|| / ||w_ref||`` over all weights). Rows
``ddp2-vs-accum2`` compare those two runs with each other, and ``bf16 vs-fp32`` is the bf16
reference against the fp32 one (how far bf16 itself moves the weights).

Below the table, evidence about the cause: the dtypes of the parameters, their ``.grad`` and
DDP's gradient buckets in a bf16 backward (seen by a DDP communication hook on rank 0), the
share of Linear/Conv weight-gradient entries that are exactly bf16 numbers (a gradient that is
the output of one bf16 GEMM is; a sum of two such in fp32 mostly is not), and how much the
gradient of one batch changes when it is computed as two half-batches.

The script re-invokes itself under ``torch.distributed.run`` for the 2-process runs (``--worker``)
and trains the 1-process runs in this process; every run writes into a temporary directory.

Run: ``python benchmarks/ddp_precision.py [--steps 40] [--curve 1,5,10,20] [--images 512] [--batch 64]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from polyformer.apps.engine import (
    ClassificationTask,
    TrainingConfig,
    autocast,
    init_distributed,
    shutdown_distributed,
    train,
)
from polyformer.apps.engine.hardware import machine_summary
from polyformer.vision.data import load_embedded_fashion_mnist
from polyformer.vision.vit import vit_nano_patch4_28

CLASSES = 10
Snapshots = dict[int, dict[str, Tensor]]  # optimizer step -> parameter name -> weights after that step


def fashion_subset(count: int) -> TensorDataset:
    """The first ``count`` embedded Fashion-MNIST training images, scaled to [-1, 1] (no augmentation)."""
    data = load_embedded_fashion_mnist("train")
    images = data.images[:count].float().div(255.0).sub(0.5).div(0.5)  # (N, 1, 28, 28)
    return TensorDataset(images, torch.tensor(data.targets[:count]))


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return vit_nano_patch4_28()


def record_steps(args: argparse.Namespace) -> list[int]:
    return sorted({step for step in args.curve if 0 < step < args.steps} | {1, args.steps})


def train_run(precision: str, grad_accum: int, args: argparse.Namespace, data: TensorDataset) -> Snapshots:
    """Train with the engine; returns the weights after each recorded step."""
    model, wanted, snapshots = build_model(), set(record_steps(args)), {}

    def snapshot(step: int, values: dict[str, float]) -> None:
        if step in wanted:
            snapshots[step] = {name: p.detach().clone() for name, p in model.named_parameters()}

    with tempfile.TemporaryDirectory(prefix="ddp_precision_") as out:
        config = TrainingConfig(
            out_dir=out, batch_size=args.batch, grad_accum=grad_accum, max_steps=args.steps, lr=args.lr,
            warmup_steps=args.warmup, precision=precision, threads=1, quiet=True, plot=False, log_every=args.steps,
        )  # fmt: skip
        train(model, ClassificationTask(CLASSES), data, config, on_step_end=snapshot)
    return snapshots


def matmul_weights(model: nn.Module) -> set[int]:
    """Ids of the Linear and Conv weights: the parameters whose gradient is one GEMM's output."""
    return {id(m.weight) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))}


def bf16_share(tensors: list[Tensor]) -> float:
    """Share of the entries that are exactly representable in bfloat16."""
    exact = sum(int((t.to(torch.bfloat16).float() == t).sum()) for t in tensors)
    return exact / max(1, sum(t.numel() for t in tensors))


def micro_batch(data: TensorDataset, index: int, size: int) -> tuple[Tensor, Tensor]:
    """Images and labels ``index * size`` to ``(index + 1) * size``."""
    return data.tensors[0][index * size : (index + 1) * size], data.tensors[1][index * size : (index + 1) * size]


def probe_ddp(data: TensorDataset, batch: int) -> dict[str, object]:
    """One bf16 backward of this rank's half-batch through a DDP model with a hook that looks at the buckets."""
    rank, world = dist.get_rank(), dist.get_world_size()
    model = build_model()
    ddp = nn.parallel.DistributedDataParallel(model)
    weights, seen = matmul_weights(model), {"bucket_dtypes": set(), "local": []}

    def hook(state, bucket):  # a dist.GradBucket; no annotation: DDP checks it and this module's are strings
        seen["bucket_dtypes"].add(str(bucket.buffer().dtype))
        pairs = zip(bucket.parameters(), bucket.gradients())
        seen["local"] += [grad.clone() for parameter, grad in pairs if id(parameter) in weights]
        buffer = bucket.buffer().div_(world)  # what DDP's default all-reduce does
        return dist.all_reduce(buffer, async_op=True).get_future().then(lambda fut: fut.value()[0])

    ddp.register_comm_hook(None, hook)
    inputs, labels = micro_batch(data, rank, batch // world)
    with autocast("bf16", torch.device("cpu")):
        loss = F.cross_entropy(ddp(inputs).float(), labels)
    loss.backward()
    parameters = [p for p in model.parameters()]
    return {
        "param_dtypes": sorted({str(p.dtype) for p in parameters}),
        "grad_dtypes": sorted({str(p.grad.dtype) for p in parameters}),
        "bucket_dtypes": sorted(seen["bucket_dtypes"]),
        "buckets": len(ddp._get_ddp_logging_data().get("bucket_sizes", "").split(",")),
        "local_share": bf16_share(seen["local"]),
        "reduced_share": bf16_share([p.grad for p in parameters if id(p) in weights]),
    }


def one_batch_gradients(data: TensorDataset, batch: int, precision: str, parts: int) -> tuple[list[Tensor], float]:
    """Linear/Conv weight gradients of the first batch computed as ``parts`` micro-batches, and their bf16 share."""
    model = build_model()
    size = batch // parts
    for part in range(parts):
        inputs, labels = micro_batch(data, part, size)
        with autocast(precision, torch.device("cpu")):
            loss = F.cross_entropy(model(inputs).float(), labels)
        (loss / parts).backward()
    weights = matmul_weights(model)
    grads = [p.grad for p in model.parameters() if id(p) in weights]
    return grads, bf16_share(grads)


def difference(run: dict[str, Tensor], reference: dict[str, Tensor]) -> tuple[float, float, float]:
    """Largest ``|w - w_ref|``; largest per-tensor ``max|w - w_ref| / max|w_ref|``; ``||w - w_ref|| / ||w_ref||``."""
    absolute = relative = 0.0
    for name, expected in reference.items():
        gap = float((run[name] - expected).abs().max())
        absolute = max(absolute, gap)
        relative = max(relative, gap / max(float(expected.abs().max()), 1e-30))
    squares = sum(float((run[name] - expected).square().sum()) for name, expected in reference.items())
    norm = sum(float(expected.square().sum()) for expected in reference.values())
    return absolute, relative, (squares / max(norm, 1e-30)) ** 0.5


def worker(args: argparse.Namespace) -> None:
    """Under torchrun: train each precision on this process's share, then probe DDP's buckets."""
    context = init_distributed()
    data = fashion_subset(args.images)
    runs = {precision: train_run(precision, 1, args, data) for precision in ("fp32", "bf16")}
    probe = probe_ddp(data, args.batch)
    if context.is_main:
        torch.save({"runs": runs, "probe": probe}, args.worker)
    shutdown_distributed()


def launch_ddp(args: argparse.Namespace, result: Path) -> dict:
    """Run this script with ``--worker`` in 2 processes, one thread each; returns what rank 0 saved."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", __file__,
        "--worker", str(result), "--steps", str(args.steps), "--curve", ",".join(map(str, args.curve)),
        "--images", str(args.images), "--batch", str(args.batch), "--lr", str(args.lr), "--warmup", str(args.warmup),
    ]  # fmt: skip
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the 2-process run failed:\n{done.stderr[-4000:]}")
    return torch.load(result, weights_only=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps of every run")
    parser.add_argument("--curve", type=lambda text: [int(s) for s in text.split(",") if s], default=[1, 5, 10, 20],
                        help="also report the difference after these steps (comma-separated)")  # fmt: skip
    parser.add_argument("--images", type=int, default=512, help="training images (the first of the embedded subset)")
    parser.add_argument("--batch", type=int, default=64, help="global batch (even: halved on 2 processes)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    parser.add_argument("--warmup", type=int, default=2, help="linear warmup steps")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # internal: the torchrun side
    args = parser.parse_args()
    if args.worker is not None:
        worker(args)
        return
    if args.batch % 2 or args.images < args.batch:
        parser.error("--batch must be even and at most --images")
    start = time.perf_counter()
    torch.set_num_threads(1)
    data = fashion_subset(args.images)
    with tempfile.TemporaryDirectory(prefix="ddp_precision_") as scratch:
        ddp = launch_ddp(args, Path(scratch) / "ddp.pt")
    runs = {}
    for precision in ("fp32", "bf16"):
        runs[precision, "ref"] = train_run(precision, 1, args, data)
        runs[precision, "accum2"] = train_run(precision, 2, args, data)
        runs[precision, "ddp2"] = ddp["runs"][precision]
    runs["bf16", "repeat"] = train_run("bf16", 1, args, data)

    comparisons = [
        ("fp32", "ddp2", runs["fp32", "ddp2"], runs["fp32", "ref"]),
        ("fp32", "accum2", runs["fp32", "accum2"], runs["fp32", "ref"]),
        ("fp32", "ddp2-vs-accum2", runs["fp32", "ddp2"], runs["fp32", "accum2"]),
        ("bf16", "ddp2", runs["bf16", "ddp2"], runs["bf16", "ref"]),
        ("bf16", "accum2", runs["bf16", "accum2"], runs["bf16", "ref"]),
        ("bf16", "ddp2-vs-accum2", runs["bf16", "ddp2"], runs["bf16", "accum2"]),
        ("bf16", "repeat", runs["bf16", "repeat"], runs["bf16", "ref"]),
        ("bf16", "vs-fp32", runs["bf16", "ref"], runs["fp32", "ref"]),
    ]
    steps = record_steps(args)
    print(machine_summary())
    print(f"torch {torch.__version__}, 1 thread per process, gloo on CPU")
    print(
        f"vit_nano_patch4_28 ({sum(p.numel() for p in build_model().parameters()) / 1e6:.2f}M parameters), "
        f"{args.images} Fashion-MNIST images, global batch {args.batch}, {args.steps} AdamW steps, lr {args.lr}"
    )
    print(f"max |w - w_ref| over all weights after each step; after step {args.steps}:")
    print("rel-max = max over tensors of max|w - w_ref| / max|w_ref|, rel-L2 = ||w - w_ref|| / ||w_ref|| (all weights)")
    header = "".join(f"{step:>10}" for step in steps) + f"{'rel-max':>10}{'rel-L2':>10}"
    print(f"{'precision':<10}{'run':<16}{header}")
    for precision, name, run, reference in comparisons:
        gaps = [difference(run[step], reference[step]) for step in steps]
        last = gaps[-1]
        row = "".join(f"{gap[0]:>10.2e}" for gap in gaps) + f"{last[1]:>10.2e}{last[2]:>10.2e}"
        print(f"{precision:<10}{name:<16}{row}")

    probe = ddp["probe"]
    print()
    print(
        f"bf16 backward under DDP (rank 0): parameters {', '.join(probe['param_dtypes'])}; "
        f".grad {', '.join(probe['grad_dtypes'])}; DDP buckets {', '.join(probe['bucket_dtypes'])} "
        f"({probe['buckets']} bucket(s))"
    )
    print(
        f"Linear/Conv weight-gradient entries that are exact bf16 numbers: DDP rank-local {probe['local_share']:.1%}, "
        f"after the all-reduce {probe['reduced_share']:.1%}"
    )
    for precision in ("fp32", "bf16"):
        full, full_share = one_batch_gradients(data, args.batch, precision, 1)
        halves, halves_share = one_batch_gradients(data, args.batch, precision, 2)
        gap = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(halves, full))
        flips = sum(int((a.sign() != b.sign()).sum()) for a, b in zip(halves, full))
        print(
            f"{precision} first-batch weight gradients: exact bf16 {full_share:.1%} (1 micro-batch), "
            f"{halves_share:.1%} (2 half-batches); max per-tensor max|g_halves - g_full| / max|g_full| {gap:.1e}; "
            f"sign (or exact 0) differs in {flips} of {sum(g.numel() for g in full)} entries"
        )
    lr_1 = args.lr / (args.warmup + 1) if args.warmup else args.lr
    for precision in ("fp32", "bf16"):
        after_1 = runs[precision, "accum2"][1], runs[precision, "ref"][1]
        moved = sum(int(((a - after_1[1][name]).abs() >= lr_1 / 2).sum()) for name, a in after_1[0].items())
        print(f"{precision} step 1 (lr {lr_1:.2e}): weight entries where accum2 and ref differ by >= lr/2: {moved}")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
