"""Object detection with DETR, explicitly: build the model, build the data, train, evaluate, save.

A recipe is data: a TOML config (``apps/recipes/configs/*.toml``) with a ``[model]`` table (a DETR
preset plus config overrides, or ``init``: a DETR directory of ours or of Hugging Face to fine-tune),
``[data]`` (:class:`DetectionDataSettings`), ``[loss]`` (:class:`DetectionLossSettings`) and
``[train]`` (:class:`~polyformer.apps.engine.TrainingConfig`), changed by ``key=value`` overrides.
The shipped checkpoint ``apps/checkpoints/detr_shapes`` comes from ``detr_shapes.toml``.

DETR is known to learn nothing on small custom data when something is set up wrong, so the run
says what it sees: the class error (percent of matched queries with the wrong class) is logged
with the loss, a warning names the usual fixes when it is still 100% (or validation mAP is still
near 0) after ``loss.warn_after`` steps, and ``data.overfit_batch`` trains and validates on one
batch, which a working set-up fits almost perfectly within a few hundred steps.

Shape legend: B images, Q queries, K classes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from polyformer.apps.engine import (
    SPLIT_FILE,
    HeldOutSplit,
    TrainingConfig,
    TrainResult,
    evaluate,
    init_distributed,
    load_for_finetuning,
    resolve_precision,
    seed_everything,
    train,
)
from polyformer.apps.recipes.recipe_loader import load_recipe_file, recipe_to_dict
from polyformer.apps.recipes.typed_config import ConfigError, check_fields
from polyformer.apps.recipes.vision_classification import previous_split
from polyformer.core import create_model
from polyformer.core.presets import list_presets
from polyformer.vision.data import (
    DetectionBatch,
    DetectionData,
    DetectionDataset,
    detection_collate,
    detection_transform,
    open_detection_data,
)
from polyformer.vision.detr import DETR, DetrConfig, SetCriterion, box_cxcywh_to_xyxy
from polyformer.vision.detr.postprocess import detections_from_output

__all__ = [
    "DetectionDataSettings",
    "DetectionLossSettings",
    "DetectionRecipe",
    "DetectionTask",
    "evaluate_detector",
    "initial_detector",
    "load_detection_recipe",
    "train_detector",
]


@dataclass
class DetectionDataSettings:
    """Where the annotated images come from and how training images are augmented."""

    train: str = "shapes"  # "shapes" (embedded), a COCO .json, a .csv, or a folder (COCO, VOC or CSV inside)
    eval: str = ""  # validation data; "" = the test split of `train`, or a held-out part when it has none
    val_fraction: float = 0.1  # share of the training images held out when the data has no test split
    train_limit: int = 0  # use only the first this many training images; 0 = all
    eval_limit: int = 0  # use only the first this many validation images; 0 = all
    hflip: bool = True  # random horizontal flips
    crop: float = 0.5  # probability of a random crop
    crop_min_scale: float = 0.6  # the smallest crop side as a fraction of the image side
    scales: list[float] = field(default_factory=lambda: [0.75, 0.8125, 0.875, 0.9375, 1.0])  # of model.min_size
    skip_bad: bool = False  # drop bad boxes and missing images (counted) instead of stopping
    overfit_batch: bool = False  # train and validate on the first batch only, without augmentation

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")
        if not 0.0 <= self.crop <= 1.0 or not 0.0 < self.crop_min_scale <= 1.0:
            raise ValueError("data.crop must be in [0, 1] and data.crop_min_scale in (0, 1]")
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"data.scales must be positive fractions of model.min_size, got {self.scales}")


@dataclass
class DetectionLossSettings:
    """DETR's set loss (:class:`~polyformer.vision.detr.SetCriterion`) and the stuck-training warnings."""

    class_weight: float = 1.0  # class loss (and matching cost) weight
    l1_weight: float = 5.0  # L1 box loss (and cost) weight
    giou_weight: float = 2.0  # GIoU loss (and cost) weight
    no_object_weight: float = 0.1  # cross-entropy weight of "no object" (DETR's eos_coef)
    focal: bool = False  # sigmoid focal loss instead of softmax cross-entropy (often better on small data)
    focal_alpha: float = 0.25  # focal loss alpha
    focal_gamma: float = 2.0  # focal loss gamma
    warn_after: int = 300  # warn when class error is still 100% (or mAP near 0) after this many steps; 0 = never


