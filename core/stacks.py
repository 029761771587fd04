"""Encoder and decoder stacks, and builders that assemble them from a :class:`BlockSpec`.

LayerDrop (Fan et al. 2019, "Reducing Transformer Depth on Demand with Structured Dropout";
fairseq, wav2vec2) skips each whole layer with a probability while training. With DDP, a
skipped layer's parameters get no gradient in that step: wrap with
``find_unused_parameters=True``.

Shape legend: B batch, T target tokens, S source tokens, D model dim, H heads, L layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .attention_ops import backend_class
from .config import BlockSpec
from .feedforward import build_feed_forward, build_norm
from .kv_cache import KVCache
from .layers import DecoderLayer, EncoderLayer
from .moe import build_moe_feed_forward
from .multihead import MultiHeadAttention

__all__ = [
    "StackOutput",
    "TransformerDecoder",
    "TransformerEncoder",
    "build_attention",
    "build_block_feed_forward",
    "build_decoder",
    "build_encoder",
    "drop_path_rates",
]


@dataclass
class StackOutput:
    """What a stack returns; the tuples are filled only when asked for.

    Attributes:
        last_hidden_state: (B, T, D) after the final norm (pre-norm stacks).
        hidden_states: L + 1 tensors (B, T, D): the input and each layer's output.
        attentions: L self-attention weight tensors (B, H, T, T).
        cross_attentions: L cross-attention weight tensors (B, H, T, S) (decoders only).
    """

    last_hidden_state: Tensor
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None
    cross_attentions: tuple[Tensor, ...] | None = None


def _check_layer_drop(layer_drop: float) -> None:
    if not 0.0 <= layer_drop < 1.0:
        raise ValueError(f"layer_drop must be in [0, 1), got {layer_drop}")


def _kept_layers(layers: nn.ModuleList, layer_drop: float, training: bool) -> list[tuple[int, nn.Module]]:
    """The layers that run this pass: all of them, or each kept with probability 1 - layer_drop."""
    if not training or layer_drop == 0.0:
        return list(enumerate(layers))
    keep = torch.rand(len(layers)) >= layer_drop
    return [(i, layer) for i, layer in enumerate(layers) if keep[i]]


class TransformerEncoder(nn.Module):
    """A stack of :class:`EncoderLayer` with an optional final norm (needed by pre-norm).

    Args:
        layers: the layers, applied in order.
        final_norm: norm after the last layer, or None.
        layer_drop: LayerDrop probability while training.
    """

    def __init__(self, layers: list[EncoderLayer], final_norm: nn.Module | None = None, layer_drop: float = 0.0):
        super().__init__()
        _check_layer_drop(layer_drop)
        self.layers = nn.ModuleList(layers)
        self.final_norm = final_norm
        self.layer_drop = layer_drop

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        is_causal: bool = False,
        positions: Tensor | None = None,
        pos: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> StackOutput:
        """Encode x (B, T, D); ``mask`` is boolean (True = may attend) or additive; ``pos`` as in DETR."""
        hidden = [x] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for _, layer in _kept_layers(self.layers, self.layer_drop, self.training):
            x, weights = layer(
                x, mask=mask, is_causal=is_causal, positions=positions, pos=pos, return_weights=output_attentions
            )
            if hidden is not None:
                hidden.append(x)
            if attentions is not None:
                attentions.append(weights)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return StackOutput(x, _tuple(hidden), _tuple(attentions))


class TransformerDecoder(nn.Module):
    """A stack of :class:`DecoderLayer` with an optional final norm.

    Args:
        layers: the layers, applied in order.
        final_norm: norm after the last layer, or None.
        layer_drop: LayerDrop probability while training (never while decoding with a cache).
    """

    def __init__(self, layers: list[DecoderLayer], final_norm: nn.Module | None = None, layer_drop: float = 0.0):
        super().__init__()
        _check_layer_drop(layer_drop)
        self.layers = nn.ModuleList(layers)
        self.final_norm = final_norm
        self.layer_drop = layer_drop

    def forward(
        self,
        x: Tensor,
        *,
        memory: Tensor | None = None,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        positions: Tensor | None = None,
        pos: Tensor | None = None,
        memory_pos: Tensor | None = None,
        cache: KVCache | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> StackOutput:
        """Decode x (B, T, D), attending to memory (B, S, D) where given; see :class:`DecoderLayer`."""
        hidden = [x] if output_hidden_states else None
        attentions = [] if output_attentions else None
        crosses = [] if output_attentions else None
        for i, layer in _kept_layers(self.layers, self.layer_drop, self.training and cache is None):
            x, self_w, cross_w = layer(
                x,
                memory=memory,
                self_mask=self_mask,
                memory_mask=memory_mask,
                positions=positions,
                pos=pos,
                memory_pos=memory_pos,
                cache=cache.layers[i] if cache is not None else None,
                return_weights=output_attentions,
            )
            if hidden is not None:
                hidden.append(x)
            if attentions is not None:
                attentions.append(self_w)
                crosses.append(cross_w)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return StackOutput(x, _tuple(hidden), _tuple(attentions), _tuple(crosses))


def _tuple(items: list | None) -> tuple | None:
    return None if items is None else tuple(items)


def build_attention(spec: BlockSpec, cross: bool = False, kv_dim: int | None = None) -> MultiHeadAttention:
    """The self- (or cross-) attention of a block; rotary applies to self-attention only."""
    qkv_bias = spec.bias if spec.qkv_bias is None else spec.qkv_bias
    return MultiHeadAttention(
        spec.dim,
        spec.num_heads,
        num_kv_heads=spec.num_kv_heads,
        dropout=spec.attention_dropout,
        bias=spec.bias,
        q_bias=qkv_bias,
        k_bias=qkv_bias if spec.key_bias is None else spec.key_bias,
        v_bias=qkv_bias,
        out_bias=spec.out_bias,
        backend=spec.backend,
        rotary=spec.rotary and not cross,
        cross=cross,
        kv_dim=kv_dim,
        max_len=spec.max_len,
    )


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic depth per layer, growing linearly from 0 at the first layer to ``rate`` at the last."""
    if depth <= 1:
        return [rate] * depth
    return [rate * i / (depth - 1) for i in range(depth)]


