"""DETR, the detection transformer, built from polyformer.core blocks.

Carion et al. 2020, "End-to-End Object Detection with Transformers"
(https://arxiv.org/abs/2005.12872; reference code facebookresearch/detr ``models/detr.py``,
``models/transformer.py``; Hugging Face ``DetrForObjectDetection``). A ResNet turns the image
into a feature map, a 1x1 convolution projects it to the transformer width, and a post-norm
encoder mixes its cells with 2D positions added to the queries and keys of every layer. A
post-norm decoder turns a fixed set of learned object queries (starting from zeros, with the
learned query vectors as their positions) into one prediction each: class logits with an extra
"no object" class, and a box (centre x, centre y, width, height as fractions of the image's
real, unpadded size) from a 3-layer MLP. The outputs of the earlier decoder layers, through the
shared final norm and heads, are the auxiliary predictions that the set loss also trains.

Images of different sizes are batched by padding; ``pixel_mask`` marks the real pixels, and
padded feature-map cells are never attended to.

Shape legend: B images, C channels, H x W image size, h x w feature map, S = h*w cells,
D model dim, Q object queries, K classes, L decoder layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

from polyformer.core import PretrainedModel, build_decoder, build_encoder, build_norm

from .config import LEARNED_GRID, DetrConfig
from .convert_hf import is_hf_detr_directory, read_hf_detr
from .position import LearnedRowColumnPosition, sine_position_encoding

__all__ = ["DETR", "DetrOutput", "ResNetBackbone", "BoxHead"]


class ResNetBackbone(nn.Module):
    """A torchvision ResNet up to ``config.backbone_stage``, with frozen or trainable batch norm.

    The stem and the first ``frozen_stages`` stages get no gradients (DETR trains stages 2-4);
    their batch norm keeps its statistics in training mode too. Parameter names are torchvision's
    (``conv1``, ``bn1``, ``layer1.0.conv1``, ...), which timm's ResNets share.
    """

    def __init__(self, config: DetrConfig):
        super().__init__()
        norm = FrozenBatchNorm2d if config.backbone_norm == "frozen" else nn.BatchNorm2d
        options: dict[str, Any] = {"weights": None, "norm_layer": norm}
        if config.dilation:
            options["replace_stride_with_dilation"] = [False, False, True]
        resnet = getattr(torchvision.models, config.backbone)(**options)
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.stages = [f"layer{i}" for i in range(1, config.backbone_stage + 1)]
        for name in self.stages:
            setattr(self, name, getattr(resnet, name))
        self.frozen: list[nn.Module] = []
        self.freeze(config.frozen_stages)

    def freeze(self, stages: int) -> None:
        """No gradients for the stem and the first ``stages`` stages (0 = none); their statistics stay fixed."""
        if stages > 0:
            self.frozen = [self.conv1, self.bn1] + [getattr(self, f"layer{i}") for i in range(1, stages + 1)]
        for module in self.frozen:
            module.requires_grad_(False)
            module.eval()

    def train(self, mode: bool = True) -> ResNetBackbone:
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self

    def forward(self, images: Tensor) -> Tensor:
        """Images (B, 3, H, W) -> features (B, C, h, w)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        for name in self.stages:
            x = getattr(self, name)(x)
        return x


class BoxHead(nn.Module):
    """DETR's box regressor: Linear-ReLU-Linear-ReLU-Linear to 4 numbers, then a sigmoid (cxcywh in [0, 1])."""

    def __init__(self, dim: int, num_layers: int = 3):
        super().__init__()
        widths = [dim] * num_layers + [4]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x).sigmoid()


@dataclass
class DetrOutput:
    """What :class:`DETR` predicts.

    Attributes:
        logits: (B, Q, K + 1) class logits; the last class is "no object".
        boxes: (B, Q, 4) boxes as (centre x, centre y, width, height), fractions of the real image size.
        aux: the same pair from each earlier decoder layer (for the auxiliary losses); empty
            unless asked for (or training).
    """

    logits: Tensor
    boxes: Tensor
    aux: list[tuple[Tensor, Tensor]] = field(default_factory=list)


