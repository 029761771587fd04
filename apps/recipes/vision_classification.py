"""Image classification with a ViT, explicitly: build the model, build the data, train, evaluate, save.

A recipe is data: a TOML config (``apps/recipes/configs/*.toml``) with a ``[model]`` table (a
ViT preset plus config overrides, or ``init``: pretrained weights to fine-tune), a ``[data]``
table (:class:`ImageDataSettings`) and a ``[train]`` table
(:class:`~polyformer.apps.engine.TrainingConfig`), changed by ``key=value`` overrides. The
shipped checkpoint ``apps/checkpoints/vit_fashion_mnist`` comes from ``fashion_mnist_embedded.toml``.

Shape legend: B batch, C channels, S image side, K classes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from polyformer.apps.engine import (
    SPLIT_FILE,
    ClassificationTask,
    HeldOutSplit,
    TrainingConfig,
    TrainResult,
    evaluate,
    init_distributed,
    load_for_finetuning,
    resolve_checkpoint,
    resolve_precision,
    run_of,
    seed_everything,
    train,
)
from polyformer.apps.recipes.recipe_loader import load_recipe_file, recipe_to_dict
from polyformer.apps.recipes.typed_config import ConfigError, check_fields
from polyformer.core import create_model
from polyformer.core.presets import list_presets
from polyformer.vision.data import (
    BatchMixer,
    ImageClassificationDataset,
    build_eval_transform,
    build_train_transform,
    open_image_dataset,
)
from polyformer.vision.vit import ViT, ViTConfig, adapt_vit_state, read_vit_source

__all__ = [
    "ImageDataSettings",
    "VisionClassificationRecipe",
    "build_datasets",
    "build_model",
    "evaluate_classifier",
    "initial_model",
    "load_recipe",
    "open_eval_dataset",
    "open_eval_split",
    "plot_confusion_matrix",
    "skipped_images",
    "train_vision_classifier",
]


@dataclass
class ImageDataSettings:
    """Where the images come from and how training images are augmented."""

    train: str = "embedded"  # "embedded", "fashion-mnist", an image folder, an IDX folder or a CSV file
    eval: str = ""  # validation data; "" = the test split of `train`, or a held-out part when it has none
    val_fraction: float = 0.1  # share of the training images held out when the data has no test split
    train_limit: int = 0  # use only this many training images (a seeded random subset); 0 = all
    eval_limit: int = 0  # use only this many validation images; 0 = all
    augment: str = "none"  # none | randaugment | trivialaugment | autoaugment
    crop_scale: tuple[float, float] = (0.8, 1.0)  # area range of the random resized crop; [1, 1] = resize only
    hflip: float = 0.5  # probability of a horizontal flip
    random_erasing: float = 0.0  # probability of erasing a rectangle
    mixup_alpha: float = 0.0  # Mixup Beta(alpha, alpha); 0 = off
    cutmix_alpha: float = 0.0  # CutMix Beta(alpha, alpha); 0 = off
    mix_prob: float = 1.0  # probability that a batch is mixed (when Mixup or CutMix is on)
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    skip_bad: bool = False  # skip unreadable images (counted) instead of stopping

    def __post_init__(self) -> None:
        self.crop_scale = tuple(self.crop_scale)
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.train_limit < 0 or self.eval_limit < 0:
            raise ValueError("data.train_limit and data.eval_limit must be >= 0 (0 = all images)")


@dataclass
class VisionClassificationRecipe:
    """A full recipe: model, data and training settings."""

    name: str  # the config's name, e.g. "fashion_mnist_embedded"
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "vit_nano_patch4_28"})  # preset + ViTConfig fields
    data: ImageDataSettings = field(default_factory=ImageDataSettings)
    train: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        return recipe_to_dict(self)


# [model] keys besides the ViTConfig fields: the preset of a new model, or the checkpoint to fine-tune
# (anything read_vit_source reads; its architecture replaces the preset's)
MODEL_KEYS: dict[str, Any] = {"preset": str, "init": str}
KIND_NAMES = {"polyformer": "polyformer", "huggingface": "Hugging Face", "timm": "timm"}
FROM_DATA = ("num_classes", "class_names")  # ViTConfig fields the data sets


def _check_model_table(table: dict[str, Any]) -> dict[str, Any]:
    """The [model] table checked against ViTConfig's fields and the known ViT presets."""
    model = check_fields(ViTConfig, table, "model", extra=MODEL_KEYS)
    for name in FROM_DATA:
        if name in model:
            raise ConfigError(f"model.{name} is set from the training data's classes; remove it")
    presets = [p.name for p in list_presets() if p.name.startswith("vit_")]
    if "init" in model:
        if not model["init"].strip():
            raise ConfigError("model.init: expected a checkpoint directory or weights file, got ''")
        return model
    if "preset" not in model:
        raise ConfigError(f"model.preset is missing; give one of: {', '.join(presets)} (or model.init=CHECKPOINT)")
    if model["preset"] not in presets:
        raise ConfigError(f"model.preset: unknown ViT preset {model['preset']!r}; known presets: {', '.join(presets)}")
    return model


