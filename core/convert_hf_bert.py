"""Hugging Face BERT checkpoints <-> the core encoder models, both ways (local files only).

The reference is ``transformers.models.bert`` (Devlin et al. 2019; weights of
google-research/bert). Text (BERT, sentence-transformers models such as all-MiniLM) and bio
(DNABERT, a BERT over k-mers) read the same checkpoints, so the mapping lives here, written
once. This module maps names and config fields only; it never imports ``transformers``.

- :func:`read_hf_bert` reads a ``BertModel`` / ``BertForMaskedLM`` / ``BertForPreTraining`` /
  ``BertForSequenceClassification`` / ``BertForTokenClassification`` directory (``config.json``
  + ``model.safetensors`` or a ``pytorch_model.bin`` read with ``weights_only=True``) into an
  :class:`EncoderConfig`, the renamed weights and the task they fit; :func:`load_hf_bert` builds
  the matching core model with them.
- :func:`save_hf_bert` writes one of our encoder models as a Hugging Face directory that
  ``transformers`` loads with the same outputs.

Names: HF ``bert.encoder.layer.N.attention.self.{query,key,value}`` become our fused
``encoder.layers.N.self_attn.qkv_proj``; the rest is a one-to-one rename (:data:`_RENAMES`).

Shape legend: D model dim, V vocabulary, K labels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import Tensor

from .config import EncoderConfig
from .encoder_models import (
    EncoderForMaskedLM,
    EncoderForSequenceClassification,
    EncoderForTokenClassification,
    EncoderOnlyTransformer,
)
from .multihead import fuse_qkv_state, split_qkv_state
from .pretrained import (
    CONFIG_NAME,
    HF_ACTIVATIONS,
    WEIGHTS_NAME,
    PretrainedModel,
    atomic_directory,
    hf_model_type,
    read_hf_weights,
    rename_by_rules,
)

__all__ = [
    "BERT_TASKS",
    "convert_hf_bert_state_dict",
    "encoder_config_from_hf_bert",
    "hf_bert_config",
    "hf_bert_state_dict",
    "is_hf_bert_directory",
    "load_hf_bert",
    "read_hf_bert",
    "save_hf_bert",
]

# Our task name -> (model class, Hugging Face architecture).
BERT_TASKS: dict[str, tuple[type[PretrainedModel], str]] = {
    "base": (EncoderOnlyTransformer, "BertModel"),
    "masked_lm": (EncoderForMaskedLM, "BertForMaskedLM"),
    "sequence_classification": (EncoderForSequenceClassification, "BertForSequenceClassification"),
    "token_classification": (EncoderForTokenClassification, "BertForTokenClassification"),
}
_ARCHITECTURE_TASKS = {arch: task for task, (_, arch) in BERT_TASKS.items()} | {"BertForPreTraining": "masked_lm"}

_LAYER = r"^encoder\.layer\.(\d+)\."
# (pattern on the name without the "bert." prefix, our backbone-level name); the first match wins.
_RENAMES: list[tuple[str, str]] = [
    (r"^embeddings\.word_embeddings\.", "embed.tokens."),
    (r"^embeddings\.position_embeddings\.weight$", "embed.positions.weight"),
    (r"^embeddings\.token_type_embeddings\.", "embed.token_types."),
    (r"^embeddings\.LayerNorm\.", "embed.norm."),
    (_LAYER + r"attention\.self\.query\.", r"encoder.layers.\1.self_attn.q_proj."),
    (_LAYER + r"attention\.self\.key\.", r"encoder.layers.\1.self_attn.k_proj."),
    (_LAYER + r"attention\.self\.value\.", r"encoder.layers.\1.self_attn.v_proj."),
    (_LAYER + r"attention\.output\.dense\.", r"encoder.layers.\1.self_attn.out_proj."),
    (_LAYER + r"attention\.output\.LayerNorm\.", r"encoder.layers.\1.self_attn_norm."),
    (_LAYER + r"intermediate\.dense\.", r"encoder.layers.\1.feed_forward.fc1."),
    (_LAYER + r"output\.dense\.", r"encoder.layers.\1.feed_forward.fc2."),
    (_LAYER + r"output\.LayerNorm\.", r"encoder.layers.\1.ffn_norm."),
    (r"^pooler\.dense\.", "pooler.0."),
]
_HEAD_RENAMES: list[tuple[str, str]] = [
    (r"^cls\.predictions\.transform\.dense\.", "mlm_head.dense."),
    (r"^cls\.predictions\.transform\.LayerNorm\.", "mlm_head.norm."),
    (r"^cls\.predictions\.decoder\.weight$", "mlm_head.decoder.weight"),
    (r"^cls\.predictions\.bias$", "mlm_head.bias"),
    (r"^classifier\.", "classifier."),
]
# Reference tensors with no counterpart: buffers, the tied copy of the MLM bias, the NSP head.
_IGNORED = ("embeddings.position_ids", "cls.predictions.decoder.bias", "cls.seq_relationship.")
_HEAD_PREFIXES = ("mlm_head.", "classifier.")
# Our backbone-level names -> Hugging Face's (the fused qkv_proj is then split by split_qkv_state).
_EXPORT_RENAMES: list[tuple[str, str]] = [
    (r"^embed\.tokens\.", "embeddings.word_embeddings."),
    (r"^embed\.positions\.weight$", "embeddings.position_embeddings.weight"),
    (r"^embed\.token_types\.", "embeddings.token_type_embeddings."),
    (r"^embed\.norm\.", "embeddings.LayerNorm."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.qkv_proj\.", r"encoder.layer.\1.attention.self.qkv_proj."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"encoder.layer.\1.attention.output.dense."),
    (r"^encoder\.layers\.(\d+)\.self_attn_norm\.", r"encoder.layer.\1.attention.output.LayerNorm."),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.fc1\.", r"encoder.layer.\1.intermediate.dense."),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.fc2\.", r"encoder.layer.\1.output.dense."),
    (r"^encoder\.layers\.(\d+)\.ffn_norm\.", r"encoder.layer.\1.output.LayerNorm."),
    (r"^pooler\.0\.", "pooler.dense."),
]
_HEAD_EXPORT = {
    "mlm_head.dense.": "cls.predictions.transform.dense.",
    "mlm_head.norm.": "cls.predictions.transform.LayerNorm.",
    "mlm_head.bias": "cls.predictions.bias",
    "classifier.": "classifier.",
}
_EXPORTED_ACTIVATIONS = ("gelu", "gelu_new", "relu", "silu")  # the Hugging Face name written for each of ours


def is_hf_bert_directory(directory: str | Path) -> bool:
    """True when ``directory/config.json`` is a Hugging Face BERT config (``model_type`` "bert")."""
    return hf_model_type(directory) == "bert"


def encoder_config_from_hf_bert(hf: dict[str, Any]) -> EncoderConfig:
    """Our :class:`EncoderConfig` for a Hugging Face BERT ``config.json``.

    Raises:
        ValueError: a setting this encoder does not implement (relative positions, an unknown activation).
    """
    act = hf.get("hidden_act", "gelu")
    if act not in HF_ACTIVATIONS:
        raise ValueError(f"Hugging Face BERT activation {act!r} is not supported; supported: {sorted(HF_ACTIVATIONS)}")
    position = hf.get("position_embedding_type", "absolute")
    if position != "absolute":
        raise ValueError(f"BERT position_embedding_type {position!r} is not supported (only 'absolute')")
    labels = hf.get("id2label") or {}
    return EncoderConfig(
        vocab_size=int(hf["vocab_size"]),
        d_model=int(hf["hidden_size"]),
        num_heads=int(hf["num_attention_heads"]),
        num_layers=int(hf["num_hidden_layers"]),
        d_ff=int(hf["intermediate_size"]),
        activation=HF_ACTIVATIONS[act],
        norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
        dropout=float(hf.get("hidden_dropout_prob", 0.1)),
        attention_dropout=float(hf.get("attention_probs_dropout_prob", 0.1)),
        max_len=int(hf.get("max_position_embeddings", 512)),
        type_vocab_size=int(hf.get("type_vocab_size", 2)),
        pad_id=int(hf.get("pad_token_id") or 0),
        num_labels=len(labels) if labels else int(hf.get("num_labels", 2)),
        classifier_dropout=hf.get("classifier_dropout"),
        tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
    )


def convert_hf_bert_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a Hugging Face BERT state dict to ours, fusing q, k, v.

    Backbone tensors get the names of :class:`EncoderOnlyTransformer` (``embed.``, ``encoder.``,
    ``pooler.``); head tensors those of the head models (``mlm_head.``, ``classifier.``).

    Raises:
        ValueError: a tensor has no counterpart here (the checkpoint is another architecture).
    """
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        short = name[len("bert.") :] if name.startswith("bert.") else name
        if short.startswith(_IGNORED):
            continue
        new = rename_by_rules(short, _RENAMES) or rename_by_rules(name, _HEAD_RENAMES)
        if new is None:
            raise ValueError(f"Hugging Face BERT tensor {name!r} has no counterpart in polyformer's encoder")
        out[new] = tensor
    return fuse_qkv_state(out)


