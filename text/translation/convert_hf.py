"""Hugging Face Marian (``MarianMTModel``) and BART (``BartForConditionalGeneration``) checkpoints -> core's
encoder-decoder transformer (local files only).

References: ``transformers.models.marian`` (Junczys-Dowmunt et al. 2018, Marian NMT; the OPUS-MT
models of Tiedemann & Thottingal 2020) and ``transformers.models.bart`` (Lewis et al. 2020). Both are
post-norm encoder-decoders with one shared vocabulary, an LM head tied to it and a learned bias
on the logits (``final_logits_bias``). Marian scales token embeddings by sqrt(D) and adds fixed
sinusoidal positions (saved in the checkpoint, so they load as a position table); BART adds
learned positions (its table starts two rows late: row ``i + 2`` is position ``i``) and a norm
after each embedding sum. This module maps names and config fields only; it never imports
``transformers``.

Shape legend: D model dim, V vocabulary.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polyformer.core import (
    HF_ACTIVATIONS,
    EncoderDecoderTransformer,
    TransformerConfig,
    fuse_qkv_state,
    hf_model_type,
    read_hf_weights,
    rename_by_rules,
    sinusoidal_table,
)

__all__ = [
    "SEQ2SEQ_MODEL_TYPES",
    "convert_hf_seq2seq_state_dict",
    "is_hf_seq2seq_directory",
    "load_hf_seq2seq",
    "marian_position_table",
    "seq2seq_config_from_hf",
]

SEQ2SEQ_MODEL_TYPES = ("marian", "bart")
BART_POSITION_OFFSET = 2  # BartLearnedPositionalEmbedding's first two rows are never used for a position

_ENC, _DEC = r"^encoder\.layers\.(\d+)\.", r"^decoder\.layers\.(\d+)\."
_RENAMES: list[tuple[str, str]] = [  # (name without "model.", ours)
    (r"^shared\.weight$", "decoder.embed.tokens.weight"),
    (r"^decoder\.embed_tokens\.weight$", "decoder.embed.tokens.weight"),
    (r"^encoder\.embed_tokens\.weight$", "src_embed.tokens.weight"),
    (r"^encoder\.embed_positions\.weight$", "src_embed.positions.weight"),
    (r"^decoder\.embed_positions\.weight$", "decoder.embed.positions.weight"),
    (r"^encoder\.layernorm_embedding\.", "src_embed.norm."),
    (r"^decoder\.layernorm_embedding\.", "decoder.embed.norm."),
    (_ENC + r"self_attn\.(q_proj|k_proj|v_proj|out_proj)\.", r"encoder.layers.\1.self_attn.\2."),
    (_ENC + r"self_attn_layer_norm\.", r"encoder.layers.\1.self_attn_norm."),
    (_ENC + r"(fc1|fc2)\.", r"encoder.layers.\1.feed_forward.\2."),
    (_ENC + r"final_layer_norm\.", r"encoder.layers.\1.ffn_norm."),
    (_DEC + r"self_attn\.(q_proj|k_proj|v_proj|out_proj)\.", r"decoder.stack.layers.\1.self_attn.\2."),
    (_DEC + r"self_attn_layer_norm\.", r"decoder.stack.layers.\1.self_attn_norm."),
    (_DEC + r"encoder_attn\.(q_proj|k_proj|v_proj|out_proj)\.", r"decoder.stack.layers.\1.cross_attn.\2."),
    (_DEC + r"encoder_attn_layer_norm\.", r"decoder.stack.layers.\1.cross_attn_norm."),
    (_DEC + r"(fc1|fc2)\.", r"decoder.stack.layers.\1.feed_forward.\2."),
    (_DEC + r"final_layer_norm\.", r"decoder.stack.layers.\1.ffn_norm."),
]


def is_hf_seq2seq_directory(directory: str | Path) -> bool:
    """True when ``directory/config.json`` is a Hugging Face Marian or BART config."""
    return hf_model_type(directory) in SEQ2SEQ_MODEL_TYPES


def seq2seq_config_from_hf(hf: dict[str, Any]) -> TransformerConfig:
    """Our :class:`TransformerConfig` for a Hugging Face Marian or BART ``config.json``.

    Raises:
        ValueError: another model type, or a setting this model does not implement.
    """
    kind = hf.get("model_type")
    if kind not in SEQ2SEQ_MODEL_TYPES:
        raise ValueError(f"model_type {kind!r} is not one of {SEQ2SEQ_MODEL_TYPES}")
    heads = {int(hf.get("encoder_attention_heads", 16)), int(hf.get("decoder_attention_heads", 16))}
    widths = {int(hf.get("encoder_ffn_dim", 4096)), int(hf.get("decoder_ffn_dim", 4096))}
    problems = [
        what
        for what, bad in (
            ("different encoder and decoder head counts", len(heads) > 1),
            ("different encoder and decoder feed-forward widths", len(widths) > 1),
            ("normalize_before / add_final_layer_norm (mBART's pre-norm)",
             hf.get("normalize_before", False) or hf.get("add_final_layer_norm", False)),
            (f"activation_function {hf.get('activation_function')!r}", hf.get("activation_function", "gelu")
             not in HF_ACTIVATIONS),
        )
        if bad
    ]  # fmt: skip
    if problems:
        raise ValueError(f"Hugging Face {kind} config not supported: " + "; ".join(problems))
    vocab = int(hf["vocab_size"])
    shared = bool(hf.get("share_encoder_decoder_embeddings", True))
    target_vocab = int(hf.get("decoder_vocab_size") or vocab) if not shared else vocab
    return TransformerConfig(
        vocab_size=target_vocab,
        src_vocab_size=None if shared else vocab,
        d_model=int(hf["d_model"]),
        num_heads=heads.pop(),
        encoder_layers=int(hf.get("encoder_layers", 12)),
        decoder_layers=int(hf.get("decoder_layers", 12)),
        d_ff=widths.pop(),
        activation=HF_ACTIVATIONS[hf.get("activation_function", "gelu")],
        norm_eps=1e-5,
        norm_first=False,
        dropout=float(hf.get("dropout", 0.1)),
        attention_dropout=float(hf.get("attention_dropout", 0.0)),
        position="learned",  # Marian's sinusoidal table is in the checkpoint; BART's is learned
        max_len=int(hf.get("max_position_embeddings", 1024)),
        scale_embeddings=bool(hf.get("scale_embedding", False)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
        embedding_norm=kind == "bart",
        logits_bias=True,
        pad_id=int(hf.get("pad_token_id", 1)),
        bos_id=int(hf.get("decoder_start_token_id", hf.get("bos_token_id", 0))),  # the decoder's first token
        eos_id=int(hf.get("eos_token_id", 2)),
    )


def convert_hf_seq2seq_state_dict(state: dict[str, Tensor], kind: str) -> dict[str, Tensor]:
    """Rename a Marian / BART state dict to ours (q, k, v fused; BART's position offset removed).

    Raises:
        ValueError: a tensor has no counterpart here.
    """
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        if name == "final_logits_bias":
            out["decoder.logits_bias"] = tensor.reshape(-1)
            continue
        if name == "lm_head.weight":
            out["decoder.lm_head.weight"] = tensor
            continue
        short = name[len("model.") :] if name.startswith("model.") else name
        new = rename_by_rules(short, _RENAMES)
        if new is None:
            raise ValueError(f"Hugging Face {kind} tensor {name!r} has no counterpart in polyformer's encoder-decoder")
        if kind == "bart" and re.search(r"embed_positions\.weight$", short):
            tensor = tensor[BART_POSITION_OFFSET:]
        out[new] = tensor
    return fuse_qkv_state(out)


def marian_position_table(max_len: int, dim: int) -> Tensor:
    """Marian's fixed sinusoidal positions (max_len, D): the sines in the first half, the cosines in the
    second (core's :func:`~polyformer.core.sinusoidal_table` interleaves the same values)."""
    table = sinusoidal_table(max_len, dim)
    return torch.cat([table[:, 0::2], table[:, 1::2]], dim=1)


def load_hf_seq2seq(directory: str | Path) -> EncoderDecoderTransformer:
    """Core's encoder-decoder with the weights of a local Marian or BART directory, in eval mode.

    Raises:
        FileNotFoundError: no config or weights.
        ValueError: not a Marian/BART config, or weights that do not fit it.
    """
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory / 'config.json'} not found: a Hugging Face model directory holds one")
    hf = json.loads((directory / "config.json").read_text())
    config = seq2seq_config_from_hf(hf)
    state = convert_hf_seq2seq_state_dict(read_hf_weights(directory), hf["model_type"])
    if config.src_vocab_size is None:
        state.pop("src_embed.tokens.weight", None)  # the shared matrix, tied to the decoder's
    if hf["model_type"] == "marian":  # transformers does not save the fixed table: rebuild it
        table = marian_position_table(config.max_len, config.d_model)
        for name in ("src_embed.positions.weight", "decoder.embed.positions.weight"):
            state.setdefault(name, table)
    model = EncoderDecoderTransformer(config)
    model.load_weights(state, source=str(directory))
    return model.eval()
