"""Read a Hugging Face ``ViTForImageClassification`` directory into a polyformer ViT config and state dict.

The reference is ``transformers.models.vit`` (Dosovitskiy et al. 2021; weights ported from
google-research/vision_transformer). This module maps parameter names only; it never imports
``transformers``. Both naming schemes are understood: the checkpoint layout written by every
transformers release (``vit.encoder.layer.N.attention.attention.query``) and the in-memory
layout of transformers 5 (``vit.layers.N.attention.q_proj``). The separate query, key and
value projections are joined into our fused ``qkv_proj``.

Shape legend: D model dim, T tokens.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from torch import Tensor

from polyformer.core import HF_ACTIVATIONS, fuse_qkv_state, read_hf_weights, rename_by_rules

from .config import ViTConfig

__all__ = ["convert_hf_state_dict", "is_hf_vit_directory", "read_hf_vit", "vit_config_from_hf"]

# (pattern on the name without the "vit." prefix, our name); the first match wins.
_RENAMES: list[tuple[str, str]] = [
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed.weight"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (
        r"^(?:encoder\.layer|layers)\.(\d+)\.attention\.(?:attention\.query|q_proj)\.",
        r"encoder.layers.\1.self_attn.q_proj.",
    ),
    (
        r"^(?:encoder\.layer|layers)\.(\d+)\.attention\.(?:attention\.key|k_proj)\.",
        r"encoder.layers.\1.self_attn.k_proj.",
    ),
    (
        r"^(?:encoder\.layer|layers)\.(\d+)\.attention\.(?:attention\.value|v_proj)\.",
        r"encoder.layers.\1.self_attn.v_proj.",
    ),
    (
        r"^(?:encoder\.layer|layers)\.(\d+)\.attention\.(?:output\.dense|o_proj)\.",
        r"encoder.layers.\1.self_attn.out_proj.",
    ),
    (r"^(?:encoder\.layer|layers)\.(\d+)\.(?:intermediate\.dense|mlp\.fc1)\.", r"encoder.layers.\1.feed_forward.fc1."),
    (r"^(?:encoder\.layer|layers)\.(\d+)\.(?:output\.dense|mlp\.fc2)\.", r"encoder.layers.\1.feed_forward.fc2."),
    (r"^(?:encoder\.layer|layers)\.(\d+)\.layernorm_before\.", r"encoder.layers.\1.self_attn_norm."),
    (r"^(?:encoder\.layer|layers)\.(\d+)\.layernorm_after\.", r"encoder.layers.\1.ffn_norm."),
    (r"^layernorm\.", "norm."),
    (r"^classifier\.", "head."),
]
# Parameters of the reference that a classifier does not use.
_UNUSED = (r"^pooler\.", r"^embeddings\.mask_token$")


def is_hf_vit_directory(directory: str | Path) -> bool:
    """True when ``directory/config.json`` is a Hugging Face ViT config (``model_type`` "vit" with ``hidden_size``)."""
    path = Path(directory) / "config.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("model_type") == "vit" and "hidden_size" in data


def _square(value: Any, name: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f"only square {name} is supported, got {value}")
        value = value[0]
    return int(value)


def vit_config_from_hf(hf: dict[str, Any], preprocessor: dict[str, Any] | None = None) -> ViTConfig:
    """Our :class:`ViTConfig` for a Hugging Face ViT ``config.json`` (and ``preprocessor_config.json``).

    Args:
        hf: the parsed Hugging Face config.
        preprocessor: the parsed preprocessor config, for the normalisation mean/std, or None.
    """
    act = hf.get("hidden_act", "gelu")
    if act not in HF_ACTIVATIONS:
        raise ValueError(f"Hugging Face ViT activation {act!r} is not supported; supported: {sorted(HF_ACTIVATIONS)}")
    id2label = hf.get("id2label") or {str(i): f"LABEL_{i}" for i in range(int(hf.get("num_labels", 2)))}
    names = [str(id2label[k]) for k in sorted(id2label, key=int)]
    if names == [f"LABEL_{i}" for i in range(len(names))]:
        names = None  # the Hugging Face placeholder names carry no information
    channels = int(hf.get("num_channels", 3))
    fields: dict[str, Any] = dict(
        image_size=_square(hf.get("image_size", 224), "image_size"),
        patch_size=_square(hf.get("patch_size", 16), "patch_size"),
        in_channels=channels,
        num_classes=len(id2label),
        d_model=int(hf["hidden_size"]),
        num_layers=int(hf.get("num_hidden_layers", 12)),
        num_heads=int(hf.get("num_attention_heads", 12)),
        d_ff=int(hf.get("intermediate_size", 3072)),
        activation=HF_ACTIVATIONS[act],
        norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
        qkv_bias=bool(hf.get("qkv_bias", True)),
        dropout=float(hf.get("hidden_dropout_prob", 0.0)),
        attention_dropout=float(hf.get("attention_probs_dropout_prob", 0.0)),
        class_names=names,
        pos_antialias=False,  # interpolate_pos_encoding uses plain bicubic
    )
    for key in ("image_mean", "image_std"):
        values = (preprocessor or {}).get(key)
        if isinstance(values, (list, tuple)) and len(values) == channels:
            fields[key] = [float(v) for v in values]
    return ViTConfig(**fields)


def convert_hf_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a ``ViTForImageClassification`` (or ``ViTModel``) state dict to ours, fusing q, k, v.

    Raises:
        ValueError: a parameter has no counterpart here (the checkpoint is another architecture).
    """
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        short = name[len("vit.") :] if name.startswith("vit.") else name
        if any(re.search(p, short) for p in _UNUSED):
            continue
        new = rename_by_rules(short, _RENAMES)
        if new is None:
            raise ValueError(f"Hugging Face ViT parameter {name!r} has no counterpart in polyformer's ViT")
        out[new] = tensor
    return fuse_qkv_state(out)


def read_hf_vit(directory: str | Path) -> tuple[ViTConfig, dict[str, Tensor]]:
    """Config and renamed weights of a local Hugging Face ViT directory (nothing is downloaded)."""
    directory = Path(directory)
    hf = json.loads((directory / "config.json").read_text())
    preprocessor = None
    pre_path = directory / "preprocessor_config.json"
    if pre_path.is_file():
        preprocessor = json.loads(pre_path.read_text())
    config = vit_config_from_hf(hf, preprocessor)
    state = convert_hf_state_dict(read_hf_weights(directory))
    if "head.weight" not in state:  # a ViTModel without a classifier: a feature extractor
        config = config.replace(num_classes=0, class_names=None)
    return config, state