def load_recipe(name_or_path: str | Path, overrides: Sequence[str] = ()) -> VisionClassificationRecipe:
    """Read a recipe config (shipped name or TOML path) and apply ``key=value`` overrides.

    Raises:
        FileNotFoundError: no such config.
        ValueError: unknown sections or fields, or invalid values (the message names them).
    """
    return load_recipe_file(VisionClassificationRecipe, name_or_path, overrides, check_model=_check_model_table)


def build_model(model_settings: dict[str, Any], class_names: Sequence[str]) -> ViT:
    """The ViT preset with its config overrides (or the ``init`` checkpoint's weights), sized for ``class_names``."""
    return initial_model(model_settings, class_names)[0]


def initial_model(model_settings: dict[str, Any], class_names: Sequence[str]) -> tuple[ViT, list[str]]:
    """The model a run starts from, and the run-summary lines saying what it is.

    Without ``init``: the preset with the other ``[model]`` fields, initialised at random.
    With ``init``: the checkpoint's architecture (the preset is ignored) with the other fields
    applied on top (``image_size`` resamples the position table; dropout, drop path and the
    attention backend may change; shape fields must match), its weights loaded for fine-tuning
    (:func:`~polyformer.apps.engine.load_for_finetuning`: a new head when the classes differ).

    Raises:
        ConfigError: a field does not fit the preset or the checkpoint.
        FileNotFoundError, ValueError: the checkpoint cannot be read.
    """
    fields = {k: v for k, v in model_settings.items() if k not in MODEL_KEYS}
    fields.update(num_classes=len(class_names), class_names=list(class_names))
    if "init" not in model_settings:
        try:
            model = create_model(model_settings["preset"], **fields)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model: {err}") from err
        if not isinstance(model, ViT):
            raise ValueError(f"preset {model_settings['preset']!r} is not a ViT; pick one of the vit_* presets")
        parameters = sum(p.numel() for p in model.parameters())
        return model, [f"model: {model_settings['preset']}, {parameters / 1e6:.2f}M parameters, random initialisation"]
    source = read_vit_source(model_settings["init"])
    try:
        config = source.config.replace(**fields)
        state = adapt_vit_state(source.state, source.config, config)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model.init: {err}") from err
    model = ViT(config)
    lines = load_for_finetuning(model, state, source.description, class_names, source.config.class_names)
    parameters = sum(p.numel() for p in model.parameters())
    grid = f", position table resampled to {config.image_size}" if config.image_size != source.config.image_size else ""
    ignored = f" (model.preset {model_settings['preset']} ignored)" if "preset" in model_settings else ""
    summary = [
        f"model: ViT from {KIND_NAMES[source.kind]} weights{ignored}: patch {config.patch_size} at "
        f"{config.image_size}{grid}, width {config.d_model}, {config.num_layers} layers, "
        f"{parameters / 1e6:.2f}M parameters",
        *lines,
    ]
    return model, summary


def _limited(dataset: Dataset, limit: int, seed: int) -> Dataset:
    if not limit or limit >= len(dataset):
        return dataset
    generator = torch.Generator().manual_seed(seed)
    return Subset(dataset, torch.randperm(len(dataset), generator=generator)[:limit].sort().values.tolist())


