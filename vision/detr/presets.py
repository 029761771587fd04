"""Named DETR presets, registered in the core preset registry (listed by ``polyformer info``).

``detr_resnet50`` is the paper's model (Carion et al. 2020, DETR-R50: 41M parameters);
``detr_resnet18`` swaps in the lighter backbone. ``detr_small_resnet18`` is for small images
(a few hundred pixels) and small data sets trained from scratch: ResNet-18 up to stage 3 (stride
16, so a 256-pixel image still has a 16 x 16 feature map) with trainable batch norm, a width-128
transformer of 3 + 3 layers and 20 queries. Every preset takes config overrides as keywords,
e.g. ``detr_resnet50(num_classes=3, num_queries=20)``.
"""

from __future__ import annotations

from typing import Any

from polyformer.core import register_preset

from .config import DetrConfig
from .model import DETR

__all__ = ["detr_resnet18", "detr_resnet50", "detr_small_resnet18"]


def _build(fields: dict[str, Any], overrides: dict[str, Any]) -> DETR:
    return DETR(DetrConfig(**{**fields, **overrides}))


@register_preset("detr_resnet50", "detr", "DETR-R50 of Carion et al., 100 queries, 91 COCO classes (41M parameters)")
def detr_resnet50(**overrides: Any) -> DETR:
    return _build({}, overrides)


@register_preset("detr_resnet18", "detr", "DETR with a ResNet-18 backbone, 100 queries, 91 classes (29M parameters)")
def detr_resnet18(**overrides: Any) -> DETR:
    return _build(dict(backbone="resnet18"), overrides)


@register_preset(
    "detr_small_resnet18",
    "detr",
    "DETR for small images trained from scratch: ResNet-18 to stride 16, width 128, 3+3 layers, 20 queries (4.3M)",
)
def detr_small_resnet18(**overrides: Any) -> DETR:
    fields = dict(
        backbone="resnet18",
        backbone_stage=3,
        backbone_norm="batch",
        frozen_stages=0,
        d_model=128,
        num_heads=8,
        encoder_layers=3,
        decoder_layers=3,
        d_ff=512,
        num_queries=20,
        num_classes=3,
        min_size=256,
        max_size=384,
    )
    return _build(fields, overrides)
