"""Configuration of the Vision Transformer (no torch import).

Defaults are ViT-Base/16 at 224x224 of Dosovitskiy et al. 2021, "An Image is Worth 16x16
Words: Transformers for Image Recognition at Scale" (Table 1): 12 layers, width 768, 12 heads,
MLP 3072, 16x16 patches, a class token, learned position embeddings, pre-norm with
LayerNorm (eps 1e-6 as in the reference JAX code and timm), GELU, 1000 ImageNet classes.
"""

from __future__ import annotations

from dataclasses import dataclass

from polyformer.core.config import (
    ACTIVATION_KINDS,
    NORM_KINDS,
    POOL_KINDS,
    BlockSpec,
    ConfigBase,
    block_spec_from,
    checked_class_names,
    require,
)

__all__ = ["ViTConfig", "POOL_KINDS"]


@dataclass
class ViTConfig(ConfigBase):
    """A ViT image classifier; every field is JSON-serialisable."""

    model_type = "vit"

    image_size: int = 224  # side of the square training image; other sizes resample the position table
    patch_size: int = 16  # side of a square patch (the patch-embedding stride)
    in_channels: int = 3  # image channels C (3 RGB, 1 grayscale)
    num_classes: int = 1000  # classifier outputs; 0 = no head (forward returns pooled features)
    d_model: int = 768  # model width D
    num_layers: int = 12  # encoder depth L
    num_heads: int = 12  # attention heads H
    d_ff: int = 3072  # MLP inner width (4 * D in the paper)
    activation: str = "gelu"  # gelu | gelu_tanh | relu | silu | swiglu | geglu
    norm: str = "layernorm"  # layernorm | rmsnorm
    norm_eps: float = 1e-6  # epsilon of every norm (Hugging Face ViT uses 1e-12)
    qkv_bias: bool = True  # biases in the query/key/value projections (the output projection always has one)
    class_token: bool = True  # prepend a learned class token
    pool: str = "cls"  # cls (class token, normed) | mean (mean of patch tokens, then the final norm)
    dropout: float = 0.0  # dropout after the position embeddings and on residual branches (paper: 0.1 on ImageNet)
    attention_dropout: float = 0.0  # dropout on attention weights
    drop_path: float = 0.0  # stochastic depth rate of the last layer (linear ramp from 0)
    layer_scale: float | None = None  # initial LayerScale value (CaiT); None = no layer scale
    pos_antialias: bool = True  # resample positions with antialiased bicubic (timm);
    # False = plain bicubic (Hugging Face)
    backend: str = "sdpa"  # core attention backend spec, e.g. "sdpa", "eager", "chunked"
    image_mean: list[float] | None = None  # per-channel input normalisation mean; None = 0.5 for each channel
    image_std: list[float] | None = None  # per-channel input normalisation std; None = 0.5 for each channel
    class_names: list[str] | None = None  # label names by class index, or None

    def __post_init__(self) -> None:
        for name in ("image_size", "patch_size", "in_channels", "d_model", "num_layers", "num_heads", "d_ff"):
            value = getattr(self, name)
            require(isinstance(value, int) and value > 0, f"{name} must be a positive integer, got {value!r}")
        require(
            self.image_size % self.patch_size == 0,
            f"patch_size={self.patch_size} must divide image_size={self.image_size}; "
            "pick a patch size that tiles the image",
        )
        require(
            self.d_model % self.num_heads == 0,
            f"num_heads={self.num_heads} must divide d_model={self.d_model} (head dim = d_model / num_heads)",
        )
        require(self.num_classes >= 0, f"num_classes must be >= 0 (0 = no head), got {self.num_classes}")
        require(
            self.activation in ACTIVATION_KINDS,
            f"activation must be one of {ACTIVATION_KINDS}, got {self.activation!r}",
        )
        require(self.norm in NORM_KINDS, f"norm must be one of {NORM_KINDS}, got {self.norm!r}")
        require(self.norm_eps > 0, f"norm_eps must be positive, got {self.norm_eps}")
        require(self.pool in POOL_KINDS, f"pool must be one of {POOL_KINDS}, got {self.pool!r}")
        require(
            self.pool != "cls" or self.class_token,
            "pool='cls' needs class_token=True; use pool='mean' without a class token",
        )
        for name in ("dropout", "attention_dropout", "drop_path"):
            value = getattr(self, name)
            require(0.0 <= value < 1.0, f"{name} must be in [0, 1), got {value}")
        require(
            self.layer_scale is None or self.layer_scale > 0,
            f"layer_scale must be positive or None, got {self.layer_scale}",
        )
        require(
            isinstance(self.backend, str) and bool(self.backend.strip()),
            "backend must name a core attention backend, e.g. 'sdpa'",
        )
        for name in ("image_mean", "image_std"):
            values = getattr(self, name)
            values = [0.5] * self.in_channels if values is None else list(values)
            require(
                len(values) == self.in_channels,
                f"{name} needs one value per channel ({self.in_channels}), got {values}",
            )
            setattr(self, name, [float(v) for v in values])
        require(all(s > 0 for s in self.image_std), f"image_std values must be positive, got {self.image_std}")
        self.class_names = checked_class_names(self.class_names, self.num_classes)

    @property
    def grid_size(self) -> int:
        """Patches per side of the training image."""
        return self.image_size // self.patch_size

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patches (the class token, if any)."""
        return 1 if self.class_token else 0

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    def block_spec(self) -> BlockSpec:
        """The pre-norm encoder block of every layer."""
        return block_spec_from(
            self, norm_first=True, qkv_bias=self.qkv_bias, max_len=self.num_prefix_tokens + self.grid_size**2
        )