def _same_items(a: Dataset, b: Dataset) -> bool:
    """True when two opened datasets are the same items (a folder without a test split)."""
    same_root = getattr(a, "root", None) == getattr(b, "root", None)
    return type(a) is type(b) and same_root and a.item_keys() == b.item_keys()


@dataclass
class ImageData:
    """The datasets a run trains and validates on, and where the validation images come from."""

    train: Dataset
    eval: Dataset
    eval_source: str  # e.g. "the test split of DATA" or "held out from DATA (split.json)"
    split: HeldOutSplit | None = None  # the held-out split, saved as the run's split.json
    warnings: list[str] = field(default_factory=list)


def previous_split(resume: str | None) -> HeldOutSplit | None:
    """The held-out split of the run a resume continues, if it saved one."""
    if not resume:
        return None
    path = run_of(resolve_checkpoint(resume)) / SPLIT_FILE
    return HeldOutSplit.load(path) if path.is_file() else None


def build_datasets(
    recipe: VisionClassificationRecipe, train_set: ImageClassificationDataset, config: ViTConfig
) -> ImageData:
    """Training and validation datasets with the transforms ``config`` needs.

    Args:
        recipe: the recipe (its ``data`` settings and seed).
        train_set: the opened training images (their transform is set here).
        config: the model's config (image size, channels, normalisation, class names).

    The validation data is ``data.eval``, else the test split of ``data.train``; a folder with
    no test split gives up a seeded ``val_fraction`` of its images instead, recorded as a
    :class:`HeldOutSplit` (the resumed run's own split when resuming) so that ``eval`` can score
    exactly those images later. ``data.eval_limit`` limits validation during training only.
    """
    settings, seed = recipe.data, recipe.train.seed
    size, channels, mean, std = config.image_size, config.in_channels, config.image_mean, config.image_std
    train_set.transform = build_train_transform(
        size, channels, mean, std, crop_scale=settings.crop_scale, hflip=settings.hflip,
        augment=settings.augment, random_erasing=settings.random_erasing,
    )  # fmt: skip
    eval_tf = build_eval_transform(size, channels, mean, std)
    eval_source = settings.eval or settings.train
    eval_set = open_image_dataset(
        eval_source, "test", eval_tf, skip_bad=settings.skip_bad, class_names=train_set.classes
    )
    train_data: Dataset = train_set
    split, warnings = None, []
    where = f"data.eval {settings.eval}" if settings.eval else f"the test split of {settings.train}"
    if not settings.eval and _same_items(train_set, eval_set):
        keys = train_set.item_keys()
        split = previous_split(recipe.train.resume)
        if split is None:
            split = HeldOutSplit.make(keys, settings.val_fraction, seed, str(settings.train))
        train_idx, val_idx, warnings = split.resolve(keys, str(settings.train))
        train_data, eval_set = Subset(train_set, train_idx), Subset(eval_set, val_idx)
        where = f"held out from {settings.train} ({split.fraction:.0%}, seed {split.seed}; saved as {SPLIT_FILE})"
    return ImageData(
        _limited(train_data, settings.train_limit, seed), _limited(eval_set, settings.eval_limit, seed + 1),
        where, split, warnings,
    )  # fmt: skip


def skipped_images(*datasets: Dataset) -> list[str]:
    """Unreadable files that ``skip_bad`` left out of any of ``datasets`` (each once, sorted)."""
    files: set[str] = set()
    pending = list(datasets)
    while pending:
        dataset = pending.pop()
        if isinstance(dataset, Subset):
            pending.append(dataset.dataset)
        elif isinstance(dataset, torch.utils.data.ConcatDataset):
            pending.extend(dataset.datasets)
        else:
            files.update(path for path, _ in getattr(dataset, "skipped", []))
    return sorted(files)


