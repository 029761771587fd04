"""Hugging Face ``Wav2Vec2Model`` / ``Wav2Vec2ForCTC`` / ``Wav2Vec2ForPreTraining`` directories -> ours (local files).

Names are mapped and q/k/v fused; the position conv's weight norm is read in both of transformers' spellings
(``parametrizations.weight.original0/1`` and the older ``weight_g``/``weight_v``). This module never imports
``transformers``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor

from polyformer.core import HF_ACTIVATIONS, fuse_qkv_state, read_hf_weights, rename_by_rules

from .config import Wav2Vec2Config

__all__ = [
    "convert_hf_wav2vec2_state_dict",
    "is_hf_wav2vec2_directory",
    "load_hf_wav2vec2",
    "wav2vec2_config_from_hf",
]

_LAYER = r"^encoder\.layers\.(\d+)\."
_RENAMES: list[tuple[str, str]] = [  # (Hugging Face name without "wav2vec2.", ours without "wav2vec2.")
    (r"^feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_encoder.layers.\1.conv."),
    (r"^feature_extractor\.conv_layers\.(\d+)\.layer_norm\.", r"feature_encoder.layers.\1.norm."),
    (r"^feature_projection\.layer_norm\.", "feature_norm."),
    (r"^feature_projection\.projection\.", "feature_projection."),
    (r"^masked_spec_embed$", "mask_embedding"),
    (r"^encoder\.pos_conv_embed\.conv\.(parametrizations\.weight\.original0|weight_g)$", "encoder.position.weight_g"),
    (r"^encoder\.pos_conv_embed\.conv\.(parametrizations\.weight\.original1|weight_v)$", "encoder.position.weight_v"),
    (r"^encoder\.pos_conv_embed\.conv\.bias$", "encoder.position.bias"),
    (_LAYER + r"attention\.(q_proj|k_proj|v_proj|out_proj)\.", r"encoder.stack.layers.\1.self_attn.\2."),
    (_LAYER + r"layer_norm\.", r"encoder.stack.layers.\1.self_attn_norm."),
    (_LAYER + r"feed_forward\.intermediate_dense\.", r"encoder.stack.layers.\1.feed_forward.fc1."),
    (_LAYER + r"feed_forward\.output_dense\.", r"encoder.stack.layers.\1.feed_forward.fc2."),
    (_LAYER + r"final_layer_norm\.", r"encoder.stack.layers.\1.ffn_norm."),
]
# Heads, outside the "wav2vec2." prefix (the same names in both projects except the CTC head).
_HEADS = {"lm_head.weight": "ctc_head.weight", "lm_head.bias": "ctc_head.bias"}
_HEAD_PREFIXES = ("quantizer.", "project_hid.", "project_q.")


def _read_config(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def is_hf_wav2vec2_directory(directory: str | Path) -> bool:
    """True when ``directory/config.json`` is a Hugging Face wav2vec 2.0 config."""
    data = _read_config(Path(directory))
    return data is not None and data.get("model_type") == "wav2vec2" and "feat_extract_norm" in data


def wav2vec2_config_from_hf(hf: dict[str, Any]) -> Wav2Vec2Config:
    """Our :class:`Wav2Vec2Config` for a Hugging Face wav2vec 2.0 ``config.json``.

    Raises:
        ValueError: not a wav2vec 2.0 config, or parts this model does not implement (adapters, another conv
            activation, feature-axis masking).
    """
    if hf.get("model_type") != "wav2vec2":
        raise ValueError(f"model_type {hf.get('model_type')!r} is not 'wav2vec2'")
    activation = hf.get("hidden_act", "gelu")
    problems = [
        what
        for what, bad in (
            ("adapters (add_adapter)", bool(hf.get("add_adapter")) or hf.get("adapter_attn_dim") is not None),
            (f"feat_extract_activation {hf.get('feat_extract_activation')!r}", hf.get("feat_extract_activation",
                                                                                    "gelu") != "gelu"),
            (f"hidden_act {activation!r}", activation not in HF_ACTIVATIONS),
            ("feature-axis masking (mask_feature_prob > 0)", float(hf.get("mask_feature_prob", 0.0)) > 0),
        )
        if bad
    ]  # fmt: skip
    if problems:
        raise ValueError("Hugging Face wav2vec 2.0 config not supported: " + "; ".join(problems))
    pad = hf.get("pad_token_id")
    return Wav2Vec2Config(
        conv_dim=[int(x) for x in hf.get("conv_dim", [512] * 7)],
        conv_kernel=[int(x) for x in hf.get("conv_kernel", [10, 3, 3, 3, 3, 2, 2])],
        conv_stride=[int(x) for x in hf.get("conv_stride", [5, 2, 2, 2, 2, 2, 2])],
        conv_bias=bool(hf.get("conv_bias", False)),
        feature_norm=str(hf.get("feat_extract_norm", "group")),
        d_model=int(hf.get("hidden_size", 768)),
        num_heads=int(hf.get("num_attention_heads", 12)),
        encoder_layers=int(hf.get("num_hidden_layers", 12)),
        d_ff=int(hf.get("intermediate_size", 3072)),
        activation=HF_ACTIVATIONS[activation],
        norm_first=bool(hf.get("do_stable_layer_norm", False)),
        norm_eps=float(hf.get("layer_norm_eps", 1e-5)),
        pos_conv_kernel=int(hf.get("num_conv_pos_embeddings", 128)),
        pos_conv_groups=int(hf.get("num_conv_pos_embedding_groups", 16)),
        dropout=float(hf.get("hidden_dropout", 0.1)),
        attention_dropout=float(hf.get("attention_dropout", 0.1)),
        feature_dropout=float(hf.get("feat_proj_dropout", 0.0)),
        layer_drop=float(hf.get("layerdrop", 0.1)),
        mask_time_prob=float(hf.get("mask_time_prob", 0.05)) / int(hf.get("mask_time_length", 10)),  # per start
        mask_time_length=int(hf.get("mask_time_length", 10)),
        mask_time_min_spans=int(hf.get("mask_time_min_masks", 2)),
        vocab_size=int(hf.get("vocab_size", 32)),
        blank_id=int(pad) if pad is not None else 0,
        quantizer_groups=int(hf.get("num_codevector_groups", 2)),
        quantizer_entries=int(hf.get("num_codevectors_per_group", 320)),
        codevector_dim=int(hf.get("codevector_dim", 256)),
        proj_codevector_dim=int(hf.get("proj_codevector_dim", 256)),
        num_negatives=int(hf.get("num_negatives", 100)),
        contrastive_temperature=float(hf.get("contrastive_logits_temperature", 0.1)),
        diversity_weight=float(hf.get("diversity_loss_weight", 0.1)),
        quantizer_dropout=float(hf.get("feat_quantizer_dropout", 0.0)),
    )


def convert_hf_wav2vec2_state_dict(state: dict[str, Tensor], prefix: str = "wav2vec2.") -> dict[str, Tensor]:
    """Rename a Hugging Face wav2vec 2.0 state dict to ours (q, k, v fused; the pre-stack norm placed by layout).

    ``prefix`` is where our model keeps the bare model (``"wav2vec2."`` for the CTC and pretraining models,
    ``""`` for :class:`~polyformer.speech.wav2vec2.Wav2Vec2Model`); a bare Hugging Face ``Wav2Vec2Model`` has no
    prefix, its task models ``wav2vec2.``.

    Raises:
        ValueError: a tensor has no counterpart here.
    """
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        if name in _HEADS:
            out[_HEADS[name]] = tensor
            continue
        if name.startswith(_HEAD_PREFIXES):
            out[name] = tensor
            continue
        short = name.removeprefix("wav2vec2.")
        if short in ("encoder.layer_norm.weight", "encoder.layer_norm.bias"):
            new = "encoder.NORM." + short.rsplit(".", 1)[1]  # placed by layout in _place_encoder_norm
        else:
            new = rename_by_rules(short, _RENAMES)
        if new is None:
            raise ValueError(f"Hugging Face wav2vec 2.0 tensor {name!r} has no counterpart in polyformer's wav2vec 2.0")
        out[prefix + new] = tensor
    return fuse_qkv_state(out)


def _place_encoder_norm(state: dict[str, Tensor], config: Wav2Vec2Config, prefix: str) -> dict[str, Tensor]:
    """Transformers keeps one ``encoder.layer_norm``: before the stack in BASE, after it (our final norm) in LARGE."""
    target = "encoder.stack.final_norm." if config.norm_first else "encoder.norm."
    return {name.replace(f"{prefix}encoder.NORM.", prefix + target): t for name, t in state.items()}


def load_hf_wav2vec2(directory: str | Path, task: str | None = None):
    """A Hugging Face wav2vec 2.0 directory as our model (eval mode).

    Args:
        directory: ``config.json`` + ``model.safetensors`` (or ``pytorch_model.bin``).
        task: ``"ctc"`` (:class:`Wav2Vec2ForCTC`), ``"pretraining"`` (:class:`Wav2Vec2ForPreTraining`) or
            ``"base"`` (:class:`Wav2Vec2Model`); None = what the weights hold.

    Raises:
        ValueError: not a wav2vec 2.0 directory, unsupported settings, or a task the weights lack.
        WeightsFileError: a damaged weights file.
    """
    from .model import Wav2Vec2ForCTC, Wav2Vec2Model
    from .pretraining import Wav2Vec2ForPreTraining

    directory = Path(directory)
    hf = _read_config(directory)
    if hf is None or hf.get("model_type") != "wav2vec2":
        raise ValueError(f"{directory} is not a Hugging Face wav2vec 2.0 directory (config.json model_type)")
    state = read_hf_weights(directory)
    held = "ctc" if "lm_head.weight" in state else "pretraining" if "quantizer.codevectors" in state else "base"
    task = task or held
    classes = {"ctc": Wav2Vec2ForCTC, "pretraining": Wav2Vec2ForPreTraining, "base": Wav2Vec2Model}
    if task not in classes:
        raise ValueError(f"unknown wav2vec 2.0 task {task!r}; choose one of {sorted(classes)}")
    if task != held and task != "base":
        raise ValueError(f"{directory} holds a wav2vec 2.0 {held} model, not a {task} model")
    config = wav2vec2_config_from_hf(hf)
    if task == "base":  # the bare model of any directory: heads left out
        state = {k: v for k, v in state.items() if k not in _HEADS and not k.startswith(_HEAD_PREFIXES)}
    prefix = "" if task == "base" else "wav2vec2."
    converted = _place_encoder_norm(convert_hf_wav2vec2_state_dict(state, prefix), config, prefix)
    mask_name = prefix + "mask_embedding"
    model = classes[task](config)
    if mask_name not in converted:  # transformers leaves it out when no masking is configured
        converted[mask_name] = model.state_dict()[mask_name].zero_()
    model.load_weights(converted, source=str(directory))
    return model.eval()