def build_block_feed_forward(spec: BlockSpec, layer_index: int) -> nn.Module:
    """Dense feed-forward, or MoE on every ``moe_every``-th layer when ``moe_experts`` is set."""
    if spec.moe_experts and (layer_index + 1) % spec.moe_every == 0:
        return build_moe_feed_forward(
            spec.dim,
            spec.d_ff,
            spec.moe_experts,
            spec.moe_top_k,
            activation=spec.activation,
            dropout=spec.dropout,
            bias=spec.bias,
            capacity_factor=spec.moe_capacity_factor or None,
        )
    return build_feed_forward(spec.dim, spec.d_ff, spec.activation, spec.dropout, spec.bias)


def _norm(spec: BlockSpec) -> nn.Module:
    return build_norm(spec.norm, spec.dim, spec.norm_eps)


def build_encoder(
    spec: BlockSpec, num_layers: int, *, final_norm: bool | None = None, causal: bool = False
) -> TransformerEncoder:
    """An encoder stack of ``num_layers`` blocks.

    Args:
        spec: what each block is made of.
        num_layers: depth L.
        final_norm: norm after the last layer; default for pre-norm stacks.
        causal: the stack will be run causally (checks that the backend supports it).
    """
    backend_class(spec.backend).check_use(causal=causal, where="this encoder")
    layers = [
        EncoderLayer(
            build_attention(spec),
            build_block_feed_forward(spec, i),
            _norm(spec),
            _norm(spec),
            dropout=spec.dropout,
            drop_path=rate,
            norm_first=spec.norm_first,
            layer_scale=spec.layer_scale,
        )
        for i, rate in enumerate(drop_path_rates(spec.drop_path, num_layers))
    ]
    final = spec.norm_first if final_norm is None else final_norm
    return TransformerEncoder(layers, _norm(spec) if final else None, spec.layer_drop)


def build_decoder(
    spec: BlockSpec,
    num_layers: int,
    *,
    cross_attention: bool = True,
    causal: bool = True,
    memory_dim: int | None = None,
    final_norm: bool | None = None,
) -> TransformerDecoder:
    """A decoder stack of ``num_layers`` blocks.

    Args:
        spec: what each block is made of.
        num_layers: depth L.
        cross_attention: blocks attend to an encoder output (without: decoder-only).
        causal: causal self-attention (False for DETR's object queries).
        memory_dim: width of the encoder output, when it differs from ``spec.dim``.
        final_norm: norm after the last layer; default for pre-norm stacks.
    """
    backend_class(spec.backend).check_use(causal=causal, where="a causal decoder")
    layers = []
    for i, rate in enumerate(drop_path_rates(spec.drop_path, num_layers)):
        layers.append(
            DecoderLayer(
                build_attention(spec),
                build_block_feed_forward(spec, i),
                _norm(spec),
                _norm(spec),
                cross_attn=build_attention(spec, cross=True, kv_dim=memory_dim) if cross_attention else None,
                cross_attn_norm=_norm(spec) if cross_attention else None,
                dropout=spec.dropout,
                drop_path=rate,
                norm_first=spec.norm_first,
                layer_scale=spec.layer_scale,
                causal=causal,
            )
        )
    final = spec.norm_first if final_norm is None else final_norm
    return TransformerDecoder(layers, _norm(spec) if final else None, spec.layer_drop)