@dataclass
class DetectionRecipe:
    """A full detection recipe: model, data, loss and training settings."""

    name: str
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "detr_small_resnet18"})
    data: DetectionDataSettings = field(default_factory=DetectionDataSettings)
    loss: DetectionLossSettings = field(default_factory=DetectionLossSettings)
    train: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        return recipe_to_dict(self)


MODEL_KEYS: dict[str, Any] = {"preset": str, "init": str, "freeze_backbone": bool}
FROM_DATA = ("num_classes", "class_names", "sigmoid_scores")  # set from the data and loss.focal


def _check_model_table(table: dict[str, Any]) -> dict[str, Any]:
    model = check_fields(DetrConfig, table, "model", extra=MODEL_KEYS)
    for name in FROM_DATA:
        if name in model:
            raise ConfigError(f"model.{name} is set from the training data (classes) and loss.focal; remove it")
    presets = [p.name for p in list_presets() if p.name.startswith("detr_")]
    if "init" not in model and model.get("preset") not in presets:
        raise ConfigError(
            f"model.preset must be one of {', '.join(presets)} (or give model.init=DIR), got {model.get('preset')!r}"
        )
    return model


def load_detection_recipe(name_or_path: str | Path, overrides: Sequence[str] = ()) -> DetectionRecipe:
    """Read a detection recipe config (shipped name or TOML path) and apply ``key=value`` overrides."""
    return load_recipe_file(DetectionRecipe, name_or_path, overrides, check_model=_check_model_table)


def initial_detector(model_settings: dict[str, Any], class_names: Sequence[str], focal: bool) -> tuple[DETR, list[str]]:
    """The DETR a run starts from (a preset at random, or ``init``'s weights with a new class head when
    the classes differ) and the summary lines saying what it is."""
    fields = {k: v for k, v in model_settings.items() if k not in MODEL_KEYS}
    fields.update(num_classes=len(class_names), class_names=list(class_names), sigmoid_scores=focal)
    if "init" not in model_settings:
        try:
            model = create_model(model_settings["preset"], **fields)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model: {err}") from err
        count = sum(p.numel() for p in model.parameters()) / 1e6
        return _frozen(model, model_settings), [
            f"model: {model_settings['preset']}, {count:.2f}M parameters, random initialisation"
        ]
    source = DETR.from_pretrained(model_settings["init"])
    try:
        model = DETR(source.config.replace(**fields))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model.init: {err}") from err
    lines = load_for_finetuning(
        model, source.state_dict(), str(model_settings["init"]), class_names, source.config.class_names
    )
    count = sum(p.numel() for p in model.parameters()) / 1e6
    return _frozen(model, model_settings), [
        f"model: DETR from {model_settings['init']}, {count:.2f}M parameters",
        *lines,
    ]


def _frozen(model: DETR, model_settings: dict[str, Any]) -> DETR:
    if model_settings.get("freeze_backbone"):
        model.freeze_backbone()
    return model


def _pixel_targets(batch: DetectionBatch) -> tuple[list[dict[str, Tensor]], list[tuple[int, int]]]:
    """The batch's objects as torchmetrics wants them (pixel xyxy of the resized image) and the real sizes."""
    heights = batch.pixel_mask.any(dim=2).sum(dim=1).tolist()
    widths = batch.pixel_mask.any(dim=1).sum(dim=1).tolist()
    sizes = list(zip(heights, widths))
    targets = []
    for (height, width), target in zip(sizes, batch.targets):
        scale = target.boxes.new_tensor([width, height, width, height])
        targets.append({"boxes": box_cxcywh_to_xyxy(target.boxes) * scale, "labels": target.labels})
    return targets, sizes


