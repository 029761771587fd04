"""Vision Transformer (ViT) image classifier built from polyformer.core blocks.

Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words: Transformers for Image Recognition
at Scale" (https://arxiv.org/abs/2010.11929; reference code google-research/vision_transformer,
and timm ``VisionTransformer``). The image is cut into non-overlapping patches, each patch is
projected linearly (a strided convolution), a class token is prepended, learned position
embeddings are added, a pre-norm transformer encoder mixes the tokens, and a linear head reads
the class token (or the mean of the patch tokens).

Images of another size than the training size work: the position table is resampled to the
new patch grid with bicubic interpolation (as timm's ``dynamic_img_size``).

Shape legend: B batch, C channels, H x W image size, Gh x Gw patch grid, P = Gh*Gw patches,
T = prefix + P tokens, D model dim, K classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyformer.core import LearnedPositionalEmbedding2D, PretrainedModel, StackOutput, build_encoder, build_norm

from .config import ViTConfig
from .convert_hf import is_hf_vit_directory, read_hf_vit
from .convert_timm import read_timm_vit

__all__ = ["PatchEmbedding", "ViT", "resample_positions_plain_bicubic"]


class PatchEmbedding(nn.Module):
    """Cuts an image into patches and projects each to D channels (one strided convolution).

    Args:
        patch_size: side of a square patch.
        in_channels: image channels C.
        dim: output width D.
    """

    def __init__(self, patch_size: int, in_channels: int, dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Images (B, C, H, W) -> patch tokens (B, P, D) and the grid (Gh, Gw)."""
        if images.dim() != 4:
            raise ValueError(f"ViT expects images shaped (B, C, H, W), got {tuple(images.shape)}")
        _, channels, height, width = images.shape
        if channels != self.in_channels:
            raise ValueError(f"ViT was configured for {self.in_channels}-channel images, got {channels} channels")
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"image size {height}x{width} is not a multiple of the patch size {self.patch_size}; "
                "resize or crop the images"
            )
        x = self.proj(images)  # (B, D, Gh, Gw)
        grid = (x.shape[-2], x.shape[-1])
        return x.flatten(2).transpose(1, 2), grid  # (B, P, D)


def resample_positions_plain_bicubic(table: Tensor, new_grid: tuple[int, int], num_prefix_tokens: int) -> Tensor:
    """Plain (not antialiased) bicubic resampling of a square (1, prefix + G*G, D) table, as Hugging Face ViT does.

    torch's antialiased bicubic (used by timm and core's ``resample_2d``) has a different kernel
    (a = -0.5 instead of -0.75), so a Hugging Face checkpoint needs this variant to reproduce
    ``interpolate_pos_encoding=True``.
    """
    prefix, grid = table[:, :num_prefix_tokens], table[:, num_prefix_tokens:]
    side, dim = round(grid.shape[1] ** 0.5), grid.shape[-1]
    grid = grid.reshape(1, side, side, dim).permute(0, 3, 1, 2)  # (1, D, G, G)
    grid = F.interpolate(grid.float(), size=new_grid, mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim).to(table.dtype)  # (1, Gh*Gw, D)
    return torch.cat([prefix, grid], dim=1)


