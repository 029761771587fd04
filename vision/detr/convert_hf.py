"""Read a Hugging Face ``DetrForObjectDetection`` directory into a polyformer DETR config and state dict.

The reference is ``transformers.models.detr`` (Carion et al. 2020; weights ported from
facebookresearch/detr). This module maps names only and never imports ``transformers``. It reads
the checkpoint layout every transformers release writes (``model.backbone.conv_encoder.model.*``,
``self_attn.out_proj``, ``fc1``) and the in-memory names of transformers 5
(``model.backbone.model.*``, ``o_proj``, ``mlp.fc1``). The backbone must be a timm ResNet (the
released DETR checkpoints use one): its parameter names are torchvision's. The separate query,
key and value projections are joined into our fused ``qkv_proj``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor

from polyformer.core import HF_ACTIVATIONS, fuse_qkv_state, read_hf_weights, rename_by_rules

from .config import BACKBONES, DetrConfig

__all__ = ["convert_hf_state_dict", "detr_config_from_hf", "is_hf_detr_directory", "read_hf_detr"]

_LAYER = r"^model\.(encoder|decoder)\.layers\.(\d+)\."
# (pattern, our name); the first match wins.
_RENAMES: list[tuple[str, str]] = [
    (r"^model\.backbone\.(?:conv_encoder\.)?model\.", "backbone."),
    (r"^model\.(?:backbone\.)?position_embedding\.row_embeddings\.", "position.row_embed."),
    (r"^model\.(?:backbone\.)?position_embedding\.column_embeddings\.", "position.col_embed."),
    (r"^model\.input_projection\.", "input_proj."),
    (r"^model\.query_position_embeddings\.", "query_pos."),
    (_LAYER + r"self_attn\.(q_proj|k_proj|v_proj)\.", r"\1.layers.\2.self_attn.\3."),
    (_LAYER + r"self_attn\.(?:out_proj|o_proj)\.", r"\1.layers.\2.self_attn.out_proj."),
    (_LAYER + r"self_attn_layer_norm\.", r"\1.layers.\2.self_attn_norm."),
    (_LAYER + r"encoder_attn\.(q_proj|k_proj|v_proj)\.", r"\1.layers.\2.cross_attn.\3."),
    (_LAYER + r"encoder_attn\.(?:out_proj|o_proj)\.", r"\1.layers.\2.cross_attn.out_proj."),
    (_LAYER + r"encoder_attn_layer_norm\.", r"\1.layers.\2.cross_attn_norm."),
    (_LAYER + r"(?:mlp\.)?(fc1|fc2)\.", r"\1.layers.\2.feed_forward.\3."),
    (_LAYER + r"final_layer_norm\.", r"\1.layers.\2.ffn_norm."),
    (r"^model\.decoder\.layernorm\.", "decoder_norm."),
    (r"^class_labels_classifier\.", "class_head."),
    (r"^bbox_predictor\.layers\.", "box_head.layers."),
]
_UNUSED = ("num_batches_tracked",)


def is_hf_detr_directory(directory: str | Path) -> bool:
    """True when ``directory/config.json`` is a Hugging Face DETR config (model type "detr", with layer counts)."""
    try:
        data = json.loads((Path(directory) / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("model_type") == "detr" and "encoder_attention_heads" in data


def _backbone(hf: dict[str, Any]) -> tuple[str, int]:
    """The timm ResNet name and the last stage it feeds to the transformer."""
    sub = hf.get("backbone_config") or {}
    if not hf.get("use_timm_backbone", sub.get("model_type") == "timm_backbone"):
        raise ValueError(
            "this Hugging Face DETR uses a transformers ResNet backbone; only timm ResNet backbones "
            f"({sorted(BACKBONES)}, as in the released DETR checkpoints) can be loaded"
        )
    name = hf.get("backbone") or sub.get("backbone")
    if name not in BACKBONES:
        raise ValueError(f"backbone {name!r} is not supported; DETR here runs on {sorted(BACKBONES)}")
    indices = sub.get("out_indices") or hf.get("out_indices") or [1, 2, 3, 4]
    return name, int(indices[-1])


def _one(hf: dict[str, Any], encoder_key: str, decoder_key: str) -> Any:
    if hf[encoder_key] != hf[decoder_key]:
        raise ValueError(f"{encoder_key}={hf[encoder_key]} differs from {decoder_key}={hf[decoder_key]}; not supported")
    return hf[encoder_key]


def detr_config_from_hf(hf: dict[str, Any], num_classes: int | None = None) -> DetrConfig:
    """Our :class:`DetrConfig` for a Hugging Face DETR ``config.json``.

    ``num_classes`` (the class head's rows minus "no object") wins over the config's labels, which
    transformers leaves out of ``config.json`` when they are its defaults.

    Raises:
        ValueError: the config uses something this DETR does not have (another backbone, unequal
            encoder and decoder widths, an unknown activation).
    """
    backbone, stage = _backbone(hf)
    if int(hf.get("num_channels", 3)) != 3:
        raise ValueError(f"only RGB DETR models are supported, got num_channels={hf.get('num_channels')}")
    activation = hf.get("activation_function", "relu")
    if activation not in HF_ACTIVATIONS:
        raise ValueError(f"activation {activation!r} is not supported; choose one of {sorted(HF_ACTIVATIONS)}")
    id2label = {int(k): str(v) for k, v in (hf.get("id2label") or {}).items()}
    if num_classes is None:
        num_classes = max(id2label) + 1 if id2label else int(hf.get("num_labels", 2))  # transformers' default: 2
    names = [id2label.get(i, str(i)) for i in range(num_classes)]
    return DetrConfig(
        num_classes=num_classes,
        class_names=names,
        backbone=backbone,
        backbone_stage=stage,
        dilation=bool(hf.get("dilation", False)),
        d_model=int(hf["d_model"]),
        num_heads=int(_one(hf, "encoder_attention_heads", "decoder_attention_heads")),
        encoder_layers=int(hf["encoder_layers"]),
        decoder_layers=int(hf["decoder_layers"]),
        d_ff=int(_one(hf, "encoder_ffn_dim", "decoder_ffn_dim")),
        activation=HF_ACTIVATIONS[activation],
        dropout=float(hf.get("dropout", 0.1)),
        attention_dropout=float(hf.get("attention_dropout", 0.0)),
        num_queries=int(hf.get("num_queries", 100)),
        position=hf.get("position_embedding_type", "sine"),
    )


def convert_hf_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a Hugging Face DETR state dict to ours and fuse the attention projections.

    Raises:
        ValueError: a parameter has no counterpart here (another head, a segmentation model).
    """
    renamed: dict[str, Tensor] = {}
    unknown = []
    for name, tensor in state.items():
        if name.endswith(_UNUSED):
            continue
        new = rename_by_rules(name, _RENAMES)
        if new is None:
            unknown.append(name)
        else:
            renamed[new] = tensor
    if unknown:
        raise ValueError(
            f"parameters with no DETR counterpart (is this DetrForObjectDetection?): {sorted(unknown)[:8]}"
        )
    return fuse_qkv_state(renamed)


def read_hf_detr(directory: str | Path) -> tuple[DetrConfig, dict[str, Tensor]]:
    """The config and converted weights of a Hugging Face ``DetrForObjectDetection`` directory."""
    directory = Path(directory)
    hf = json.loads((directory / "config.json").read_text())
    state = read_hf_weights(directory)
    head = state.get("class_labels_classifier.weight")
    config = detr_config_from_hf(hf, None if head is None else head.shape[0] - 1)
    return config, convert_hf_state_dict(state)