def _box_map_class():
    from torchmetrics.detection import MeanAveragePrecision

    class BoxMAP(MeanAveragePrecision):
        """COCO box mAP reporting mAP, mAP@0.5, mAP@0.75, recall at 100 (and per-class AP when asked)."""

        def compute(self) -> dict[str, Tensor]:
            result = super().compute()
            keys = ["map", "map_50", "map_75", "mar_100"] + (["map_per_class"] if self.class_metrics else [])
            return {key: result[key] for key in keys}

    return BoxMAP


@dataclass
class DetectionTask:
    """DETR training and validation for the engine: the set loss, and COCO mAP through torchmetrics.

    Args:
        criterion: the set loss.
        sigmoid: the model's class scores are sigmoids (focal loss).
        warn_after: steps after which a stuck class error is reported (0 = never).
        warn: where warnings go (the main process's echo), or None.
    """

    default_best = ("map_50", "max")
    criterion: SetCriterion
    sigmoid: bool = False
    warn_after: int = 300
    warn: Callable[[str], None] | None = None
    per_class: bool = False  # also AP per class (map_per_class)
    _steps: int = 0
    _values: dict[str, float] = field(default_factory=dict)

    def loss(self, model: nn.Module, batch: DetectionBatch) -> Tensor:
        output = model(batch.images, batch.pixel_mask)
        losses = self.criterion(output, batch.targets)
        self._values = {
            name: float(losses[name].detach()) for name in ("class_error", "loss_class", "loss_l1", "loss_giou")
        }
        return losses["loss"]

    def step_values(self) -> dict[str, float]:
        """The last micro-batch's class error and loss terms, logged with the loss; warns once if stuck."""
        self._steps += 1
        if self.warn is not None and self.warn_after and self._steps == self.warn_after:
            if self._values.get("class_error", 0.0) >= 99.9:
                self.warn(
                    f"warning: class error is still 100% after {self._steps} steps. Usual fixes: check that the "
                    "labels are class indices of the model's class list, lower train.lr (1e-4 for DETR), train "
                    "longer, use fewer queries (model.num_queries), loss.focal=true on small data, or freeze a "
                    "pretrained backbone; try data.overfit_batch=true first"
                )
        return dict(self._values)

    def make_metrics(self) -> dict[str, Any]:
        from torchmetrics import MeanMetric

        return {
            "map": _box_map_class()(
                box_format="xyxy", iou_type="bbox", backend="pycocotools", class_metrics=self.per_class
            ),
            "loss": MeanMetric(),
            "class_error": MeanMetric(),
        }

    def update_metrics(self, metrics: dict[str, Any], model: nn.Module, batch: DetectionBatch) -> None:
        output = model(batch.images, batch.pixel_mask, aux=False)
        losses = self.criterion(output, batch.targets)
        metrics["loss"].update(losses["loss"].float())
        metrics["class_error"].update(losses["class_error"].float())
        targets, sizes = _pixel_targets(batch)
        predictions = [
            {"boxes": d.boxes, "scores": d.scores, "labels": d.labels}
            for d in detections_from_output(output, sizes, sigmoid=self.sigmoid)
        ]
        metrics["map"].update(predictions, targets)

    def on_eval(self, step: int, metrics: dict[str, Any]) -> None:
        """Warn once validation mAP@0.5 is still near 0 at or after ``warn_after`` steps."""
        if self.warn is None or not self.warn_after or step < self.warn_after or metrics.get("map_50", 1.0) > 0.01:
            return
        self.warn(
            f"warning: validation mAP@0.5 is {metrics['map_50']:.3f} after {step} steps. DETR needs many steps "
            "on new data: train longer, try loss.focal=true and fewer queries, and check with "
            "data.overfit_batch=true that one batch can be fitted"
        )
        self.warn_after = 0  # once


@dataclass
class RunDatasets:
    """The data sets a run trains and validates on, and where the validation images come from."""

    train: Dataset
    eval: Dataset
    eval_source: str
    split: HeldOutSplit | None = None
    warnings: list[str] = field(default_factory=list)


