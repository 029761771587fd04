"""Positional encodings: learned and sinusoidal 1D, sine-cosine and learned 2D, RoPE, ALiBi.

References: sinusoidal (Vaswani et al. 2017); learned (BERT, Devlin et al. 2019);
2D sine-cosine (MAE, He et al. 2022); learned 2D with interpolation (ViT, Dosovitskiy et al.
2021; timm ``resample_abs_pos_embed``); rotary (RoFormer, Su et al. 2021); ALiBi (Press et al.
2022, "Train Short, Test Long").

Shape legend: B batch, T tokens, D model dim, H heads, Dh head dim, Gh x Gw patch grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ALiBi",
    "LearnedPositionalEmbedding",
    "LearnedPositionalEmbedding2D",
    "RotaryEmbedding",
    "SinusoidalPositionalEmbedding",
    "apply_rotary",
    "sincos_2d",
    "sinusoidal_table",
]


def _check_positions(positions: Tensor, max_len: int, bound: int | None = None) -> None:
    """Raise when a position is past the table; ``bound``, a known upper bound of the positions
    (a cache's length), skips the host sync of reading their maximum when it is in range."""
    if bound is not None and bound < max_len:
        return
    if positions.numel() and int(positions.max()) >= max_len:
        raise ValueError(
            f"position {int(positions.max())} is past the maximum length {max_len}; raise max_len in the config"
        )


class LearnedPositionalEmbedding(nn.Module):
    """A learned vector per position (BERT/GPT-2 style).

    Args:
        max_len: number of positions.
        dim: embedding width D.
    """

    def __init__(self, max_len: int, dim: int):
        super().__init__()
        self.max_len = max_len
        self.weight = nn.Parameter(torch.empty(max_len, dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, positions: Tensor, bound: int | None = None) -> Tensor:
        """Embeddings (..., D) for integer ``positions`` (...); ``bound``: a known upper bound of them."""
        _check_positions(positions, self.max_len, bound)
        return F.embedding(positions, self.weight)


def sinusoidal_table(max_len: int, dim: int, base: float = 10000.0) -> Tensor:
    """The (max_len, D) sine/cosine table of Vaswani et al.: sin on even, cos on odd channels."""
    if dim % 2:
        raise ValueError(f"sinusoidal positions need an even width, got {dim}")
    pos = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)
    freq = torch.exp(-math.log(base) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    table = torch.zeros(max_len, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table.float()


class SinusoidalPositionalEmbedding(nn.Module):
    """Fixed sinusoidal positions (not a parameter; rebuilt, not saved)."""

    def __init__(self, max_len: int, dim: int, base: float = 10000.0):
        super().__init__()
        self.max_len = max_len
        self.register_buffer("table", sinusoidal_table(max_len, dim, base), persistent=False)

    def forward(self, positions: Tensor, bound: int | None = None) -> Tensor:
        """Embeddings (..., D) for integer ``positions`` (...); ``bound``: a known upper bound of them."""
        _check_positions(positions, self.max_len, bound)
        return F.embedding(positions, self.table)


def sincos_2d(grid_h: int, grid_w: int, dim: int, base: float = 10000.0) -> Tensor:
    """Fixed 2D sine-cosine positions (Gh*Gw, D), row-major: half the channels code y, half x."""
    if dim % 4:
        raise ValueError(f"2D sine-cosine positions need a width divisible by 4, got {dim}")
    ys, xs = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float64), torch.arange(grid_w, dtype=torch.float64), indexing="ij"
    )
    quarter = dim // 4
    freq = 1.0 / base ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    y = ys.reshape(-1, 1) * freq
    x = xs.reshape(-1, 1) * freq
    return torch.cat([y.sin(), y.cos(), x.sin(), x.cos()], dim=1).float()


class LearnedPositionalEmbedding2D(nn.Module):
    """Learned positions on a patch grid, resampled (bicubic) to another grid size on demand.

    Args:
        grid_size: (Gh, Gw) of the grid the table is trained on.
        dim: embedding width D.
        num_prefix_tokens: leading tokens (class token, registers) with their own vectors,
            never resampled.
    """

    def __init__(self, grid_size: tuple[int, int], dim: int, num_prefix_tokens: int = 0):
        super().__init__()
        self.grid_size = tuple(grid_size)
        self.num_prefix_tokens = num_prefix_tokens
        self.weight = nn.Parameter(torch.empty(1, num_prefix_tokens + grid_size[0] * grid_size[1], dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, grid_size: tuple[int, int] | None = None) -> Tensor:
        """The (1, prefix + Gh*Gw, D) table for ``grid_size`` (default: the trained grid)."""
        if grid_size is None or tuple(grid_size) == self.grid_size:
            return self.weight
        return resample_2d(self.weight, self.grid_size, tuple(grid_size), self.num_prefix_tokens)


def resample_2d(table: Tensor, old: tuple[int, int], new: tuple[int, int], num_prefix_tokens: int = 0) -> Tensor:
    """Bicubic resampling of a (1, prefix + Gh*Gw, D) position table to a new grid."""
    prefix, grid = table[:, :num_prefix_tokens], table[:, num_prefix_tokens:]
    dim = grid.shape[-1]
    grid = grid.reshape(1, old[0], old[1], dim).permute(0, 3, 1, 2)  # (1, D, Gh, Gw)
    grid = F.interpolate(grid.float(), size=new, mode="bicubic", align_corners=False, antialias=True)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new[0] * new[1], dim).to(table.dtype)
    return torch.cat([prefix, grid], dim=1)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE): rotates channel pairs of q and k by position angles.

    Channel i is paired with channel i + Dr/2 (the "rotate half" layout used by GPT-NeoX and
    Llama), over the first ``rotary_dim`` channels of each head.

    Args:
        head_dim: per-head width Dh.
        rotary_dim: how many leading channels rotate (default all; must be even).
        base: the angle base (10000 in the paper).
    """

    def __init__(self, head_dim: int, rotary_dim: int | None = None, base: float = 10000.0):
        super().__init__()
        self.rotary_dim = head_dim if rotary_dim is None else rotary_dim
        if self.rotary_dim % 2 or self.rotary_dim > head_dim:
            raise ValueError(f"rotary_dim must be even and at most head_dim={head_dim}, got {self.rotary_dim}")
        inv_freq = 1.0 / base ** (torch.arange(0, self.rotary_dim, 2, dtype=torch.float32) / self.rotary_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """cos and sin tables (B, 1, T, Dr) for integer ``positions`` (B, T) or (T,)."""
        if positions.dim() == 1:
            positions = positions.unsqueeze(0)
        angles = positions.float().unsqueeze(-1) * self.inv_freq  # (B, T, Dr/2)
        angles = torch.cat([angles, angles], dim=-1).unsqueeze(1)  # (B, 1, T, Dr)
        return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the leading Dr channels of x (B, H, T, Dh) by the given cos/sin (B, 1, T, Dr)."""
    rot = cos.shape[-1]
    x_rot, x_pass = x[..., :rot], x[..., rot:]
    first, second = x_rot.chunk(2, dim=-1)
    rotated = torch.cat([-second, first], dim=-1)
    out = x_rot * cos.to(x.dtype) + rotated * sin.to(x.dtype)
    return torch.cat([out, x_pass], dim=-1) if x_pass.shape[-1] else out


