"""Where torch's fused attention kernel beats plain matmul + softmax on this CPU, in bfloat16.

``SDPAttention`` (the ``sdpa`` backend) switches to :func:`polyformer.core.eager_attention` on a
CPU in bfloat16 up to ``SDPADispatchPolicy.max_keys`` keys (``max_keys_grad`` with gradients;
see ``core/backends/sdpa.py``); this script measures the crossovers those thresholds are based
on. For each sequence length T it times ``F.scaled_dot_product_attention``
(torch picks its flash kernel for CPUs) and ``eager_attention`` on (B, 4, T, 64) bf16 tensors,
with B * T = 4096 tokens, forward (no grad) and forward+backward. The two are called in turn and
each one's fastest call counts (``timing.py``). Ratio = fused time / eager time (above 1 = eager faster).

Run::

    .venv/bin/python benchmarks/attention_cpu_bf16.py [--lengths 128 197 256 512 768 1024 2048]
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
import torch.nn.functional as F

from polyformer.benchmarks.timing import bf16_rows, fastest, prepare
from polyformer.core import eager_attention
from polyformer.core.backends.sdpa import SDPAttention


def backward(fn, qkv: tuple[torch.Tensor, ...]) -> None:
    fn(*qkv).sum().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 197, 256, 384, 512, 768, 1024, 2048])
    parser.add_argument("--tokens", type=int, default=4096, help="batch * length for every row")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    policy = SDPAttention.policy
    print(
        f"bf16, {args.heads} heads of {args.head_dim}, {args.tokens} tokens per call; sdpa uses eager up to"
        f" {policy.max_keys} keys ({policy.max_keys_grad} with gradients)"
    )
    print(prepare())
    if not bf16_rows():
        return
    print(
        f"{'T':>6}{'B':>5}{'fused fwd ms':>14}{'eager fwd ms':>14}{'ratio':>7}{'fused f+b ms':>14}{'eager f+b ms':>14}"
        f"{'ratio':>7}"
    )
    for length in args.lengths:
        batch = max(1, args.tokens // length)
        q, k, v = (torch.randn(batch, args.heads, length, args.head_dim, dtype=torch.bfloat16) for _ in range(3))
        with torch.no_grad():
            fwd = fastest(
                {"fused": partial(F.scaled_dot_product_attention, q, k, v), "eager": partial(eager_attention, q, k, v)},
                args.rounds,
            )
        grads = tuple(t.clone().requires_grad_(True) for t in (q, k, v))
        both = fastest(
            {
                "fused": partial(backward, F.scaled_dot_product_attention, grads),
                "eager": partial(backward, eager_attention, grads),
            },
            max(3, args.rounds // 2),
        )
        fwd, both = ({name: seconds * 1e3 for name, seconds in t.items()} for t in (fwd, both))
        print(
            f"{length:>6}{batch:>5}{fwd['fused']:>14.1f}{fwd['eager']:>14.1f}{fwd['fused'] / fwd['eager']:>7.2f}"
            f"{both['fused']:>14.1f}{both['eager']:>14.1f}{both['fused'] / both['eager']:>7.2f}"
        )


if __name__ == "__main__":
    main()