def _first(dataset: Dataset, limit: int) -> Dataset:
    return dataset if not limit or limit >= len(dataset) else Subset(dataset, range(limit))


def _item_keys(data: DetectionData) -> list[str]:
    return [sample.image.as_posix() for sample in data.samples]


def build_detection_datasets(recipe: DetectionRecipe, train_data: DetectionData, config: DetrConfig) -> RunDatasets:
    """Training and validation data sets with the model's sizes and normalisation.

    The validation data is ``data.eval``, else the test split of ``data.train``; data without a
    test split gives up a seeded ``val_fraction`` of its images (saved as the run's split file).
    With ``data.overfit_batch`` both are the first training batch, unaugmented.
    """
    settings, seed = recipe.data, recipe.train.seed
    size = (config.min_size, config.max_size, config.image_mean, config.image_std)
    eval_tf = detection_transform(False, *size)
    if settings.overfit_batch:
        batch = Subset(
            DetectionDataset(train_data, eval_tf), range(min(recipe.train.batch_size, len(train_data.samples)))
        )
        return RunDatasets(batch, batch, f"the same {len(batch)} training images (data.overfit_batch)")
    train_tf = detection_transform(
        True, *size, scales=settings.scales, crop=settings.crop, crop_min_scale=settings.crop_min_scale,
        hflip=settings.hflip,
    )  # fmt: skip
    eval_source = settings.eval or settings.train
    eval_data = open_detection_data(eval_source, "test", train_data.class_names, settings.skip_bad)
    train_set, eval_set = DetectionDataset(train_data, train_tf), DetectionDataset(eval_data, eval_tf)
    where = f"data.eval {settings.eval}" if settings.eval else f"the test split of {settings.train}"
    split, warnings = None, []
    if not settings.eval and _item_keys(train_data) == _item_keys(eval_data):
        keys = _item_keys(train_data)
        split = previous_split(recipe.train.resume) or HeldOutSplit.make(
            keys, settings.val_fraction, seed, settings.train
        )
        train_idx, val_idx, warnings = split.resolve(keys, settings.train)
        train_set, eval_set = Subset(train_set, train_idx), Subset(eval_set, val_idx)
        where = f"held out from {settings.train} ({split.fraction:.0%}, seed {split.seed}; saved as {SPLIT_FILE})"
    return RunDatasets(
        _first(train_set, settings.train_limit), _first(eval_set, settings.eval_limit), where, split, warnings
    )


def _criterion(settings: DetectionLossSettings, num_classes: int) -> SetCriterion:
    return SetCriterion(
        num_classes, class_weight=settings.class_weight, l1_weight=settings.l1_weight,
        giou_weight=settings.giou_weight, no_object_weight=settings.no_object_weight, focal=settings.focal,
        focal_alpha=settings.focal_alpha, focal_gamma=settings.focal_gamma,
    )  # fmt: skip


