"""wav2vec 2.0 (Baevski et al. 2020) on core's encoder stack: the waveform in, one vector per 20 ms frame out.

Forward order of :class:`Wav2Vec2Model`:

1. :class:`ConvFeatureEncoder`: seven 1-D convolutions over the raw waveform (B, N) -> conv features (B, C, S);
   BASE normalises the first conv's output per channel over time (group norm with one group per channel),
   LARGE-LV60 every conv's output per frame (layer norm). :func:`scale_gradient` shrinks the gradient that reaches
   it during pretraining (fairseq: x 0.1), which keeps the conv layers stable.
2. Layer norm of the conv features (the quantiser's input when pretraining), a linear projection to the width D.
3. Span masking: the frames of ``time_mask`` are replaced by one learned vector (``mask_embedding``).
4. :class:`Wav2Vec2Encoder`: a grouped convolution over time with weight normalisation adds relative position
   information, then core's encoder stack (post-norm with a norm before the stack for BASE, pre-norm with a final
   norm for LARGE).

:class:`Wav2Vec2ForCTC` adds a linear head with one class per character plus the blank.

Shape legend: B batch, N waveform samples, C conv channels, S frames, D width, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyformer.core import PretrainedModel, build_encoder

from .config import Wav2Vec2Config

__all__ = [
    "ConvFeatureEncoder",
    "PositionConv",
    "Wav2Vec2Encoder",
    "Wav2Vec2ForCTC",
    "Wav2Vec2Model",
    "Wav2Vec2Output",
    "scale_gradient",
]


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None


def scale_gradient(x: Tensor, scale: float) -> Tensor:
    """``x`` unchanged going forward; its gradient multiplied by ``scale`` going back (identity at 1)."""
    return x if scale == 1.0 else _ScaleGradient.apply(x, scale)


class _ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, bias: bool, norm: str | None):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, bias=bias)
        # fairseq's and transformers' initialisation: Kaiming normal keeps the activations' scale through the seven
        # GELU convs. (torch's default shrinks it about 3x per layer, so the conv features of a new model vanish
        # below the layer norm's epsilon, the quantiser's logits go flat, its Gumbel picks are noise and
        # pretraining sits at chance.)
        nn.init.kaiming_normal_(self.conv.weight)
        if bias:
            bound = (1.0 / (in_channels * kernel)) ** 0.5
            nn.init.uniform_(self.conv.bias, -bound, bound)
        self.norm_kind = norm
        if norm == "group":  # one group per channel: each channel normalised over time
            self.norm = nn.GroupNorm(out_channels, out_channels)
        elif norm == "layer":  # each frame normalised over channels
            self.norm = nn.LayerNorm(out_channels)
        else:
            self.norm = None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.norm_kind == "layer":
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        elif self.norm is not None:
            x = self.norm(x)
        return F.gelu(x)


class ConvFeatureEncoder(nn.Module):
    """The raw waveform (B, N) -> conv features (B, C, S); see the module docstring."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        channels = [1, *config.conv_dim]
        norms = ["group" if i == 0 else None for i in range(len(config.conv_dim))]
        if config.feature_norm == "layer":
            norms = ["layer"] * len(config.conv_dim)
        self.layers = nn.ModuleList(
            _ConvBlock(channels[i], channels[i + 1], kernel, stride, config.conv_bias, norms[i])
            for i, (kernel, stride) in enumerate(zip(config.conv_kernel, config.conv_stride))
        )

    def forward(self, waveform: Tensor) -> Tensor:
        x = waveform[:, None, :]
        for layer in self.layers:
            x = layer(x)
        return x


