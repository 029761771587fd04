"""Our EncoderLayer vs torch.nn.TransformerEncoderLayer vs the Hugging Face BERT layer.

Same size for all three (batch 8, 512 tokens, width 256, 4 heads, feed-forward 1024, GELU,
post-norm, no dropout); forward (inference: eval mode, no grad) and forward+backward (train
mode), fp32 and bf16 autocast. The layers are called in turn and each one's fastest call
counts (``timing.py``). Prints the times and the ratio ``reference time / our time`` (above
1 = ours faster). Run: ``python benchmarks/core_layers.py``.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch import nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertLayer

from polyformer.benchmarks.timing import bf16_rows, cpu_autocast, fastest, prepare
from polyformer.core import MLP, EncoderLayer, MultiHeadAttention


def build_layers(dim: int, heads: int, ff: int) -> dict[str, nn.Module]:
    ours = EncoderLayer(
        MultiHeadAttention(dim, heads),
        MLP(dim, ff, "gelu"),
        nn.LayerNorm(dim, eps=1e-12),
        nn.LayerNorm(dim, eps=1e-12),
        norm_first=False,
    )
    torch_layer = nn.TransformerEncoderLayer(
        dim, heads, ff, dropout=0.0, activation="gelu", batch_first=True, layer_norm_eps=1e-12
    )
    bert_config = BertConfig(
        hidden_size=dim,
        num_attention_heads=heads,
        intermediate_size=ff,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    bert_config._attn_implementation = "sdpa"
    return {"polyformer": ours, "torch.nn": torch_layer, "hf_bert": BertLayer(bert_config)}


def run_layer(name: str, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if name == "polyformer":
        return layer(x)[0]
    if name == "hf_bert":
        out = layer(x)
        return out[0] if isinstance(out, tuple) else out
    return layer(x)


def measure(layers: dict[str, nn.Module], x: torch.Tensor, mode: str, precision: str, rounds: int) -> dict[str, float]:
    """Fastest seconds per call of each layer (interleaved calls, see ``timing.py``)."""
    autocast = cpu_autocast(precision == "bf16")
    steps = {}
    for name, layer in layers.items():
        if mode == "forward":
            layer.eval()

            def step(name=name, layer=layer):
                with torch.no_grad(), autocast:
                    run_layer(name, layer, x)
        else:
            layer.train()
            xg = x.clone().requires_grad_(True)

            def step(name=name, layer=layer, xg=xg):
                with autocast:
                    out = run_layer(name, layer, xg)
                out.float().sum().backward()
                layer.zero_grad(set_to_none=True)

        steps[name] = step
    return fastest(steps, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10, help="timed calls of each layer (the fastest counts)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    setup = prepare(args.threads)
    torch.manual_seed(0)
    layers = build_layers(args.dim, args.heads, 4 * args.dim)
    x = torch.randn(args.batch, args.seq, args.dim)
    print(f"batch {args.batch}, {args.seq} tokens, width {args.dim}, {args.heads} heads, {setup}")
    print(
        f"{'mode':<17}{'precision':<10}{'polyformer ms':>14}{'torch.nn ms':>13}{'hf_bert ms':>12}{'vs torch':>10}"
        f"{'vs bert':>9}"
    )
    rows = []
    precisions = ("fp32", "bf16") if bf16_rows() else ("fp32",)
    for mode in ("forward", "forward+backward"):
        for precision in precisions:
            t = measure(layers, x, mode, precision, args.rounds)
            ours = t["polyformer"]
            row = dict(mode=mode, precision=precision, **{k: v * 1e3 for k, v in t.items()})
            row["ratio_vs_torch"], row["ratio_vs_bert"] = t["torch.nn"] / ours, t["hf_bert"] / ours
            rows.append(row)
            print(
                f"{mode:<17}{precision:<10}{ours * 1e3:>14.1f}{t['torch.nn'] * 1e3:>13.1f}{t['hf_bert'] * 1e3:>12.1f}"
                f"{row['ratio_vs_torch']:>10.2f}{row['ratio_vs_bert']:>9.2f}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