def train_detector(recipe: DetectionRecipe, echo: Callable[[str], None] = print) -> TrainResult:
    """Build the model and the data, train, evaluate and save, as the recipe says (also under torchrun).

    The run directory gets ``recipe.json``, checkpoints, ``metrics.jsonl``, ``curves.png`` and
    ``model/`` (loadable with ``DETR.from_pretrained``, its class list inside).
    """
    context = init_distributed()
    start = time.perf_counter()
    settings = recipe.data
    train_data = open_detection_data(settings.train, "train", skip_bad=settings.skip_bad)
    classes = train_data.class_names
    seed_everything(recipe.train.seed)
    model, model_lines = initial_detector(recipe.model, classes, recipe.loss.focal)
    train_data.check_queries(model.config.num_queries)
    datasets = build_detection_datasets(recipe, train_data, model.config)
    cfg = model.config
    shown = ", ".join(classes[:8]) + (f", ... ({len(classes)} in all)" if len(classes) > 8 else "")
    boxes = sum(len(s.labels) for s in train_data.samples)
    summary = [
        f"data: {settings.train}: {len(datasets.train)} training / {len(datasets.eval)} validation images; "
        f"{len(classes)} classes ({shown}); {boxes} boxes, at most {train_data.max_objects()} per image; "
        f"shorter side {cfg.min_size} (longer at most {cfg.max_size})",
        f"validation images: {datasets.eval_source}",
        *(f"warning: {text}" for text in datasets.warnings),
        *model_lines,
        f"loss: {'sigmoid focal' if recipe.loss.focal else 'cross-entropy'} class loss, weights class "
        f"{recipe.loss.class_weight} / L1 {recipe.loss.l1_weight} / GIoU {recipe.loss.giou_weight}, "
        f"no-object {recipe.loss.no_object_weight}, auxiliary losses on {cfg.decoder_layers - 1} layers",
    ]
    if train_data.skipped:
        summary.append(f"skipped {train_data.skipped} bad annotations or images: {train_data.skipped_reasons[0]}")
    if len(datasets.train) < 500 and not settings.overfit_batch:
        summary.append(
            f"note: {len(datasets.train)} training images is little for DETR; it needs many steps (thousands) "
            "before boxes become accurate"
        )
    files = {"recipe.json": json.dumps(recipe.to_dict(), indent=2) + "\n"}
    if datasets.split is not None:
        files[SPLIT_FILE] = datasets.split.to_json()
    task = DetectionTask(
        _criterion(recipe.loss, len(classes)), recipe.loss.focal, recipe.loss.warn_after,
        echo if context.is_main else None,
    )  # fmt: skip
    result = train(
        model, task, datasets.train, recipe.train, eval_data=datasets.eval, collate_fn=detection_collate,
        echo=echo, run_name=recipe.name, run_files=files, summary=summary,
    )  # fmt: skip
    if context.is_main:
        score = result.metrics.get("map_50")
        best = f"; best model in {result.best_model_dir}" if result.best_model_dir else ""
        echo(
            f"done in {time.perf_counter() - start:.0f}s: {result.steps} steps"
            + (f", validation mAP@0.5 {score:.3f}" if score is not None else "")
            + f"; final model in {result.model_dir}{best}"
        )
    return result


def evaluate_detector(model: DETR, data: DetectionData, batch_size: int = 8, precision: str = "auto") -> dict[str, Any]:
    """COCO mAP (``map``, ``map_50``, ``map_75``, ``mar_100``, per class), loss and class error on ``data``."""
    cfg = model.config
    dataset = DetectionDataset(
        data, detection_transform(False, cfg.min_size, cfg.max_size, cfg.image_mean, cfg.image_std)
    )
    criterion = SetCriterion(cfg.num_classes, focal=cfg.sigmoid_scores)
    task = DetectionTask(criterion, cfg.sigmoid_scores, warn_after=0, per_class=True)
    metrics = evaluate(
        model, task, dataset, batch_size=batch_size, collate_fn=detection_collate,
        precision=resolve_precision(precision, torch.device("cpu")),
    )  # fmt: skip
    return {**metrics, "images": len(dataset), "classes": list(data.class_names)}


def draw_examples(model: DETR, data: DetectionData, path: str | Path, threshold: float = 0.5, count: int = 4) -> Path:
    """Save the first ``count`` images of ``data`` side by side with predicted and true boxes drawn (one PNG)."""
    from PIL import Image

    from polyformer.apps.pipelines.vision import ObjectDetectionPipeline

    samples = data.samples[:count]
    detector = ObjectDetectionPipeline(model, threshold=threshold)
    found = detector.detect([sample.image for sample in samples])
    scale = max(1, 256 // min(min(sample.size) for sample in samples))  # small images are drawn larger
    pictures = [
        detector.annotate(sample.image, detections, truth=(sample.boxes, sample.labels), scale=scale)
        for sample, detections in zip(samples, found)
    ]
    sheet = Image.new("RGB", (sum(p.width for p in pictures), max(p.height for p in pictures)), (255, 255, 255))
    left = 0
    for picture in pictures:
        sheet.paste(picture, (left, 0))
        left += picture.width
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.png")
    sheet.save(tmp)
    tmp.replace(path)
    return path
