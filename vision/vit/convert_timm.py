"""Read a timm ``VisionTransformer`` state dict into a polyformer ViT config and state dict.

The reference is timm's ``timm/models/vision_transformer.py`` (Wightman; Dosovitskiy et al.
2021). This module parses the timm model name (``vit_{tiny,small,medium,base,large,huge}_patch{P}_{S}``,
optionally with a ``.tag`` such as ``.augreg_in21k_ft_in1k``) for the architecture, reads the
rest (channels, classes, layer scale, pooling) from the weights, and maps parameter names. It
never imports timm. timm's fused query/key/value matrix ``qkv`` (3D, D) is our ``qkv_proj``
as it is (same q, k, v row order), so it is loaded once and never split or re-joined.

Shape legend: D model dim.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from torch import Tensor

from polyformer.core import read_state_dict, rename_by_rules

from .config import ViTConfig

__all__ = ["TIMM_VIT_SIZES", "convert_timm_state_dict", "read_timm_vit", "timm_name_from_state", "vit_config_from_timm"]

# size name -> (width D, depth L, heads H); the MLP is 4*D wide in all of them.
TIMM_VIT_SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "medium": (512, 12, 8),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "huge": (1280, 32, 16),
}
_NAME = re.compile(r"^vit_(?P<size>[a-z]+)_patch(?P<patch>\d+)_(?P<image>\d+)$")

_RENAMES: list[tuple[str, str]] = [
    (r"^cls_token$", "cls_token"),
    (r"^pos_embed$", "pos_embed.weight"),
    (r"^patch_embed\.proj\.", "patch_embed.proj."),
    (r"^blocks\.(\d+)\.norm1\.", r"encoder.layers.\1.self_attn_norm."),
    (r"^blocks\.(\d+)\.norm2\.", r"encoder.layers.\1.ffn_norm."),
    (r"^blocks\.(\d+)\.attn\.qkv\.", r"encoder.layers.\1.self_attn.qkv_proj."),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"encoder.layers.\1.self_attn.out_proj."),
    (r"^blocks\.(\d+)\.mlp\.fc1\.", r"encoder.layers.\1.feed_forward.fc1."),
    (r"^blocks\.(\d+)\.mlp\.fc2\.", r"encoder.layers.\1.feed_forward.fc2."),
    (r"^blocks\.(\d+)\.ls1\.gamma$", r"encoder.layers.\1.self_attn_residual.scale.gamma"),
    (r"^blocks\.(\d+)\.ls2\.gamma$", r"encoder.layers.\1.ffn_residual.scale.gamma"),
    (r"^(?:norm|fc_norm)\.", "norm."),
    (r"^head\.", "head."),
]


def vit_config_from_timm(name: str, state: dict[str, Tensor]) -> ViTConfig:
    """Our :class:`ViTConfig` for the timm model ``name`` whose weights are ``state``.

    Raises:
        ValueError: the name is not a plain timm ViT, or the weights do not fit the name.
    """
    arch = name.split(".", 1)[0]
    match = _NAME.match(arch)
    if match is None or match["size"] not in TIMM_VIT_SIZES:
        raise ValueError(
            f"unsupported timm model name {name!r}; expected vit_<size>_patch<P>_<image size> with size one of "
            f"{sorted(TIMM_VIT_SIZES)}, e.g. 'vit_tiny_patch16_224' "
            "(variants with registers, gap or clip are not supported)"
        )
    for unsupported in ("reg_token", "attn.q_norm.weight", "norm_pre.weight"):
        if any(key.endswith(unsupported) for key in state):
            raise ValueError(
                f"timm weights for {name!r} contain {unsupported!r}, which polyformer's ViT does not implement"
            )
    dim, depth, heads = TIMM_VIT_SIZES[match["size"]]
    patch, image = int(match["patch"]), int(match["image"])
    if "patch_embed.proj.weight" not in state:
        raise ValueError(
            f"timm weights for {name!r} have no 'patch_embed.proj.weight'; is this a VisionTransformer state dict?"
        )
    proj = state["patch_embed.proj.weight"]  # (D, C, P, P)
    found_depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    if tuple(proj.shape[::2]) != (dim, patch) or found_depth != depth:
        raise ValueError(
            f"timm weights do not fit {arch}: expected width {dim}, patch {patch}, depth {depth}; "
            f"found width {proj.shape[0]}, patch {proj.shape[2]}, depth {found_depth}"
        )
    class_token = "cls_token" in state
    prefix = 1 if class_token else 0
    expected_tokens = prefix + (image // patch) ** 2
    if state["pos_embed"].shape[1] != expected_tokens:
        raise ValueError(
            f"timm weights have {state['pos_embed'].shape[1]} positions, but {arch} needs {expected_tokens} "
            "(was the model trained with no_embed_class or another image size?)"
        )
    return ViTConfig(
        image_size=image,
        patch_size=patch,
        in_channels=int(proj.shape[1]),
        num_classes=int(state["head.weight"].shape[0]) if "head.weight" in state else 0,
        d_model=dim,
        num_layers=depth,
        num_heads=heads,
        d_ff=4 * dim,
        norm_eps=1e-6,
        qkv_bias="blocks.0.attn.qkv.bias" in state,
        class_token=class_token,
        pool="mean" if "fc_norm.weight" in state or not class_token else "cls",
        layer_scale=1e-5 if "blocks.0.ls1.gamma" in state else None,
    )


def timm_name_from_state(state: dict[str, Tensor]) -> str:
    """The timm name ``vit_<size>_patch<P>_<S>`` of a timm ``VisionTransformer`` state dict.

    The size comes from the width (``patch_embed.proj.weight`` is (D, C, P, P)) and the depth
    (the ``blocks.N`` indices), which must both match one of :data:`TIMM_VIT_SIZES`; the patch
    side P from the same weight; the image side S from the position rows after the class token
    (a square grid of (S / P)^2 patches).

    Raises:
        ValueError: the state dict is not a timm ViT, or its shape matches no named timm size.
    """
    proj = state.get("patch_embed.proj.weight")
    if proj is None or proj.dim() != 4 or "pos_embed" not in state:
        hint = ""
        if "pos_embed.weight" in state:
            hint = " (these look like polyformer ViT weights: give the model directory with its config.json)"
        elif any(key.startswith(("vit.", "embeddings.")) for key in state):
            hint = " (these look like Hugging Face ViT weights: give the directory with their config.json)"
        raise ValueError(
            "not a timm VisionTransformer state dict: expected 'patch_embed.proj.weight' (D, C, P, P) and "
            f"'pos_embed'; found {len(state)} tensors such as {sorted(state)[:4]}{hint}"
        )
    width, patch = int(proj.shape[0]), int(proj.shape[2])
    if proj.shape[2] != proj.shape[3]:
        raise ValueError(f"timm ViT patches must be square, got patch_embed.proj.weight {tuple(proj.shape)}")
    depth = len({key.split(".")[1] for key in state if key.startswith("blocks.")})
    size = next((s for s, (dim, layers, _) in TIMM_VIT_SIZES.items() if (dim, layers) == (width, depth)), None)
    if size is None:
        known = ", ".join(f"{s} (width {d}, depth {L})" for s, (d, L, _) in TIMM_VIT_SIZES.items())
        raise ValueError(
            f"timm ViT weights have width {width} and depth {depth}, which match no named timm ViT size; "
            f"known sizes: {known}"
        )
    prefix = 1 if "cls_token" in state else 0
    patches = int(state["pos_embed"].shape[1]) - prefix
    side = math.isqrt(max(patches, 0))
    if patches <= 0 or side * side != patches:
        raise ValueError(
            f"timm ViT weights have {patches} patch positions (after {prefix} class token), not a square grid "
            "(models with no_embed_class or registers are not supported)"
        )
    return f"vit_{size}_patch{patch}_{side * patch}"


def convert_timm_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a timm ``VisionTransformer`` state dict to ours.

    Raises:
        ValueError: a parameter has no counterpart here.
    """
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        new = rename_by_rules(name, _RENAMES)
        if new is None:
            raise ValueError(f"timm ViT parameter {name!r} has no counterpart in polyformer's ViT")
        out[new] = tensor
    return out


def read_timm_vit(name: str, path: str | Path) -> tuple[ViTConfig, dict[str, Tensor]]:
    """Config and renamed weights for the timm model ``name`` stored at ``path`` (nothing is downloaded)."""
    state = read_state_dict(path)
    return vit_config_from_timm(name, state), convert_timm_state_dict(state)
