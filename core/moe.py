"""Mixture-of-Experts feed-forward: a router sends each token to its top-k expert MLPs.

References: Shazeer et al. 2017, "Outrageously Large Neural Networks" (sparsely gated MoE);
Lepikhin et al. 2020, "GShard" (top-2 gating, expert capacity); Fedus et al. 2021, "Switch
Transformers" (top-1 routing, capacity factor, the load-balancing loss
``E * sum_e f_e P_e``); Zoph et al. 2022, "ST-MoE" (router z-loss
``mean(logsumexp(logits)^2)``); Komatsuzaki et al. 2022, "Sparse Upcycling" (experts
initialised from a dense MLP, :meth:`MoEFeedForward.from_dense`). Reference code:
github.com/google/flaxformer (``moe``), github.com/huggingface/transformers
(``SwitchTransformersSparseMLP``).

:class:`MoEFeedForward` maps (..., D) -> (..., D) like :class:`~.feedforward.MLP`, so it drops
into any core block (:func:`apply_moe` swaps it into every N-th layer of a model). Tokens are
grouped by expert (one sort) and each expert runs once on its whole group; there is no loop
over tokens. With a capacity factor each expert takes at most
``ceil(capacity_factor * N * k / E)`` assignments, first choices before second choices and
earlier tokens first; an assignment over capacity is dropped (counted in :class:`MoEStats`) and
contributes zero, so a token with all its assignments dropped passes through the block's
residual unchanged. ``capacity_factor=None`` never drops.

After each forward pass the module holds ``balance_loss``, ``z_loss``, ``aux_loss`` (their
weighted sum, to add to the training loss; :func:`collect_aux_loss` sums it over a model) and
``stats``.

Shape legend: N tokens (all leading dims flattened), D model dim, Hd expert hidden dim,
E experts, k experts per token, M kept assignments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .feedforward import ACTIVATIONS, GATED, MLP, GatedMLP

__all__ = [
    "MoEFeedForward",
    "MoEStats",
    "apply_moe",
    "build_moe_feed_forward",
    "collect_aux_loss",
    "dense_parts",
    "moe_stats",
]


@dataclass
class MoEStats:
    """Routing statistics of the last forward pass (detached).

    Attributes:
        routed: (E,) assignments each expert was chosen for (before capacity).
        kept: (E,) assignments each expert computed (after capacity).
        capacity: assignments an expert may take (N * k when nothing is dropped).
        dropped_assignments: token-expert assignments over capacity.
        dropped_tokens: tokens none of whose assignments were kept (they pass through).
        tokens: N.
        served: (N,) True for tokens with at least one kept assignment (input order, flattened).
    """

    routed: Tensor
    kept: Tensor
    capacity: int
    dropped_assignments: int
    dropped_tokens: int
    tokens: int
    served: Tensor

    @property
    def utilisation(self) -> Tensor:
        """(E,) share of all routed assignments per expert (1/E each when balanced)."""
        return self.routed.float() / self.routed.sum().clamp(min=1)


class MoEFeedForward(nn.Module):
    """Top-k routed mixture of expert MLPs.

    Args:
        dim: model width D.
        hidden_dim: inner width Hd of each expert.
        num_experts: E.
        top_k: experts per token (1 = Switch, 2 = GShard).
        capacity_factor: expert capacity as a multiple of the balanced load N * k / E, or
            None for no dropping.
        activation: ``gelu``, ``gelu_tanh``, ``relu``, ``silu``, or gated ``swiglu``/``geglu``.
        dropout: dropout inside each expert (after the activation).
        bias: biases in the expert projections.
        balance_coef: weight of the load-balancing loss in ``aux_loss`` (Switch: 0.01).
        z_coef: weight of the router z-loss in ``aux_loss`` (ST-MoE: 0.001).
        router_jitter: multiplicative uniform noise on the router input while training.
        normalize_gates: rescale the top-k gate values to sum to 1 (default: when k > 1).
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        num_experts: int = 8,
        top_k: int = 1,
        capacity_factor: float | None = 1.25,
        activation: str = "gelu",
        dropout: float = 0.0,
        bias: bool = True,
        balance_coef: float = 0.01,
        z_coef: float = 0.001,
        router_jitter: float = 0.0,
        normalize_gates: bool | None = None,
    ):
        super().__init__()
        if num_experts < 1 or not 1 <= top_k <= num_experts:
            raise ValueError(
                f"MoE needs num_experts >= 1 and 1 <= top_k <= num_experts, got {num_experts} experts, top_k={top_k}"
            )
        if capacity_factor is not None and capacity_factor <= 0:
            raise ValueError(f"capacity_factor must be positive, or None for no token dropping; got {capacity_factor}")
        if activation not in ACTIVATIONS and activation not in GATED:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS) + sorted(GATED)}")
        self.dim, self.hidden_dim, self.num_experts, self.top_k = dim, hidden_dim, num_experts, top_k
        self.capacity_factor, self.activation = capacity_factor, activation
        self.balance_coef, self.z_coef, self.router_jitter = balance_coef, z_coef, router_jitter
        self.normalize_gates = top_k > 1 if normalize_gates is None else normalize_gates
        self.router = nn.Linear(dim, num_experts, bias=False)
        nn.init.normal_(self.router.weight, std=0.02)
        self.fc1_weight = nn.Parameter(torch.empty(num_experts, hidden_dim, dim))  # like nn.Linear: (out, in)
        self.gate_weight = nn.Parameter(torch.empty(num_experts, hidden_dim, dim)) if activation in GATED else None
        self.fc2_weight = nn.Parameter(torch.empty(num_experts, dim, hidden_dim))
        self.fc1_bias = nn.Parameter(torch.empty(num_experts, hidden_dim)) if bias else None
        self.fc2_bias = nn.Parameter(torch.empty(num_experts, dim)) if bias else None
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()
        self.balance_loss: Tensor | None = None
        self.z_loss: Tensor | None = None
        self.aux_loss: Tensor | None = None
        self.stats: MoEStats | None = None

    def reset_parameters(self) -> None:
        """nn.Linear's default initialisation, per expert."""
        for weight, fan_in in (
            (self.fc1_weight, self.dim),
            (self.gate_weight, self.dim),
            (self.fc2_weight, self.hidden_dim),
        ):
            if weight is not None:
                nn.init.uniform_(weight, -(fan_in**-0.5), fan_in**-0.5)
        for bias, fan_in in ((self.fc1_bias, self.dim), (self.fc2_bias, self.hidden_dim)):
            if bias is not None:
                nn.init.uniform_(bias, -(fan_in**-0.5), fan_in**-0.5)

    @classmethod
    def from_dense(cls, dense: nn.Module, num_experts: int, **options) -> MoEFeedForward:
        """Experts initialised as copies of a dense :class:`MLP` or :class:`GatedMLP` (upcycling)."""
        first, gate, second, activation = dense_parts(dense)
        options.setdefault("dropout", dense.dropout.p)
        moe = cls(
            first.in_features,
            first.out_features,
            num_experts,
            activation=activation,
            bias=first.bias is not None,
            **options,
        )
        with torch.no_grad():
            moe.fc1_weight.copy_(first.weight.expand_as(moe.fc1_weight))
            moe.fc2_weight.copy_(second.weight.expand_as(moe.fc2_weight))
            if gate is not None:
                moe.gate_weight.copy_(gate.weight.expand_as(moe.gate_weight))
            if moe.fc1_bias is not None:
                moe.fc1_bias.copy_(first.bias.expand_as(moe.fc1_bias))
                moe.fc2_bias.copy_(second.bias.expand_as(moe.fc2_bias))
        return moe

    def expert(self, e: int, x: Tensor) -> Tensor:
        """Expert e on its tokens (n, D) -> (n, D)."""
        b1 = None if self.fc1_bias is None else self.fc1_bias[e]
        b2 = None if self.fc2_bias is None else self.fc2_bias[e]
        if self.gate_weight is not None:
            hidden = ACTIVATIONS[GATED[self.activation]](F.linear(x, self.gate_weight[e])) * F.linear(
                x, self.fc1_weight[e], b1
            )
        else:
            hidden = ACTIVATIONS[self.activation](F.linear(x, self.fc1_weight[e], b1))
        return F.linear(self.dropout(hidden), self.fc2_weight[e], b2)

    def route(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Router logits (N, E) in float32, top-k gate values (N, k) and expert ids (N, k)."""
        if self.training and self.router_jitter > 0:
            x = x * torch.empty_like(x).uniform_(1.0 - self.router_jitter, 1.0 + self.router_jitter)
        logits = self.router(x).float()
        gates, experts = torch.softmax(logits, dim=-1).topk(self.top_k, dim=-1)
        if self.normalize_gates:
            gates = gates / gates.sum(dim=-1, keepdim=True)
        return logits, gates, experts

    def capacity(self, tokens: int) -> int:
        if self.capacity_factor is None:
            return tokens * self.top_k
        return max(1, math.ceil(self.capacity_factor * tokens * self.top_k / self.num_experts))

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        flat = x.reshape(-1, self.dim)  # (N, D)
        n, e = flat.shape[0], self.num_experts
        logits, gates, experts = self.route(flat)
        # Assignments ordered choice-major, so first choices win capacity before second ones.
        assigned = experts.T.reshape(-1)  # (k*N,)
        token = torch.arange(n, device=x.device).repeat(self.top_k)
        order = torch.argsort(assigned, stable=True)  # grouped by expert, earlier first
        routed = torch.bincount(assigned, minlength=e)
        starts = torch.cumsum(routed, 0) - routed
        rank = torch.arange(order.numel(), device=x.device) - starts[assigned[order]]  # position inside its expert
        capacity = self.capacity(n)
        chosen = order[rank < capacity]  # (M,) kept assignments, grouped by expert
        kept = torch.bincount(assigned[chosen], minlength=e)
        inputs = flat[token[chosen]]  # (M, D)
        outputs = [self.expert(i, part) for i, part in enumerate(inputs.split(kept.tolist())) if part.shape[0]]
        combined = torch.cat(outputs) if outputs else inputs
        weighted = combined * gates.T.reshape(-1)[chosen].unsqueeze(-1).to(combined.dtype)
        out = torch.zeros_like(flat).index_add_(0, token[chosen], weighted)
        self._record(logits, routed, kept, capacity, token[chosen], n)
        return out.view(shape)

    def _record(self, logits: Tensor, routed: Tensor, kept: Tensor, capacity: int, kept_tokens: Tensor, n: int) -> None:
        """Set the auxiliary losses and statistics of this pass."""
        probs = torch.softmax(logits, dim=-1)
        fraction = routed.float() / max(n * self.top_k, 1)
        self.balance_loss = self.num_experts * torch.sum(fraction * probs.mean(dim=0))
        self.z_loss = torch.logsumexp(logits, dim=-1).pow(2).mean()
        self.aux_loss = self.balance_coef * self.balance_loss + self.z_coef * self.z_loss
        served = torch.bincount(kept_tokens, minlength=n) > 0
        dropped = int(routed.sum() - kept.sum())
        self.stats = MoEStats(routed.detach(), kept.detach(), capacity, dropped, int(n - served.sum()), n, served)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, hidden_dim={self.hidden_dim}, experts={self.num_experts}, top_k={self.top_k}, "
            f"capacity_factor={self.capacity_factor}, activation={self.activation}"
        )


def dense_parts(dense: nn.Module) -> tuple[nn.Linear, nn.Linear | None, nn.Linear, str]:
    """(first, gate or None, second, activation) of a dense :class:`MLP` or :class:`GatedMLP`.

    Raises:
        ValueError: ``dense`` is another kind of module.
    """
    if isinstance(dense, MLP):
        return dense.fc1, None, dense.fc2, dense.activation
    if isinstance(dense, GatedMLP):
        return dense.up, dense.gate, dense.down, dense.activation
    raise ValueError(f"expected an MLP or GatedMLP feed-forward, found {type(dense).__name__}")


def build_moe_feed_forward(
    dim: int, d_ff: int, num_experts: int = 8, top_k: int = 1, hidden_dim: int | None = None, **options
) -> MoEFeedForward:
    """A :class:`MoEFeedForward` standing in for a dense feed-forward of inner width ``d_ff``.

    Args:
        dim: model width D.
        d_ff: the dense inner width.
        num_experts: E.
        top_k: experts per token.
        hidden_dim: expert inner width; default ``d_ff // top_k`` (same active parameters per
            token as the dense layer).
        **options: further :class:`MoEFeedForward` arguments (activation, dropout, bias, ...).
    """
    hidden = d_ff // top_k if hidden_dim is None else hidden_dim
    return MoEFeedForward(dim, hidden, num_experts, top_k, **options)


def apply_moe(
    model: nn.Module, every: int = 1, num_experts: int = 8, top_k: int = 1, hidden_dim: int | None = None, **options
) -> nn.Module:
    """Replace the feed-forward of every ``every``-th transformer layer with a fresh MoE, in place.

    Layers are counted in module order within each stack; with ``every=2`` the 2nd, 4th, ...
    layer become MoE (as in Switch/GShard). The dense layer's width, activation, dropout and
    bias carry over; ``hidden_dim`` defaults to the dense inner width // top_k.

    Returns:
        The model.
    """
    from .layers import DecoderLayer, EncoderLayer

    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    for stack in [m for m in model.modules() if isinstance(m, nn.ModuleList)]:
        layers = [m for m in stack if isinstance(m, (EncoderLayer, DecoderLayer))]
        for i, layer in enumerate(layers):
            if (i + 1) % every:
                continue
            dense = layer.feed_forward
            first, _, _, activation = dense_parts(dense)
            moe = build_moe_feed_forward(
                first.in_features, first.out_features, num_experts, top_k, hidden_dim,
                activation=activation, dropout=dense.dropout.p, bias=first.bias is not None, **options,
            )  # fmt: skip
            layer.feed_forward = moe.to(first.weight.device, first.weight.dtype)
    return model


def collect_aux_loss(model: nn.Module) -> Tensor:
    """Sum of ``aux_loss`` over the MoE layers of ``model`` after a forward pass (0 if none)."""
    losses = [m.aux_loss for m in model.modules() if isinstance(m, MoEFeedForward) and m.aux_loss is not None]
    if not losses:
        return torch.zeros(())
    return torch.stack(losses).sum()


def moe_stats(model: nn.Module) -> list[MoEStats]:
    """The :class:`MoEStats` of each MoE layer of ``model`` from its last forward pass."""
    return [m.stats for m in model.modules() if isinstance(m, MoEFeedForward) and m.stats is not None]