class ViT(PretrainedModel):
    """Vision Transformer classifier: images (B, C, H, W) -> logits (B, K).

    Args:
        config: the architecture; default ViT-Base/16 at 224x224.

    Attributes:
        patch_embed: the :class:`PatchEmbedding`.
        cls_token: the learned class token (1, 1, D), or None.
        pos_embed: learned positions of the prefix and the patch grid.
        encoder: the pre-norm :class:`~polyformer.core.TransformerEncoder` (no final norm).
        norm: the final norm (on all tokens for ``pool="cls"``, on the pooled vector for ``"mean"``).
        head: the classifier, or identity when ``num_classes == 0``.
    """

    config_class = ViTConfig
    config: ViTConfig
    head_prefixes = ("head",)

    def __init__(self, config: ViTConfig | None = None):
        config = ViTConfig() if config is None else config
        super().__init__(config)
        dim = config.d_model
        self.patch_embed = PatchEmbedding(config.patch_size, config.in_channels, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if config.class_token else None
        grid = (config.grid_size, config.grid_size)
        self.pos_embed = LearnedPositionalEmbedding2D(grid, dim, config.num_prefix_tokens)
        self.pos_drop = nn.Dropout(config.dropout)
        self.encoder = build_encoder(config.block_spec(), config.num_layers, final_norm=False)
        self.norm = build_norm(config.norm, dim, config.norm_eps)
        self.head = nn.Linear(dim, config.num_classes) if config.num_classes > 0 else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """timm/JAX-style init: truncated normal (std 0.02) linears with zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        nn.init.trunc_normal_(self.pos_embed.weight, std=0.02)

    def no_weight_decay(self) -> set[str]:
        """Parameters AdamW should not decay: the embeddings' (see the base class) and the class token."""
        names = super().no_weight_decay()
        return names | {"cls_token"} if self.cls_token is not None else names

    def embed(self, images: Tensor) -> Tensor:
        """Images (B, C, H, W) -> tokens (B, T, D) with the class token and positions added."""
        x, grid = self.patch_embed(images)  # (B, P, D)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, T, D)
        if self.config.pos_antialias or grid == self.pos_embed.grid_size:
            positions = self.pos_embed(grid)  # (1, T, D)
        else:
            positions = resample_positions_plain_bicubic(self.pos_embed.weight, grid, self.config.num_prefix_tokens)
        return self.pos_drop(x + positions)

    def encode(
        self, images: Tensor, output_hidden_states: bool = False, output_attentions: bool = False
    ) -> StackOutput:
        """Run the encoder; per-layer hidden states (B, T, D) and attention weights (B, H, T, T) on request.

        ``last_hidden_state`` is normed by the final norm when ``pool == "cls"``.
        """
        out = self.encoder(
            self.embed(images), output_hidden_states=output_hidden_states, output_attentions=output_attentions
        )
        if self.config.pool == "cls":
            out.last_hidden_state = self.norm(out.last_hidden_state)
        return out

    def forward_features(self, images: Tensor) -> Tensor:
        """Encoded tokens (B, T, D); normed by the final norm when ``pool == "cls"``."""
        return self.encode(images).last_hidden_state

    def pool(self, features: Tensor) -> Tensor:
        """Tokens from :meth:`forward_features` (B, T, D) -> one normed vector per image (B, D)."""
        if self.config.pool == "cls":
            return features[:, 0]
        return self.norm(features[:, self.config.num_prefix_tokens :].mean(dim=1))

    def forward(self, images: Tensor) -> Tensor:
        """Class logits (B, K) for images (B, C, H, W); pooled features (B, D) if there is no head.

        With class-token pooling only the class token of the last layer reaches the head, so the
        last layer is computed for that token alone (its keys and values still cover every
        token). The logits equal ``head(pool(forward_features(images)))``; the last layer costs
        about 1/T of a full one, in training and inference. This needs a backend whose query
        rows are independent (``backend.exact``); others run the full last layer.
        """
        last = self.encoder.layers[-1]
        if self.config.pool != "cls" or not last.self_attn.backend.exact or self.encoder.layer_drop:
            return self.head(self.pool(self.forward_features(images)))
        x = self.embed(images)  # (B, T, D)
        for layer in self.encoder.layers[:-1]:
            x, _ = layer(x)
        cls, _ = last(x, first_tokens=1)  # (B, 1, D)
        return self.head(self.norm(cls[:, 0]))

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu", **overrides: Any) -> ViT:
        """Load a polyformer ViT directory or a Hugging Face ``ViTForImageClassification`` one.

        Args:
            directory: holds ``config.json`` and ``model.safetensors`` (ours), or a Hugging Face
                ``config.json`` (``model_type`` "vit") with ``model.safetensors`` or
                ``pytorch_model.bin`` (read with ``weights_only=True``).
            map_location: device for the weights.
            **overrides: config fields to change, e.g. ``backend="eager"``.

        Raises:
            FileNotFoundError: a file the directory needs is missing.
            ValueError: the config or the weights do not describe a ViT this class can build.
        """
        if not is_hf_vit_directory(directory):
            return super().from_pretrained(directory, map_location, **overrides)
        config, state = read_hf_vit(directory)
        return cls._from_converted(config, state, str(directory), map_location, overrides)

    @classmethod
    def from_timm(cls, name: str, path: str | Path, map_location: str | torch.device = "cpu", **overrides: Any) -> ViT:
        """Load a timm ``VisionTransformer`` state dict (``.safetensors`` or ``.pth``/``.bin``).

        Args:
            name: the timm model name, e.g. ``"vit_tiny_patch16_224"`` (a ``.tag`` suffix is ignored).
            path: the weights file (``.pth`` files are read with ``weights_only=True``).
            map_location: device for the weights.
            **overrides: config fields to change, e.g. ``backend="eager"``.

        Raises:
            FileNotFoundError: the weights file is missing.
            ValueError: the name is not a supported timm ViT, or the weights do not fit it.
        """
        config, state = read_timm_vit(name, path)
        return cls._from_converted(config, state, str(path), map_location, overrides)

    @classmethod
    def _from_converted(
        cls, config: ViTConfig, state: dict[str, Tensor], source: str, map_location: str | torch.device, overrides: dict
    ) -> ViT:
        if overrides:
            config = config.replace(**overrides)
        model = cls(config)
        model.load_weights(state, source=source)
        return model.to(map_location).eval()
