"""Start a model from pretrained weights: the backbone loads exactly, the head only where it fits.

Every domain's train command can begin from a checkpoint (``--init``). The family's reader turns
the checkpoint into a state dict under our parameter names (for a ViT:
:func:`polyformer.vision.vit.read_vit_source`); :func:`load_for_finetuning` then loads it into a
freshly built model whose head (its ``head_prefixes``) is sized for the new labels:

- every backbone tensor must be in the checkpoint with the same shape, and the checkpoint must
  hold nothing the model lacks: anything else is an error naming the tensors, never a silently
  half-loaded model;
- the head is loaded when it fits: same shapes and, when both sides know their class names, the
  same classes (rows are reordered when only the order differs). Otherwise the model keeps its
  freshly initialised head and the returned log lines say why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polyformer.core import EncoderForSequenceClassification, EncoderOnlyTransformer

__all__ = ["load_for_finetuning", "sequence_classifier_from_encoder"]

_SHOWN = 5  # tensor names quoted in an error


def _names(names: Sequence[str]) -> str:
    names = sorted(names)
    more = f", ... ({len(names)} in all)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def _is_head(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == prefix or name.startswith(f"{prefix}.") for prefix in prefixes)


def _head_rows(
    own: Mapping[str, Tensor], state: Mapping[str, Tensor], head: list[str], rows: int,
    class_names: Sequence[str] | None, source_class_names: Sequence[str] | None,
) -> tuple[dict[str, Tensor] | None, str]:  # fmt: skip
    """The checkpoint's head tensors to load (or None: keep the new head) and the log line.

    ``rows`` is the head's outputs: the classes, then any extra ones (DETR's "no object"), which
    keep their place when the class rows are reordered.
    """
    classes = len(class_names) if class_names else rows
    missing = [name for name in head if name not in state]
    if missing:
        return None, f"head: new ({classes} classes; the checkpoint has no head) - initialised at random"
    shapes = {name: (tuple(state[name].shape), tuple(own[name].shape)) for name in head}
    if any(theirs != ours for theirs, ours in shapes.values()):
        had = state[head[0]].shape[0] - (rows - classes) if state[head[0]].dim() else "?"
        return None, f"head: new ({classes} classes; checkpoint had {had}) - reinitialised"
    tensors = {name: state[name] for name in head}
    if not class_names or not source_class_names:
        return tensors, f"head: loaded from the checkpoint ({classes} outputs; class names not compared)"
    if list(class_names) == list(source_class_names):
        return tensors, f"head: loaded from the checkpoint (the same {classes} classes)"
    if sorted(class_names) != sorted(source_class_names):
        return None, f"head: new ({classes} classes, other names than the checkpoint's) - reinitialised"
    order = torch.tensor([list(source_class_names).index(name) for name in class_names] + list(range(classes, rows)))
    reordered = {
        name: tensor.index_select(0, order) if tensor.dim() >= 1 and tensor.shape[0] == rows else tensor
        for name, tensor in tensors.items()
    }
    return reordered, f"head: loaded from the checkpoint, rows reordered to the data's class order ({classes} classes)"


def load_for_finetuning(
    model: nn.Module,
    state: Mapping[str, Tensor],
    description: str,
    class_names: Sequence[str] | None = None,
    source_class_names: Sequence[str] | None = None,
) -> list[str]:
    """Load pretrained ``state`` into ``model`` for fine-tuning; see the module docstring.

    Args:
        model: a freshly built model (a core ``PretrainedModel`` declaring ``head_prefixes``),
            its head sized for the new task and initialised.
        state: the pretrained weights under ``model``'s parameter names.
        description: where the weights come from, for the log lines.
        class_names: the new task's classes, in the order of the head's outputs.
        source_class_names: the checkpoint's classes, when it knows them.

    Returns:
        Log lines: what was loaded from where, and whether the head is the checkpoint's or new.

    Raises:
        ValueError: a backbone tensor is missing from ``state`` or has another shape, or
            ``state`` holds tensors that ``model`` does not have.
    """
    prefixes = tuple(getattr(model, "head_prefixes", ()) or ())
    own = model.state_dict()
    head = sorted(name for name in own if _is_head(name, prefixes))
    backbone = [name for name in own if name not in head]
    missing = [name for name in backbone if name not in state]
    unexpected = [name for name in state if name not in own and not _is_head(name, prefixes)]
    mismatched = [
        f"{name} {tuple(state[name].shape)} vs {tuple(own[name].shape)}"
        for name in backbone
        if name in state and state[name].shape != own[name].shape
    ]
    kind = type(model).__name__
    problems = []
    if missing:
        problems.append(f"missing from the checkpoint: {_names(missing)}")
    if unexpected:
        problems.append(f"not in the model: {_names(unexpected)}")
    if mismatched:
        problems.append(f"other shapes (checkpoint vs model): {_names(mismatched)}")
    if problems:
        raise ValueError(
            f"{description} does not fit this {kind}'s backbone: " + "; ".join(problems)
            + ". Use a checkpoint of the same architecture (width, depth, heads, patch size)."
        )  # fmt: skip
    rows = int(own[head[0]].shape[0]) if head and own[head[0]].dim() else 0
    loaded = {name: state[name] for name in backbone}
    lines = [f"init: backbone ({len(backbone)} tensors) loaded from {description}"]
    if head:
        tensors, line = _head_rows(own, state, head, rows, class_names, source_class_names)
        loaded.update(tensors if tensors is not None else {name: own[name] for name in head})
        lines.append(line)
    elif prefixes:
        lines.append("head: none (the model's head has no parameters)")
    model.load_state_dict(loaded, strict=True)
    return lines


def sequence_classifier_from_encoder(
    encoder: EncoderOnlyTransformer, class_names: Sequence[str], description: str, **changes: Any
) -> tuple[EncoderForSequenceClassification, list[str]]:
    """A new sequence classifier over a pretrained encoder (BERT, DNABERT), its backbone loaded.

    The classifier pools as the encoder can: through BERT's pooler when the encoder has one, else
    the mean of the real tokens. ``changes`` are config fields (``dropout``, ``pool``, ...).

    Returns:
        The model and :func:`load_for_finetuning`'s log lines.
    """
    config = encoder.config.replace(num_labels=len(class_names), **changes)
    if encoder.pooler is None:
        config = config.replace(pooler=False, pool="mean")
    model = EncoderForSequenceClassification(config)
    state = {f"backbone.{name}": tensor for name, tensor in encoder.state_dict().items()}
    return model, load_for_finetuning(model, state, description, class_names)