def _task_of(hf: dict[str, Any], state: dict[str, Tensor]) -> str:
    for architecture in hf.get("architectures") or []:
        if architecture in _ARCHITECTURE_TASKS:
            return _ARCHITECTURE_TASKS[architecture]
    if any(name.startswith("mlm_head.") for name in state):
        return "masked_lm"
    return "sequence_classification" if "classifier.weight" in state else "base"


def read_hf_bert(directory: str | Path) -> tuple[EncoderConfig, dict[str, Tensor], str]:
    """Config, renamed weights and task (a :data:`BERT_TASKS` key) of a local Hugging Face BERT directory.

    Raises:
        FileNotFoundError: no ``config.json`` or no weights file.
        ValueError: not a BERT config, or weights that are not BERT's.
    """
    directory = Path(directory)
    if not (directory / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{directory / CONFIG_NAME} not found: a Hugging Face model directory holds one")
    if not is_hf_bert_directory(directory):
        raise ValueError(f"{directory / CONFIG_NAME} is not a Hugging Face BERT config (model_type 'bert')")
    hf = json.loads((directory / CONFIG_NAME).read_text())
    config = encoder_config_from_hf_bert(hf)
    state = convert_hf_bert_state_dict(read_hf_weights(directory))
    return config, state, _task_of(hf, state)


def load_hf_bert(directory: str | Path, task: str | None = None) -> PretrainedModel:
    """The core encoder model for a Hugging Face BERT directory, with its weights, in eval mode.

    Args:
        directory: the Hugging Face directory.
        task: a :data:`BERT_TASKS` key; None = the directory's own (its ``architectures``).
            Asking for the bare encoder (``"base"``) drops any head; asking for a head the
            checkpoint lacks is an error.

    Raises:
        ValueError: an unknown task, or weights that do not fit the task's model.
    """
    config, state, own_task = read_hf_bert(directory)
    task = own_task if task is None else task
    if task not in BERT_TASKS:
        raise ValueError(f"unknown BERT task {task!r}; choose one of {sorted(BERT_TASKS)}")
    model_class = BERT_TASKS[task][0]
    if "pooler.0.weight" not in state and task in ("base", "token_classification"):
        config = config.replace(pooler=False, pool="mean")  # as BertForMaskedLM / ForTokenClassification save
    if task == "base":
        state = {name: tensor for name, tensor in state.items() if not name.startswith(_HEAD_PREFIXES)}
    else:
        backbone = {f"backbone.{n}": t for n, t in state.items() if not n.startswith(_HEAD_PREFIXES)}
        heads = {n: t for n, t in state.items() if n.startswith(_HEAD_PREFIXES)}
        if task == "masked_lm":
            backbone = {n: t for n, t in backbone.items() if not n.startswith("backbone.pooler.")}
            heads = {n: t for n, t in heads.items() if n.startswith("mlm_head.")}
        else:
            heads = {n: t for n, t in heads.items() if n.startswith("classifier.")}
        state = {**backbone, **heads}
    model = model_class(config)
    model.load_weights(state, source=str(directory))
    return model.eval()


def hf_bert_config(config: EncoderConfig, task: str = "base") -> dict[str, Any]:
    """The Hugging Face ``config.json`` contents for ``config`` and a :data:`BERT_TASKS` task.

    Raises:
        ValueError: a setting BERT cannot express (pre-norm, rotary/ALiBi positions, GQA, no biases, ...).
    """
    reverse = {ours: theirs for theirs, ours in HF_ACTIVATIONS.items() if theirs in _EXPORTED_ACTIVATIONS}
    mean_pool = config.pool != "cls"
    problems = [
        what
        for what, bad in (
            ("norm_first=True (BERT is post-norm)", config.norm_first),
            (f"position={config.position!r} (BERT has learned positions)", config.position != "learned"),
            ("num_kv_heads (grouped-query attention)", config.num_kv_heads not in (None, config.num_heads)),
            (f"norm={config.norm!r}", config.norm != "layernorm"),
            (f"activation={config.activation!r}", config.activation not in reverse),
            ("bias=False", not config.bias),
            ("embedding_norm=False", not config.embedding_norm),
            ("type_vocab_size=0", config.type_vocab_size == 0),
            ("pool='mean' (BERT classifies the pooler's output)", task == "sequence_classification" and mean_pool),
        )
        if bad
    ]
    if problems:
        raise ValueError("cannot write a Hugging Face BERT config: " + "; ".join(problems))
    return {
        "model_type": "bert",
        "architectures": [BERT_TASKS[task][1]],
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "intermediate_size": config.d_ff,
        "hidden_act": reverse[config.activation],
        "hidden_dropout_prob": config.dropout,
        "attention_probs_dropout_prob": config.attention_dropout,
        "max_position_embeddings": config.max_len,
        "type_vocab_size": config.type_vocab_size,
        "layer_norm_eps": config.norm_eps,
        "pad_token_id": config.pad_id,
        "position_embedding_type": "absolute",
        "classifier_dropout": config.classifier_dropout,
        "num_labels": config.num_labels,
        "id2label": {str(i): f"LABEL_{i}" for i in range(config.num_labels)},
        "label2id": {f"LABEL_{i}": i for i in range(config.num_labels)},
        "tie_word_embeddings": config.tie_embeddings,
    }


def hf_bert_state_dict(model: PretrainedModel) -> tuple[dict[str, Tensor], str]:
    """Our encoder model's weights under Hugging Face BERT names, and its task.

    Raises:
        ValueError: ``model`` is not one of the :data:`BERT_TASKS` models.
    """
    task = next((t for t, (cls, _) in BERT_TASKS.items() if type(model) is cls), None)
    if task is None:
        raise ValueError(f"{type(model).__name__} has no Hugging Face BERT counterpart; expected one of "
                         f"{[cls.__name__ for cls, _ in BERT_TASKS.values()]}")  # fmt: skip
    prefix = "" if task == "base" else "bert."
    out: dict[str, Tensor] = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        head = next((ours for ours in _HEAD_EXPORT if name.startswith(ours)), None)
        if head is not None:
            out[_HEAD_EXPORT[head] + name[len(head) :]] = tensor.contiguous()
            continue
        if name == "mlm_head.decoder.weight":
            if not model.config.tie_embeddings:
                out["cls.predictions.decoder.weight"] = tensor.contiguous()
            continue  # tied: transformers ties it to the word embeddings on load
        short = name[len("backbone.") :] if name.startswith("backbone.") else name
        new = rename_by_rules(short, _EXPORT_RENAMES)
        if new is None:
            raise ValueError(f"polyformer encoder tensor {name!r} has no Hugging Face BERT counterpart")
        out[prefix + new] = tensor.contiguous()
    return split_qkv_state(out, parts=("query", "key", "value")), task


def save_hf_bert(model: PretrainedModel, directory: str | Path) -> Path:
    """Write ``model`` as a Hugging Face BERT directory (``config.json`` + ``model.safetensors``), atomically.

    ``transformers``' ``AutoModel``/``BertFor...`` ``from_pretrained(directory)`` then gives the same
    outputs. Tokenizer files are the caller's to add.

    Raises:
        ValueError: the model or its config has no BERT counterpart (see :func:`hf_bert_config`).
    """
    state, task = hf_bert_state_dict(model)
    config = hf_bert_config(model.config, task)
    with atomic_directory(directory) as tmp:
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
    return Path(directory)