class PositionConv(nn.Module):
    """Relative positions: a grouped convolution over time (kernel K, weight-normalised over the kernel axis),
    trimmed to the input's length, then GELU. The weight is ``weight_g * weight_v / ||weight_v||``, the norm taken
    per kernel tap over both channel axes (``torch.nn.utils.weight_norm(conv, dim=2)``)."""

    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        self.kernel, self.groups = kernel, groups
        self.weight_v = nn.Parameter(torch.empty(dim, dim // groups, kernel))
        self.weight_g = nn.Parameter(torch.empty(1, 1, kernel))
        self.bias = nn.Parameter(torch.zeros(dim))
        # fairseq's initialisation: normal with std sqrt(4 / (K * D)), g set to the initial norm.
        nn.init.normal_(self.weight_v, mean=0.0, std=(4.0 / (kernel * dim)) ** 0.5)
        with torch.no_grad():
            self.weight_g.copy_(self._norm(self.weight_v))

    @staticmethod
    def _norm(v: Tensor) -> Tensor:
        return v.norm(dim=(0, 1), keepdim=True)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, S, D) -> position vectors (B, S, D)."""
        weight = self.weight_v * (self.weight_g / self._norm(self.weight_v))
        y = F.conv1d(x.transpose(1, 2), weight.to(x.dtype), self.bias.to(x.dtype), padding=self.kernel // 2,
                     groups=self.groups)  # fmt: skip
        if self.kernel % 2 == 0:  # an even kernel with K/2 padding gives one frame too many
            y = y[:, :, :-1]
        return F.gelu(y).transpose(1, 2)


class Wav2Vec2Encoder(nn.Module):
    """Position conv + (BASE: norm) + dropout + core's encoder stack (LARGE: with its final norm)."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.position = PositionConv(config.d_model, config.pos_conv_kernel, config.pos_conv_groups)
        self.norm = None if config.norm_first else nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        self.stack = build_encoder(config.block_spec(), config.encoder_layers)

    def forward(self, x: Tensor, frame_mask: Tensor | None = None, **outputs: bool):
        """x (B, S, D); ``frame_mask`` (B, S) True = a real frame (padding is zeroed and never attended)."""
        if frame_mask is not None:
            x = x.masked_fill(~frame_mask[:, :, None], 0.0)
        x = x + self.position(x)
        if self.norm is not None:
            x = self.norm(x)
        mask = None if frame_mask is None else frame_mask[:, None, None, :]
        return self.stack(self.dropout(x), mask=mask, **outputs)


@dataclass
class Wav2Vec2Output:
    """What :class:`Wav2Vec2Model` returns.

    Attributes:
        last_hidden_state: (B, S, D) the encoder's output.
        features: (B, S, C) the layer-normed conv features (the quantiser's input when pretraining).
        frame_mask: (B, S) True = a real frame; None when no ``attention_mask`` was given (all frames real).
        hidden_states: the stack's input and each layer's output, when asked for.
    """

    last_hidden_state: Tensor
    features: Tensor
    frame_mask: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None


class Wav2Vec2Model(PretrainedModel):
    """The bare wav2vec 2.0 model: waveform (B, N) -> frame vectors (B, S, D). See the module docstring.

    Attributes:
        feature_encoder: :class:`ConvFeatureEncoder`.
        feature_norm, feature_projection: layer norm of the conv features and the projection to D.
        mask_embedding: the learned vector that replaces masked frames.
        encoder: :class:`Wav2Vec2Encoder`.
        feature_grad_scale: gradient multiplier of the feature encoder (set by the pretraining recipe; 1 = none).
    """

    config_class = Wav2Vec2Config
    config: Wav2Vec2Config

    def __init__(self, config: Wav2Vec2Config):
        super().__init__(config)
        channels = config.conv_dim[-1]
        self.feature_encoder = ConvFeatureEncoder(config)
        self.feature_norm = nn.LayerNorm(channels, eps=config.norm_eps)
        self.feature_projection = nn.Linear(channels, config.d_model)
        self.feature_dropout = nn.Dropout(config.feature_dropout)
        self.mask_embedding = nn.Parameter(torch.empty(config.d_model).uniform_())
        self.encoder = Wav2Vec2Encoder(config)
        self.feature_grad_scale = 1.0

    def frame_lengths(self, sample_lengths: Tensor) -> Tensor:
        """Frames (B,) the feature encoder makes of clips of ``sample_lengths`` (B,) samples."""
        lengths = sample_lengths.long()
        for kernel, stride in zip(self.config.conv_kernel, self.config.conv_stride):
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        return lengths.clamp(min=0)

    def forward(
        self,
        waveform: Tensor,
        attention_mask: Tensor | None = None,
        time_mask: Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> Wav2Vec2Output:
        """Encode a batch of waveforms.

        Args:
            waveform: (B, N) 16 kHz samples (normalised to zero mean, unit variance per clip, as in training).
            attention_mask: (B, N) True (or 1) = a real sample; right-padded clips. None = no padding.
            time_mask: (B, S) bool, frames to replace by ``mask_embedding`` (span masking).
            output_hidden_states: also return every layer's output.
        """
        if waveform.dim() != 2:
            raise ValueError(f"waveform must be (B, samples), got shape {tuple(waveform.shape)}")
        if waveform.shape[1] < self.config.receptive_field:
            raise ValueError(
                f"clips must have at least {self.config.receptive_field} samples (the conv receptive field, "
                f"{self.config.receptive_field / 16:.0f} ms at 16 kHz), got {waveform.shape[1]}"
            )
        conv = scale_gradient(self.feature_encoder(waveform.to(self.feature_projection.weight.dtype)),
                              self.feature_grad_scale)  # fmt: skip
        features = self.feature_norm(conv.transpose(1, 2))  # (B, S, C)
        x = self.feature_dropout(self.feature_projection(features))
        frame_mask = None
        if attention_mask is not None:
            lengths = self.frame_lengths(attention_mask.long().sum(dim=1))
            frame_mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        if time_mask is not None:
            if time_mask.shape != x.shape[:2]:
                raise ValueError(f"time_mask must be (B, S) = {tuple(x.shape[:2])}, got {tuple(time_mask.shape)}")
            x = torch.where(time_mask[:, :, None], self.mask_embedding.to(x.dtype), x)
        out = self.encoder(x, frame_mask, output_hidden_states=output_hidden_states)
        return Wav2Vec2Output(out.last_hidden_state, features, frame_mask, out.hidden_states)


class Wav2Vec2ForCTC(PretrainedModel):
    """wav2vec 2.0 with a linear CTC head: waveform -> per-frame logits over the vocabulary (blank included)."""

    config_class = Wav2Vec2Config
    config: Wav2Vec2Config
    head_prefixes = ("ctc_head",)

    def __init__(self, config: Wav2Vec2Config):
        super().__init__(config)
        if config.vocab_size < 2:
            raise ValueError("a CTC model needs vocab_size >= 2 (the blank and at least one label)")
        self.wav2vec2 = Wav2Vec2Model(config)
        self.dropout = nn.Dropout(config.dropout)
        self.ctc_head = nn.Linear(config.d_model, config.vocab_size)

    def forward(
        self, waveform: Tensor, attention_mask: Tensor | None = None, time_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Logits (B, S, V) and the real frames of each row (B,)."""
        out = self.wav2vec2(waveform, attention_mask, time_mask)
        logits = self.ctc_head(self.dropout(out.last_hidden_state))
        if out.frame_mask is None:
            lengths = torch.full((logits.shape[0],), logits.shape[1], dtype=torch.long, device=logits.device)
        else:
            lengths = out.frame_mask.sum(dim=1)
        return logits, lengths