def _task(recipe: VisionClassificationRecipe, num_classes: int) -> ClassificationTask:
    data = recipe.data
    mixer = None
    if data.mixup_alpha > 0 or data.cutmix_alpha > 0:
        mixer = BatchMixer(num_classes, data.mixup_alpha, data.cutmix_alpha, data.mix_prob)
    return ClassificationTask(num_classes, label_smoothing=data.label_smoothing, batch_transform=mixer)


def train_vision_classifier(recipe: VisionClassificationRecipe, echo: Callable[[str], None] = print) -> TrainResult:
    """Build the model and the data, train, evaluate and save, as the recipe says.

    Works unchanged under torchrun (every process calls it). The run directory
    (``recipe.train.out_dir``) gets ``recipe.json``, the checkpoints, ``metrics.jsonl``,
    ``curves.png`` and ``model/`` (the final model, loadable with ``ViT.from_pretrained``).

    Returns:
        The engine's result (final validation metrics and paths).
    """
    context = init_distributed()
    start = time.perf_counter()
    data = recipe.data
    train_set = open_image_dataset(data.train, "train", skip_bad=data.skip_bad)
    classes = train_set.classes
    if len(classes) < 2:
        raise ValueError(
            f"{data.train} has a single class ({', '.join(classes)}); classification needs images of at least two "
            "classes (one sub-folder per class)"
        )
    seed_everything(recipe.train.seed)
    model, model_lines = initial_model(recipe.model, classes)
    datasets = build_datasets(recipe, train_set, model.config)
    train_data, eval_data = datasets.train, datasets.eval
    cfg = model.config
    shown = ", ".join(classes[:8]) + (f", ... ({len(classes)} in all)" if len(classes) > 8 else "")
    summary = [
        f"data: {data.train}: {len(train_data)} training / {len(eval_data)} validation images; {len(classes)} "
        f"classes ({shown}); images {cfg.in_channels}x{cfg.image_size}x{cfg.image_size} after transforms",
        f"validation images: {datasets.eval_source}",
        *(f"warning: {text}" for text in datasets.warnings),
        f"augmentation: crop scale {tuple(data.crop_scale)}, hflip {data.hflip}, {data.augment}, random erasing "
        f"{data.random_erasing}, mixup {data.mixup_alpha}, cutmix {data.cutmix_alpha}, label smoothing "
        f"{data.label_smoothing}",
        *model_lines,
    ]
    skipped = skipped_images(train_data, eval_data)
    if skipped:
        more = ", ..." if len(skipped) > 3 else ""
        summary.append(f"skipped {len(skipped)} unreadable images: {', '.join(skipped[:3])}{more}")
    files = {"recipe.json": json.dumps(recipe.to_dict(), indent=2) + "\n"}
    if datasets.split is not None:
        files[SPLIT_FILE] = datasets.split.to_json()
    task = _task(recipe, len(classes))
    result = train(
        model, task, train_data, recipe.train, eval_data=eval_data, echo=echo, run_name=recipe.name,
        run_files=files, summary=summary,
    )  # fmt: skip
    if context.is_main:  # the result line, also with quiet
        accuracy = result.metrics.get("accuracy")
        best = f"; best model in {result.best_model_dir}" if result.best_model_dir else ""
        echo(
            f"done in {time.perf_counter() - start:.0f}s: {result.steps} steps"
            + (f", validation accuracy {accuracy:.2%}" if accuracy is not None else "")
            + f"; final model in {result.model_dir}{best}"
        )
    return result


EVAL_SPLITS = ("test", "val", "all")


@dataclass
class EvalData:
    """The images ``eval`` scores, and a line saying which they are."""

    dataset: Dataset
    description: str
    warnings: list[str] = field(default_factory=list)


def open_eval_dataset(
    model: ViT, source: str, split: str | None = "test", skip_bad: bool = False, run_dir: str | Path | None = None
) -> Dataset:
    """``split`` of ``source`` with the model's evaluation transform and class order (see :func:`open_eval_split`)."""
    return open_eval_split(model, source, split, skip_bad, run_dir).dataset


