"""Hugging Face GPT-2 checkpoints <-> polyformer's decoder-only LM (local files only).

The reference is ``transformers.models.gpt2`` (Radford et al. 2019, "Language Models are
Unsupervised Multitask Learners"): learned positions, pre-norm blocks with a final norm,
tanh-approximated GELU, a fused query/key/value projection and an LM head tied to the token
embeddings. GPT-2 stores its projections as ``Conv1D`` weights, (in, out), the transpose of a
``Linear``'s; this module transposes them both ways. It maps names and config fields only and
never imports ``transformers``.

Shape legend: D model dim, V vocabulary.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import Tensor

from polyformer.core import (
    HF_ACTIVATIONS,
    DecoderOnlyTransformer,
    TransformerConfig,
    atomic_directory,
    hf_model_type,
    read_hf_weights,
    rename_by_rules,
)

__all__ = [
    "convert_hf_gpt2_state_dict",
    "gpt2_config_from_hf",
    "hf_gpt2_config",
    "hf_gpt2_state_dict",
    "is_hf_gpt2_directory",
    "load_hf_gpt2",
    "save_hf_gpt2",
]

_BLOCK = r"^h\.(\d+)\."
_RENAMES: list[tuple[str, str]] = [  # (name without "transformer.", ours)
    (r"^wte\.weight$", "decoder.embed.tokens.weight"),
    (r"^wpe\.weight$", "decoder.embed.positions.weight"),
    (_BLOCK + r"ln_1\.", r"decoder.stack.layers.\1.self_attn_norm."),
    (_BLOCK + r"attn\.c_attn\.", r"decoder.stack.layers.\1.self_attn.qkv_proj."),
    (_BLOCK + r"attn\.c_proj\.", r"decoder.stack.layers.\1.self_attn.out_proj."),
    (_BLOCK + r"ln_2\.", r"decoder.stack.layers.\1.ffn_norm."),
    (_BLOCK + r"mlp\.c_fc\.", r"decoder.stack.layers.\1.feed_forward.fc1."),
    (_BLOCK + r"mlp\.c_proj\.", r"decoder.stack.layers.\1.feed_forward.fc2."),
    (r"^ln_f\.", "decoder.stack.final_norm."),
]
_LAYER = r"^decoder\.stack\.layers\.(\d+)\."
_EXPORT_RENAMES: list[tuple[str, str]] = [  # ours -> name without "transformer."
    (r"^decoder\.embed\.tokens\.weight$", "wte.weight"),
    (r"^decoder\.embed\.positions\.weight$", "wpe.weight"),
    (_LAYER + r"self_attn_norm\.", r"h.\1.ln_1."),
    (_LAYER + r"self_attn\.qkv_proj\.", r"h.\1.attn.c_attn."),
    (_LAYER + r"self_attn\.out_proj\.", r"h.\1.attn.c_proj."),
    (_LAYER + r"ffn_norm\.", r"h.\1.ln_2."),
    (_LAYER + r"feed_forward\.fc1\.", r"h.\1.mlp.c_fc."),
    (_LAYER + r"feed_forward\.fc2\.", r"h.\1.mlp.c_proj."),
    (r"^decoder\.stack\.final_norm\.", "ln_f."),
]
_CONV1D = re.compile(r"\.(c_attn|c_proj|c_fc)\.weight$")  # stored (in, out)
_IGNORED = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")  # causal-mask buffers of older checkpoints
_UNSUPPORTED = {  # config flags that change the computation, and the value GPT-2 uses
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
    "add_cross_attention": False,
}


def is_hf_gpt2_directory(directory: str | Path) -> bool:
    """True when ``directory/config.json`` is a Hugging Face GPT-2 config (``model_type`` "gpt2")."""
    return hf_model_type(directory) == "gpt2"


def gpt2_config_from_hf(hf: dict[str, Any]) -> TransformerConfig:
    """Our :class:`TransformerConfig` for a Hugging Face GPT-2 ``config.json``.

    Raises:
        ValueError: a setting this decoder does not implement.
    """
    for key, value in _UNSUPPORTED.items():
        if hf.get(key, value) != value:
            raise ValueError(f"GPT-2 config {key}={hf[key]!r} is not supported (only {value!r})")
    act = hf.get("activation_function", "gelu_new")
    if act not in HF_ACTIVATIONS:
        raise ValueError(f"GPT-2 activation {act!r} is not supported; supported: {sorted(HF_ACTIVATIONS)}")
    width = int(hf.get("n_embd", 768))
    eos = int(hf.get("eos_token_id", 50256))
    return TransformerConfig(
        vocab_size=int(hf.get("vocab_size", 50257)),
        d_model=width,
        num_heads=int(hf.get("n_head", 12)),
        encoder_layers=0,
        decoder_layers=int(hf.get("n_layer", 12)),
        d_ff=int(hf.get("n_inner") or 4 * width),
        activation=HF_ACTIVATIONS[act],
        norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
        norm_first=True,
        dropout=float(hf.get("resid_pdrop", 0.1)),
        attention_dropout=float(hf.get("attn_pdrop", 0.1)),
        position="learned",
        max_len=int(hf.get("n_positions", 1024)),
        scale_embeddings=False,
        tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
        pad_id=int(hf["pad_token_id"]) if hf.get("pad_token_id") is not None else eos,  # GPT-2 has no padding token
        bos_id=int(hf.get("bos_token_id", eos)),
        eos_id=eos,
    )


def convert_hf_gpt2_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a ``GPT2LMHeadModel`` / ``GPT2Model`` state dict to ours, transposing the Conv1D weights.

    Raises:
        ValueError: a tensor has no counterpart here.
    """
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        if name == "lm_head.weight":
            out["decoder.lm_head.weight"] = tensor
            continue
        short = name[len("transformer.") :] if name.startswith("transformer.") else name
        if _IGNORED.match(short):
            continue
        new = rename_by_rules(short, _RENAMES)
        if new is None:
            raise ValueError(f"Hugging Face GPT-2 tensor {name!r} has no counterpart in polyformer's decoder")
        out[new] = tensor.t().contiguous() if _CONV1D.search(short) else tensor
    return out