class ALiBi(nn.Module):
    """Attention with Linear Biases: a per-head penalty proportional to query-key distance.

    Produces an additive float mask for :func:`polyformer.core.attention_ops.attention`.

    Args:
        num_heads: number of heads H; slopes follow the paper's geometric sequence.
    """

    def __init__(self, num_heads: int):
        super().__init__()
        self.register_buffer("slopes", self.slopes_for(num_heads), persistent=False)

    @staticmethod
    def slopes_for(num_heads: int) -> Tensor:
        """The paper's slopes: 2^(-8i/n) for a power of two n, interleaved otherwise."""

        def power_of_two(n: int) -> list[float]:
            start = 2.0 ** (-8.0 / n)
            return [start ** (i + 1) for i in range(n)]

        if math.log2(num_heads).is_integer():
            return torch.tensor(power_of_two(num_heads))
        closest = 2 ** math.floor(math.log2(num_heads))
        extra = power_of_two(2 * closest)[0::2][: num_heads - closest]
        return torch.tensor(power_of_two(closest) + extra)

    def forward(self, q_positions: Tensor, k_positions: Tensor) -> Tensor:
        """Bias (B, H, Tq, Tk) = -slope * |i - j| for positions (B, Tq) and (B, Tk)."""
        distance = (q_positions.unsqueeze(-1) - k_positions.unsqueeze(-2)).abs().float()  # (B, Tq, Tk)
        return -self.slopes.view(1, -1, 1, 1) * distance.unsqueeze(1)
