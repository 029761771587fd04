"""Dense feed-forward vs Mixture-of-Experts on a small causal LM.

Both models are the same character-level :class:`~polyformer.core.DecoderOnlyTransformer`
trained on the embedded Shakespeare text (:func:`polyformer.text.corpus.load_corpus`) with the
same data order, optimiser and number of steps; the MoE model replaces the feed-forward of
every ``--every``-th layer by ``--experts`` experts with top-``--top-k`` routing
(:func:`polyformer.core.moe.apply_moe`). Each expert has the dense inner width divided by k,
so both models spend the same feed-forward parameters per token (the MoE adds only the
router). Reported: parameters (total and active per token), training tokens per second,
training loss of the last step and validation loss after the same number of steps, and MoE
routing statistics. The MoE model is trained on the cross-entropy plus its auxiliary losses
(Switch balancing 0.01, router z-loss 0.001); both reported losses are plain cross-entropy.
Both models step with the training engine's :func:`~polyformer.apps.engine.optim.train_step`.

Shape legend: B batch, T tokens, V vocabulary.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyformer.apps.engine.optim import train_step, warmup_cosine_schedule
from polyformer.core import DecoderOnlyTransformer, TransformerConfig
from polyformer.core.moe import MoEFeedForward, apply_moe, collect_aux_loss, moe_stats
from polyformer.text.corpus import load_corpus, split_corpus

__all__ = ["CharCodec", "run_moe_benchmark"]

SPECIALS = 3  # ids 0, 1, 2 are pad, bos and eos (TransformerConfig defaults)


class CharCodec:
    """Characters <-> ids, after the three special ids."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.index = {c: i + SPECIALS for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + SPECIALS

    def encode(self, text: str) -> Tensor:
        return torch.tensor([self.index[c] for c in text if c in self.index], dtype=torch.long)


def _batches(ids: Tensor, batch: int, seq: int, steps: int, seed: int) -> list[Tensor]:
    """``steps`` random windows (B, T + 1) drawn with a fixed seed (the same for every model)."""
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(ids) - seq - 1, (steps, batch), generator=gen)
    return [torch.stack([ids[s : s + seq + 1] for s in row.tolist()]) for row in starts]


def _eval_batches(ids: Tensor, batch: int, seq: int, limit: int) -> list[Tensor]:
    """Consecutive non-overlapping windows (B, T + 1) of the validation text, at most ``limit`` batches."""
    count = (len(ids) - 1) // seq
    windows = torch.stack([ids[i * seq : i * seq + seq + 1] for i in range(count)])
    return list(windows[: batch * limit].split(batch))


def _lm_loss(model: nn.Module, window: Tensor) -> Tensor:
    logits = model(window[:, :-1])  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), window[:, 1:].flatten())


@torch.no_grad()
def _evaluate(model: nn.Module, batches: list[Tensor]) -> float:
    model.eval()
    total = sum(float(_lm_loss(model, b)) * b.shape[0] for b in batches)
    model.train()
    return total / sum(b.shape[0] for b in batches)


def _active_parameters(model: nn.Module) -> int:
    """Parameters one token uses: all, minus the experts it is not routed to."""
    total = sum(p.numel() for p in model.parameters())
    for moe in (m for m in model.modules() if isinstance(m, MoEFeedForward)):
        experts = sum(p.numel() for name, p in moe.named_parameters() if not name.startswith("router"))
        total -= experts * (moe.num_experts - moe.top_k) // moe.num_experts
    return total


class _Trainer:
    """One model with AdamW and the engine's warm-up + cosine schedule; times its own steps."""

    def __init__(self, model: nn.Module, steps: int, lr: float):
        self.model = model.train()
        self.optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        self.schedule = warmup_cosine_schedule(self.optimiser, warmup_steps=max(1, steps // 10), total_steps=steps)
        self.seconds, self.tokens, self.loss = 0.0, 0, float("nan")

    def step(self, window: Tensor) -> None:
        start = time.perf_counter()
        losses = []

        def loss_fn(batch: Tensor) -> Tensor:
            losses.append(_lm_loss(self.model, batch))
            return losses[-1] + collect_aux_loss(self.model)

        train_step(self.model, self.optimiser, self.schedule, loss_fn, [window], clip_grad_norm=1.0)
        self.seconds += time.perf_counter() - start
        self.tokens += window[:, :-1].numel()
        self.loss = float(losses[-1].detach())  # plain cross-entropy, without the auxiliary losses


def _build(config: TransformerConfig, settings: dict, moe: bool) -> nn.Module:
    torch.manual_seed(settings["seed"])  # the same initial weights for everything but the experts
    model = DecoderOnlyTransformer(config)
    if moe:
        options = dict(capacity_factor=settings["capacity_factor"])
        apply_moe(model, every=settings["every"], num_experts=settings["experts"], top_k=settings["top_k"], **options)
    return model


def run_moe_benchmark(settings: dict, log=print) -> dict:
    """Train the dense and the MoE model with identical settings; returns the results as a dict.

    The two models take their steps alternately on the same batches, so a change in the load
    of a shared machine affects both throughputs alike.
    """
    train_text, val_text = split_corpus(load_corpus(), 0.1)
    codec = CharCodec(train_text + val_text)
    train_ids, val_ids = codec.encode(train_text), codec.encode(val_text)
    seq, batch, steps = settings["seq_len"], settings["batch_size"], settings["steps"]
    val_batches = _eval_batches(val_ids, batch, seq, settings["eval_batches"])
    config = TransformerConfig(
        vocab_size=codec.vocab_size, d_model=settings["d_model"], num_heads=settings["heads"],
        decoder_layers=settings["layers"], d_ff=settings["d_ff"], activation="gelu", norm_first=True, dropout=0.0,
        position="learned", max_len=seq,
    )
    log(f"corpus: {len(train_ids)} training / {len(val_ids)} validation characters, vocabulary {codec.vocab_size}")
    trainers = {
        name: _Trainer(_build(config, settings, name == "moe"), steps, settings["lr"]) for name in ("dense", "moe")
    }
    for window in _batches(train_ids, batch, seq, steps, settings["seed"]):
        for trainer in trainers.values():
            trainer.step(window)
    results = {}
    for name, trainer in trainers.items():
        model = trainer.model
        row = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "active_parameters_per_token": _active_parameters(model),
            "tokens_per_s": trainer.tokens / trainer.seconds,
            "train_loss": trainer.loss,
            "val_loss": _evaluate(model, val_batches),
        }
        stats = moe_stats(model)
        if stats:
            routed = sum(s.routed.sum().item() for s in stats)
            row["dropped_assignment_fraction"] = sum(s.dropped_assignments for s in stats) / max(routed, 1)
            row["expert_utilisation"] = [[round(float(u), 3) for u in s.utilisation] for s in stats]
        results[name] = row
        log(_format(name, row))
    return results


def _format(name: str, row: dict) -> str:
    line = (
        f"{name:<6} params {row['parameters'] / 1e6:6.2f}M  "
        f"active/token {row['active_parameters_per_token'] / 1e6:6.2f}M  "
        f"{row['tokens_per_s']:8.0f} tok/s  train loss {row['train_loss']:.3f}  val loss {row['val_loss']:.3f}"
    )
    if "expert_utilisation" in row:
        line += (
            f"\n       dropped assignments (last validation batch) {row['dropped_assignment_fraction']:.1%}, "
            f"utilisation per layer {row['expert_utilisation']}"
        )
    return line