def load_hf_gpt2(directory: str | Path) -> DecoderOnlyTransformer:
    """Our decoder-only LM with the weights of a local Hugging Face GPT-2 directory, in eval mode.

    Raises:
        FileNotFoundError: no config or weights.
        ValueError: not a GPT-2 config, or weights that do not fit it.
    """
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory / 'config.json'} not found: a Hugging Face model directory holds one")
    if not is_hf_gpt2_directory(directory):
        raise ValueError(f"{directory / 'config.json'} is not a Hugging Face GPT-2 config (model_type 'gpt2')")
    config = gpt2_config_from_hf(json.loads((directory / "config.json").read_text()))
    model = DecoderOnlyTransformer(config)
    model.load_weights(convert_hf_gpt2_state_dict(read_hf_weights(directory)), source=str(directory))
    return model.eval()


def hf_gpt2_config(config: TransformerConfig) -> dict[str, Any]:
    """The Hugging Face ``config.json`` contents for a GPT-2-shaped ``config``.

    Raises:
        ValueError: a setting GPT-2 cannot express (post-norm, other positions, GQA, MoE, ...).
    """
    reverse = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"}
    problems = [
        what
        for what, bad in (
            ("norm_first=False (GPT-2 is pre-norm)", not config.norm_first),
            (f"position={config.position!r} (GPT-2 has learned positions)", config.position != "learned"),
            ("num_kv_heads (grouped-query attention)", config.num_kv_heads not in (None, config.num_heads)),
            (f"norm={config.norm!r}", config.norm != "layernorm"),
            (f"activation={config.activation!r}", config.activation not in reverse),
            ("bias=False", not config.bias),
            ("scale_embeddings=True", config.scale_embeddings),
            ("moe_experts", config.moe_experts > 0),
        )
        if bad
    ]
    if problems:
        raise ValueError("cannot write a Hugging Face GPT-2 config: " + "; ".join(problems))
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": config.vocab_size,
        "n_embd": config.d_model,
        "n_head": config.num_heads,
        "n_layer": config.decoder_layers,
        "n_inner": config.d_ff,
        "n_positions": config.max_len,
        "activation_function": reverse[config.activation],
        "layer_norm_epsilon": config.norm_eps,
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.attention_dropout,
        "bos_token_id": config.bos_id,
        "eos_token_id": config.eos_id,
        "pad_token_id": config.pad_id,
        "tie_word_embeddings": config.tie_embeddings,
    }


def hf_gpt2_state_dict(model: DecoderOnlyTransformer) -> dict[str, Tensor]:
    """Our decoder-only LM's weights under Hugging Face GPT-2 names (Conv1D weights transposed back).

    Raises:
        ValueError: a tensor has no GPT-2 counterpart.
    """
    out: dict[str, Tensor] = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        if name == "decoder.lm_head.weight":
            if not model.config.tie_embeddings:
                out["lm_head.weight"] = tensor.contiguous()
            continue  # tied: transformers ties it to wte on load
        theirs = rename_by_rules(name, _EXPORT_RENAMES)
        if theirs is None:
            raise ValueError(f"polyformer decoder tensor {name!r} has no Hugging Face GPT-2 counterpart")
        out[f"transformer.{theirs}"] = tensor.t().contiguous() if _CONV1D.search(theirs) else tensor.contiguous()
    return out


def save_hf_gpt2(model: DecoderOnlyTransformer, directory: str | Path) -> Path:
    """Write ``model`` as a Hugging Face GPT-2 directory (``config.json`` + ``model.safetensors``), atomically."""
    config = hf_gpt2_config(model.config)
    state = hf_gpt2_state_dict(model)
    with atomic_directory(directory) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    return Path(directory)
