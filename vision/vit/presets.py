"""Named ViT presets, registered in the core preset registry (listed by ``polyformer info``).

The ImageNet sizes follow Dosovitskiy et al. 2021 (Base) and Touvron et al. 2021 (DeiT Tiny and
Small, the same shapes timm uses for ``vit_tiny_patch16_224`` and ``vit_small_patch16_224``).
The small-image presets are for 28x28 grayscale (MNIST, Fashion-MNIST) and 32x32 RGB
(CIFAR-style) images with 4x4 patches. Every preset takes config overrides as keywords, e.g.
``vit_nano_patch4_28(num_classes=5, drop_path=0.1)``.
"""

from __future__ import annotations

from typing import Any

from polyformer.core import register_preset

from .config import ViTConfig
from .model import ViT

__all__ = [
    "vit_base_patch16_224",
    "vit_cifar_patch4_32",
    "vit_mnist_patch4_28",
    "vit_nano_patch4_28",
    "vit_nano_patch4_32",
    "vit_small_patch16_224",
    "vit_tiny_patch16_224",
]


def _build(fields: dict[str, Any], overrides: dict[str, Any]) -> ViT:
    return ViT(ViTConfig(**{**fields, **overrides}))


@register_preset("vit_tiny_patch16_224", "vit", "ViT-Ti/16, 224x224 RGB, 1000 classes (5.7M parameters)")
def vit_tiny_patch16_224(**overrides: Any) -> ViT:
    return _build(dict(d_model=192, num_layers=12, num_heads=3, d_ff=768), overrides)


@register_preset("vit_small_patch16_224", "vit", "ViT-S/16, 224x224 RGB, 1000 classes (22M parameters)")
def vit_small_patch16_224(**overrides: Any) -> ViT:
    return _build(dict(d_model=384, num_layers=12, num_heads=6, d_ff=1536), overrides)


@register_preset(
    "vit_base_patch16_224", "vit", "ViT-B/16 of Dosovitskiy et al., 224x224 RGB, 1000 classes (86M parameters)"
)
def vit_base_patch16_224(**overrides: Any) -> ViT:
    return _build({}, overrides)


_GRAY_28 = dict(image_size=28, patch_size=4, in_channels=1, num_classes=10)
_RGB_32 = dict(image_size=32, patch_size=4, in_channels=3, num_classes=10)


@register_preset(
    "vit_nano_patch4_28", "vit", "4-layer, width-64 ViT for 28x28 grayscale images, 10 classes (0.14M parameters)"
)
def vit_nano_patch4_28(**overrides: Any) -> ViT:
    return _build(dict(_GRAY_28, d_model=64, num_layers=4, num_heads=4, d_ff=128), overrides)


@register_preset(
    "vit_mnist_patch4_28", "vit", "6-layer, width-128 ViT for 28x28 grayscale images, 10 classes (0.8M parameters)"
)
def vit_mnist_patch4_28(**overrides: Any) -> ViT:
    return _build(dict(_GRAY_28, d_model=128, num_layers=6, num_heads=4, d_ff=256), overrides)


@register_preset(
    "vit_nano_patch4_32", "vit", "4-layer, width-64 ViT for 32x32 RGB images, 10 classes (0.14M parameters)"
)
def vit_nano_patch4_32(**overrides: Any) -> ViT:
    return _build(dict(_RGB_32, d_model=64, num_layers=4, num_heads=4, d_ff=128), overrides)


@register_preset(
    "vit_cifar_patch4_32", "vit", "6-layer, width-192 ViT for 32x32 RGB images, 10 classes (1.8M parameters)"
)
def vit_cifar_patch4_32(**overrides: Any) -> ViT:
    return _build(dict(_RGB_32, d_model=192, num_layers=6, num_heads=3, d_ff=384), overrides)
