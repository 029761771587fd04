"""Encoder and decoder stacks, and builders that assemble them from a TransformerConfig.

Shape legend: B batch, T target tokens, S source tokens, D model dim, H heads, L layers.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from .config import TransformerConfig
from .feedforward import build_feed_forward, build_norm
from .kv_cache import KVCache
from .layers import DecoderLayer, EncoderLayer
from .moe import build_moe_feed_forward
from .multihead import MultiHeadAttention

__all__ = ["StackOutput", "TransformerDecoder", "TransformerEncoder", "build_decoder", "build_encoder", "drop_path_rates"]


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


class TransformerEncoder(nn.Module):
    """A stack of :class:`EncoderLayer` with an optional final norm (needed by pre-norm)."""

    def __init__(self, layers: list[EncoderLayer], final_norm: nn.Module | None = None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.final_norm = final_norm

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        is_causal: bool = False,
        positions: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> StackOutput:
        """Encode x (B, T, D); ``mask`` is boolean (True = may attend) or additive."""
        hidden = [x] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for layer in self.layers:
            x, weights = layer(x, mask, is_causal, positions, None, output_attentions)
            if hidden is not None:
                hidden.append(x)
            if attentions is not None:
                attentions.append(weights)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return StackOutput(x, _tuple(hidden), _tuple(attentions))


class TransformerDecoder(nn.Module):
    """A stack of :class:`DecoderLayer` with an optional final norm."""

    def __init__(self, layers: list[DecoderLayer], final_norm: nn.Module | None = None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.final_norm = final_norm

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        positions: Tensor | None = None,
        cache: KVCache | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> StackOutput:
        """Decode x (B, T, D), causally, attending to memory (B, S, D) where given."""
        hidden = [x] if output_hidden_states else None
        attentions = [] if output_attentions else None
        crosses = [] if output_attentions else None
        for i, layer in enumerate(self.layers):
            layer_cache = cache.layers[i] if cache is not None else None
            x, self_w, cross_w = layer(x, memory, self_mask, memory_mask, positions, layer_cache, output_attentions)
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


def _attention(config: TransformerConfig, cross: bool) -> MultiHeadAttention:
    return MultiHeadAttention(
        config.d_model,
        config.num_heads,
        num_kv_heads=config.num_kv_heads,
        dropout=config.attention_dropout,
        bias=config.bias,
        backend=config.backend,
        rotary=config.position == "rotary" and not cross,
        cross=cross,
        max_len=config.max_len,
    )


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic depth per layer, growing linearly from 0 at the first layer to ``rate`` at the last."""
    if depth <= 1:
        return [rate] * depth
    return [rate * i / (depth - 1) for i in range(depth)]


def _feed_forward(config: TransformerConfig, layer_index: int) -> nn.Module:
    """Dense feed-forward, or MoE on every ``moe_every``-th layer when ``moe_experts`` is set."""
    if config.moe_experts and (layer_index + 1) % config.moe_every == 0:
        capacity = config.moe_capacity_factor or None
        return build_moe_feed_forward(config, config.moe_experts, config.moe_top_k, capacity_factor=capacity)
    return build_feed_forward(config.d_model, config.d_ff, config.activation, config.dropout, config.bias)


def _norm(config: TransformerConfig) -> nn.Module:
    return build_norm(config.norm, config.d_model, config.norm_eps)


def build_encoder(config: TransformerConfig, num_layers: int | None = None) -> TransformerEncoder:
    """The encoder stack a config describes (``num_layers`` defaults to encoder_layers)."""
    depth = config.encoder_layers if num_layers is None else num_layers
    layers = [
        EncoderLayer(_attention(config, False), _feed_forward(config, i), _norm(config), _norm(config), config.dropout, rate, config.norm_first)
        for i, rate in enumerate(drop_path_rates(config.drop_path, depth))
    ]
    return TransformerEncoder(layers, _norm(config) if config.norm_first else None)


def build_decoder(config: TransformerConfig, cross_attention: bool = True) -> TransformerDecoder:
    """The decoder stack a config describes; without cross-attention it is decoder-only."""
    layers = []
    for i, rate in enumerate(drop_path_rates(config.drop_path, config.decoder_layers)):
        cross = _attention(config, True) if cross_attention else None
        norms = [_norm(config) for _ in range(3 if cross_attention else 2)]
        layers.append(DecoderLayer(_attention(config, False), cross, _feed_forward(config, i), norms, config.dropout, rate, config.norm_first))
    return TransformerDecoder(layers, _norm(config) if config.norm_first else None)