class DETR(PretrainedModel):
    """DETR detector: images (B, 3, H, W) and their pixel mask -> :class:`DetrOutput`.

    Args:
        config: the architecture; default DETR-R50.

    Attributes:
        backbone: the :class:`ResNetBackbone`.
        input_proj: 1x1 convolution from the backbone's channels to D.
        position: the learned row/column tables (``position="learned"``), else None (sine).
        encoder: post-norm :class:`~polyformer.core.TransformerEncoder` over the feature cells.
        query_pos: the learned object queries (Q, D), added to queries and keys in the decoder.
        decoder: post-norm non-causal :class:`~polyformer.core.TransformerDecoder`.
        decoder_norm: the norm after every decoder layer whose output is read.
        class_head: linear to K + 1 class logits.
        box_head: the :class:`BoxHead`.
    """

    config_class = DetrConfig
    config: DetrConfig
    head_prefixes = ("class_head",)

    def __init__(self, config: DetrConfig | None = None):
        config = DetrConfig() if config is None else config
        super().__init__(config)
        dim = config.d_model
        self.backbone = ResNetBackbone(config)
        self.input_proj = nn.Conv2d(config.backbone_channels, dim, kernel_size=1)
        self.position = LearnedRowColumnPosition(dim // 2, LEARNED_GRID) if config.position == "learned" else None
        spec = config.block_spec()
        self.encoder = build_encoder(spec, config.encoder_layers, final_norm=False)
        self.query_pos = nn.Embedding(config.num_queries, dim)
        self.decoder = build_decoder(spec, config.decoder_layers, causal=False, final_norm=False)
        self.decoder_norm = build_norm("layernorm", dim, config.norm_eps)
        self.class_head = nn.Linear(dim, config.num_classes + 1)
        self.box_head = BoxHead(dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DETR's init: Xavier-uniform matrices in the transformer; PyTorch defaults elsewhere."""
        for stack in (self.encoder, self.decoder):
            for param in stack.parameters():
                if param.dim() > 1:
                    nn.init.xavier_uniform_(param)

    def freeze_backbone(self) -> None:
        """Train the transformer and heads only: the whole backbone gets no gradients (recorded in the config)."""
        self.config.frozen_stages = self.config.backbone_stage
        self.backbone.freeze(self.config.backbone_stage)

    def feature_mask(self, pixel_mask: Tensor, size: tuple[int, int]) -> Tensor:
        """The real cells (B, h, w) of a feature map of ``size`` (nearest resampling of the pixel mask)."""
        return F.interpolate(pixel_mask[None].float(), size=size)[0].bool()

    def _check_inputs(self, images: Tensor, pixel_mask: Tensor | None) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"DETR expects RGB images shaped (B, 3, H, W), got {tuple(images.shape)}")
        if pixel_mask is None:
            return torch.ones(images.shape[0], *images.shape[-2:], dtype=torch.bool, device=images.device)
        if pixel_mask.shape != (images.shape[0], *images.shape[-2:]):
            raise ValueError(
                f"pixel_mask must be shaped (B, H, W) = {(images.shape[0], *images.shape[-2:])}, "
                f"got {tuple(pixel_mask.shape)}"
            )
        return pixel_mask.bool()

    def encode(self, images: Tensor, pixel_mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Backbone and encoder: the memory (B, S, D), its positions (B, S, D) and its real cells (B, S)."""
        pixel_mask = self._check_inputs(images, pixel_mask)
        features = self.backbone(images)  # (B, C, h, w)
        mask = self.feature_mask(pixel_mask, features.shape[-2:])  # (B, h, w)
        x = self.input_proj(features).flatten(2).transpose(1, 2)  # (B, S, D)
        if self.position is None:
            pos = sine_position_encoding(mask, self.config.d_model // 2, normalize=True)
        else:
            pos = self.position(mask)
        pos = pos.flatten(2).transpose(1, 2).to(x.dtype)  # (B, S, D)
        real = mask.flatten(1)  # (B, S)
        memory = self.encoder(x, mask=self._key_mask(real), pos=pos).last_hidden_state
        return memory, pos, real

    @staticmethod
    def _key_mask(real: Tensor) -> Tensor | None:
        """Key-padding mask (B, 1, 1, S), or None when nothing is padded (the fast path)."""
        return None if bool(real.all()) else real[:, None, None, :]

    def forward(self, images: Tensor, pixel_mask: Tensor | None = None, aux: bool | None = None) -> DetrOutput:
        """Detect objects.

        Args:
            images: normalised images (B, 3, H, W), padded to a common size.
            pixel_mask: (B, H, W), True on real pixels; None = no padding.
            aux: also return every earlier decoder layer's predictions; default while training.
        """
        aux = self.training if aux is None else aux
        memory, pos, real = self.encode(images, pixel_mask)
        query_pos = self.query_pos.weight[None].expand(memory.shape[0], -1, -1).to(memory.dtype)  # (B, Q, D)
        out = self.decoder(
            torch.zeros_like(query_pos),
            memory=memory,
            memory_mask=self._key_mask(real),
            pos=query_pos,
            memory_pos=pos,
            output_hidden_states=aux,
        )
        states = torch.stack(out.hidden_states[1:]) if aux else out.last_hidden_state[None]  # (L or 1, B, Q, D)
        states = self.decoder_norm(states)
        logits, boxes = self.class_head(states), self.box_head(states)  # (L, B, Q, K + 1), (L, B, Q, 4)
        return DetrOutput(logits[-1], boxes[-1], [(logits[i], boxes[i]) for i in range(len(states) - 1)])

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu", **overrides: Any) -> DETR:
        """Load a polyformer DETR directory or a Hugging Face ``DetrForObjectDetection`` one.

        Args:
            directory: holds ``config.json`` and ``model.safetensors`` (ours), or a Hugging Face
                DETR ``config.json`` with ``model.safetensors`` or ``pytorch_model.bin`` (read with
                ``weights_only=True``) and a timm-style ResNet backbone.
            map_location: device for the weights.
            **overrides: config fields to change, e.g. ``backend="eager"``.

        Raises:
            FileNotFoundError: a file the directory needs is missing.
            ValueError: the config or the weights do not describe a DETR this class can build.
        """
        if not is_hf_detr_directory(directory):
            return super().from_pretrained(directory, map_location, **overrides)
        config, state = read_hf_detr(directory)
        if overrides:
            config = config.replace(**overrides)
        model = cls(config)
        model.load_weights(state, source=str(directory))
        return model.to(map_location).eval()
