"""DETR's 2D sine position encoding of a feature map (Carion et al. 2020, appendix A.4; reference code
facebookresearch/detr ``models/position_encoding.py``).

Each feature-map cell (y, x) gets ``2 * num_features`` channels: ``num_features`` for its row
position, then ``num_features`` for its column position, each as interleaved sin/cos pairs at
geometrically spaced frequencies (``temperature ** (2i / num_features)``), as in "Attention Is All
You Need" but per axis. Positions count only the real cells of each image (the pixel mask): a padded
image gets the same encoding in its real area as the unpadded one. With ``normalize`` (DETR's
setting) positions are scaled to [0, scale] by the image's real height and width, so the encoding
does not depend on the image size.

Shape legend: B images, H feature-map rows, W feature-map columns, F features per axis.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["LearnedRowColumnPosition", "sine_position_encoding"]


def sine_position_encoding(
    mask: Tensor,
    num_features: int = 128,
    temperature: float = 10000.0,
    normalize: bool = True,
    scale: float = 2 * math.pi,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The encoding (B, 2F, H, W) of feature maps whose real cells ``mask`` (B, H, W) marks (True = real).

    Args:
        mask: True where the cell covers the image, False where it covers padding.
        num_features: F, channels per axis (DETR: half the model width); must be even.
        temperature: the base of the frequencies.
        normalize: scale positions to [0, ``scale``] by each image's real height and width.
        scale: the largest normalised position.
        dtype: the encoding's dtype.
    """
    if num_features % 2:
        raise ValueError(f"num_features must be even (sin/cos pairs), got {num_features}")
    real = mask.to(dtype)
    rows = real.cumsum(dim=1)  # (B, H, W): 1-based row index among real cells
    cols = real.cumsum(dim=2)
    if normalize:
        eps = 1e-6
        rows = rows / (rows[:, -1:, :] + eps) * scale
        cols = cols / (cols[:, :, -1:] + eps) * scale
    pair = torch.arange(num_features, device=mask.device).div(2, rounding_mode="floor").to(dtype)
    frequencies = temperature ** (2 * pair / num_features)  # (F,): equal within each sin/cos pair

    def encode(position: Tensor) -> Tensor:
        angles = position[..., None] / frequencies  # (B, H, W, F)
        return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)

    return torch.cat((encode(rows), encode(cols)), dim=-1).permute(0, 3, 1, 2)  # (B, 2F, H, W)


class LearnedRowColumnPosition(nn.Module):
    """DETR's learned 2D positions: a table of rows and a table of columns (``LEARNED_GRID`` each).

    A cell (y, x) gets ``[column_table[x], row_table[y]]`` (column half first, as in the
    reference); feature maps larger than the tables are an error.

    Args:
        num_features: F, channels per axis (half the model width).
        grid: rows and columns the tables cover.
    """

    def __init__(self, num_features: int, grid: int = 50):
        super().__init__()
        self.grid = grid
        self.row_embed = nn.Embedding(grid, num_features)
        self.col_embed = nn.Embedding(grid, num_features)
        nn.init.uniform_(self.row_embed.weight)
        nn.init.uniform_(self.col_embed.weight)

    def forward(self, mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """The encoding (B, 2F, H, W) of feature maps shaped like ``mask`` (B, H, W) (padding is not used)."""
        batch, height, width = mask.shape
        if height > self.grid or width > self.grid:
            raise ValueError(
                f"a {height}x{width} feature map is larger than the learned {self.grid}x{self.grid} position "
                "tables; use smaller images or position='sine'"
            )
        cols = self.col_embed.weight[:width]  # (W, F)
        rows = self.row_embed.weight[:height]  # (H, F)
        grid = torch.cat((cols[None].expand(height, -1, -1), rows[:, None].expand(-1, width, -1)), dim=-1)
        return grid.permute(2, 0, 1)[None].expand(batch, -1, -1, -1).to(dtype)  # (B, 2F, H, W)
