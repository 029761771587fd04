"""Configuration of DETR, the detection transformer (no torch import).

Defaults are DETR-R50 of Carion et al. 2020, "End-to-End Object Detection with Transformers"
(section 4 and appendix A.4; facebookresearch/detr ``main.py``): a ResNet-50 backbone with frozen
batch norm (stride 32), width 256, 8 heads, 6 encoder and 6 decoder post-norm layers,
feed-forward 2048, ReLU, dropout 0.1, 100 object queries, normalised 2D sine positions, images
resized to a shorter side of 800 (longer side at most 1333) and normalised with ImageNet
statistics; 91 classes (COCO's category ids, as the released checkpoints).
"""

from __future__ import annotations

from dataclasses import dataclass

from polyformer.core.config import (
    ACTIVATION_KINDS,
    BlockSpec,
    ConfigBase,
    block_spec_from,
    checked_class_names,
    require,
)

__all__ = ["BACKBONE_NORMS", "BACKBONES", "DetrConfig", "POSITION_ENCODINGS"]

# torchvision ResNets: name -> channels of stage 1 (stage s has this many times 2 ** (s - 1))
BACKBONES = {"resnet18": 64, "resnet34": 64, "resnet50": 256, "resnet101": 256}
BACKBONE_NORMS = ("frozen", "batch")
POSITION_ENCODINGS = ("sine", "learned")
LEARNED_GRID = 50  # rows and columns a learned position table covers (DETR's)


@dataclass
class DetrConfig(ConfigBase):
    """A DETR object detector; every field is JSON-serialisable."""

    model_type = "detr"

    num_classes: int = 91  # object classes K (the classifier has K + 1 outputs: the last is "no object")
    class_names: list[str] | None = None  # label names by class index, or None
    backbone: str = "resnet50"  # resnet18 | resnet34 | resnet50 | resnet101 (torchvision layout)
    backbone_stage: int = 4  # last ResNet stage used: 4 = stride 32 (DETR); 3 = stride 16, for small images
    dilation: bool = False  # dilate the last stage instead of striding (DETR-DC5; ResNet-50/101 only)
    backbone_norm: str = "frozen"  # frozen (pretrained statistics, DETR) | batch (trainable, for training from scratch)
    frozen_stages: int = 1  # backbone stages without gradients: 1 = stem and stage 1 (DETR); backbone_stage = all
    d_model: int = 256  # transformer width D
    num_heads: int = 8  # attention heads H
    encoder_layers: int = 6  # encoder depth
    decoder_layers: int = 6  # decoder depth
    d_ff: int = 2048  # feed-forward inner width
    activation: str = "relu"  # feed-forward activation
    norm_eps: float = 1e-5  # epsilon of the layer norms
    dropout: float = 0.1  # dropout on residual branches and inside the feed-forward
    attention_dropout: float = 0.0  # dropout on attention weights
    num_queries: int = 100  # object queries Q: the most objects one image can have
    position: str = "sine"  # sine (normalised, DETR) | learned (50 x 50 row and column tables)
    sigmoid_scores: bool = False  # class scores from per-class sigmoids (trained with the focal loss), not the softmax
    backend: str = "sdpa"  # core attention backend spec
    min_size: int = 800  # images are resized so that their shorter side is this ...
    max_size: int = 1333  # ... unless the longer side would exceed this
    image_mean: list[float] | None = None  # per-channel normalisation mean; None = ImageNet's
    image_std: list[float] | None = None  # per-channel normalisation std; None = ImageNet's

    def __post_init__(self) -> None:
        for name in ("num_classes", "d_model", "num_heads", "encoder_layers", "decoder_layers", "d_ff", "num_queries"):
            value = getattr(self, name)
            require(isinstance(value, int) and value > 0, f"{name} must be a positive integer, got {value!r}")
        require(self.backbone in BACKBONES, f"backbone must be one of {sorted(BACKBONES)}, got {self.backbone!r}")
        require(self.backbone_stage in (2, 3, 4), f"backbone_stage must be 2, 3 or 4, got {self.backbone_stage}")
        require(
            not self.dilation or (self.backbone_stage == 4 and BACKBONES[self.backbone] == 256),
            "dilation (DC5) needs backbone_stage=4 and a bottleneck ResNet (resnet50 or resnet101)",
        )
        require(
            self.backbone_norm in BACKBONE_NORMS,
            f"backbone_norm must be one of {BACKBONE_NORMS}, got {self.backbone_norm!r}",
        )
        require(
            0 <= self.frozen_stages <= self.backbone_stage,
            f"frozen_stages must be between 0 and backbone_stage={self.backbone_stage}, got {self.frozen_stages}",
        )
        require(
            self.d_model % self.num_heads == 0,
            f"num_heads={self.num_heads} must divide d_model={self.d_model}",
        )
        require(self.d_model % 4 == 0, f"d_model must be a multiple of 4 (2D sin/cos pairs), got {self.d_model}")
        require(
            self.activation in ACTIVATION_KINDS,
            f"activation must be one of {ACTIVATION_KINDS}, got {self.activation!r}",
        )
        require(self.position in POSITION_ENCODINGS, f"position must be one of {POSITION_ENCODINGS}")
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            require(0.0 <= value < 1.0, f"{name} must be in [0, 1), got {value}")
        require(
            0 < self.min_size <= self.max_size,
            f"need 0 < min_size <= max_size, got min_size={self.min_size}, max_size={self.max_size}",
        )
        self.image_mean = _per_channel(self.image_mean, [0.485, 0.456, 0.406], "image_mean")
        self.image_std = _per_channel(self.image_std, [0.229, 0.224, 0.225], "image_std")
        require(all(s > 0 for s in self.image_std), f"image_std values must be positive, got {self.image_std}")
        self.class_names = checked_class_names(self.class_names, self.num_classes)

    @property
    def backbone_channels(self) -> int:
        """Channels of the backbone's output feature map."""
        return BACKBONES[self.backbone] * 2 ** (self.backbone_stage - 1)

    @property
    def backbone_stride(self) -> int:
        """Pixels per feature-map cell."""
        return 2 ** (self.backbone_stage + 1) // (2 if self.dilation else 1)

    def block_spec(self) -> BlockSpec:
        """The post-norm block of every encoder and decoder layer."""
        return block_spec_from(self, norm_first=False)

    def label_name(self, index: int) -> str:
        """The name of class ``index`` (its number when the config has no names)."""
        return self.class_names[index] if self.class_names is not None else str(index)


def _per_channel(values: list[float] | None, default: list[float], name: str) -> list[float]:
    values = list(default if values is None else values)
    require(len(values) == 3, f"{name} needs one value per RGB channel, got {values}")
    return [float(v) for v in values]