def open_eval_split(
    model: ViT, source: str, split: str | None = None, skip_bad: bool = False, run_dir: str | Path | None = None
) -> EvalData:
    """The images of ``source`` to evaluate ``model`` on, never training images by accident.

    Args:
        model: the model (its evaluation transform and class order are used).
        source: the data, as ``train`` takes it.
        split: "test" (the data's own test split), "val" (the images the training run in
            ``run_dir`` held out, from its ``split.json``), "all" (every image), or None: "test"
            when the data has one, else "val".
        skip_bad: skip unreadable images.
        run_dir: the training run the model comes from (for "val").

    Raises:
        ValueError: the split is unknown or not available for this data and model; none of the
            run's held-out images are in ``source``.
    """
    if split is not None and split not in EVAL_SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(EVAL_SPLITS)}")
    cfg = model.config
    transform = build_eval_transform(cfg.image_size, cfg.in_channels, cfg.image_mean, cfg.image_std)

    def opened(which: str) -> ImageClassificationDataset:
        return open_image_dataset(source, which, transform, skip_bad=skip_bad, class_names=cfg.class_names)

    test, train = opened("test"), opened("train")
    has_test = not _same_items(test, train)
    split_file = Path(run_dir) / SPLIT_FILE if run_dir is not None else None
    held_out = split_file is not None and split_file.is_file()
    if split is None:
        split = "test" if has_test or not held_out else "val"
    if split == "test":
        if not has_test:
            hint = "use --split val for the images the training run held out, or " if held_out else "use "
            raise ValueError(f"{source} has no test split (one folder of class sub-folders); {hint}--split all")
        return EvalData(test, f"images: the test split of {source} ({len(test)})")
    if split == "all":
        dataset = test if not has_test else torch.utils.data.ConcatDataset([train, test])
        return EvalData(dataset, f"images: all {len(dataset)} of {source}, including any the model was trained on")
    if not held_out:
        where = f"run {run_dir}" if run_dir is not None else "this model (not a training run's model)"
        raise ValueError(
            f"{where} has no held-out split ({SPLIT_FILE}); it validated on a test split or on data.eval: "
            "use --split test"
        )
    assert split_file is not None
    saved = HeldOutSplit.load(split_file)
    _, val_idx, warnings = saved.resolve(test.item_keys(), str(source))
    description = f"images: the {len(val_idx)} images run {run_dir} held out from {saved.source} ({split_file})"
    return EvalData(Subset(test, val_idx), description, warnings)


def evaluate_classifier(model: ViT, dataset: Dataset, batch_size: int = 256, precision: str = "auto") -> dict[str, Any]:
    """Accuracy, loss, per-class accuracy and the confusion matrix of ``model`` on ``dataset``.

    Returns:
        Plain values: ``accuracy``, ``loss``, ``per_class_accuracy`` (class name -> accuracy),
        ``confusion_matrix`` (rows = true class, columns = predicted), ``classes``, ``images``.
    """
    classes = list(model.config.class_names or [str(i) for i in range(model.config.num_classes)])
    task = ClassificationTask(len(classes), detailed=True)
    metrics = evaluate(
        model, task, dataset, batch_size=batch_size, precision=resolve_precision(precision, torch.device("cpu"))
    )
    return {
        "accuracy": metrics["accuracy"],
        "loss": metrics["loss"],
        "per_class_accuracy": dict(zip(classes, metrics["per_class_accuracy"])),
        "confusion_matrix": metrics["confusion_matrix"],
        "classes": classes,
        "images": len(dataset),
    }


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path) -> Path:
    """Save a confusion matrix (rows = true class, columns = predicted) as a PNG with counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = torch.tensor(matrix)
    size = max(4.0, 0.6 * len(classes) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(counts.numpy(), cmap="Blues")
    axis.set(
        xticks=range(len(classes)),
        yticks=range(len(classes)),
        xlabel="predicted",
        ylabel="true",
        title="confusion matrix",
    )
    axis.set_xticklabels(classes, rotation=45, ha="right")
    axis.set_yticklabels(classes)
    threshold = counts.max().item() / 2
    for row in range(len(classes)):
        for column in range(len(classes)):
            value = int(counts[row, column])
            axis.text(
                column,
                row,
                value,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if value > threshold else "black",
            )
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
