"""Text pipeline tasks: feature-extraction, translation, fill-mask, text-generation, text-classification.

- ``feature-extraction`` (a BERT directory: ours or Hugging Face's, e.g. a sentence-transformers
  model): a text or a list of texts -> sentence embeddings, pooled as the model declares.
- ``translation`` (ours, or a Hugging Face Marian/BART directory; default: the shipped
  English -> Spanish model): texts -> translations, beam search by default.
- ``fill-mask`` (a masked-LM BERT): the most likely tokens at each mask token.
- ``text-generation`` (a decoder-only LM, ours or Hugging Face GPT-2): prompts -> continuations.
- ``text-classification`` (a fine-tuned classifier or its run): top-k labels with probabilities.

Shape legend: B batch, T tokens, V vocabulary, K classes, D embedding width.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import PipelineTask, register_task, resolve_model_dir, string_batch

__all__ = [
    "FeatureExtractionPipeline",
    "FillMaskPipeline",
    "TextClassificationPipeline",
    "TextGenerationPipeline",
    "TranslationPipeline",
]


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

        batch, single = string_batch(texts, "feature-extraction")
        if not batch:
            return torch.zeros(0, self.bundle.encoder.config.d_model) if as_tensor else []
        vectors = sentence_embeddings(self.bundle, batch, self.batch_size).cpu()
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

        batch, single = string_batch(texts, "translation")
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
        device: where the model runs.
    """

    def __init__(self, bundle: Any, top_k: int = 5, device: str | torch.device = "cpu"):
        mask = bundle.tokenizer.specials.mask
        if mask is None:
            raise ValueError("fill-mask needs a tokenizer with a mask token")
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        self.device = torch.device(device)
        bundle.model.to(self.device).eval()
        self.bundle, self.top_k, self.mask = bundle, top_k, mask

    @torch.no_grad()
    def __call__(self, texts: str | Sequence[str]) -> Any:
        """Per text: a list of ``{"token", "score", "sequence"}`` (one mask) or one such list per mask."""
        batch, single = string_batch(texts, "fill-mask")
        if not batch:
            return []
        tokenizer, model = self.bundle.tokenizer, self.bundle.model
        mask_id = tokenizer.token_id("mask")
        encoded = tokenizer.encode(batch, max_length=model.config.max_len)
        logits = model(encoded.input_ids.to(self.device), encoded.attention_mask.to(self.device)).cpu()  # (B, T, V)
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
    """Continue prompts with a decoder-only LM (ours or Hugging Face GPT-2) and its tokenizer.

    The generation settings given here are the defaults of every call; a call may override them.

    Args:
        model: the loaded decoder-only LM.
        tokenizer: its tokenizer.
        max_new_tokens: tokens generated per prompt.
        sample: sample (with ``temperature``, ``top_k``, ``top_p``) instead of greedy/beam search.
        temperature: sampling temperature.
        top_k: sample among the k most likely tokens only.
        top_p: sample among the smallest set of tokens with this total probability.
        beams: beam width (1 = greedy when not sampling).
        device: where the model runs.
    """

    def __init__(
        self, model: Any, tokenizer: Any, max_new_tokens: int = 40, sample: bool = False, temperature: float = 1.0,
        top_k: int | None = None, top_p: float | None = None, beams: int = 1, device: str | torch.device = "cpu",
    ):  # fmt: skip
        if max_new_tokens < 1 or beams < 1:
            raise ValueError(f"max_new_tokens and beams must be at least 1, got {max_new_tokens} and {beams}")
        self.device = torch.device(device)
        self.model, self.tokenizer = model.to(self.device).eval(), tokenizer
        self.defaults = dict(
            max_new_tokens=max_new_tokens, sample=sample, temperature=temperature, top_k=top_k, top_p=top_p, beams=beams
        )

    @torch.no_grad()
    def __call__(self, prompts: str | Sequence[str], **settings: Any) -> Any:
        """Each prompt followed by its continuation (greedy, sampled or beam search).

        Args:
            prompts: a text or a list of texts.
            **settings: any of the constructor's generation settings, for this call only.
        """
        unknown = sorted(set(settings) - set(self.defaults))
        if unknown:
            raise ValueError(f"text-generation: unknown setting {unknown[0]!r}; it accepts: {', '.join(self.defaults)}")
        options = {**self.defaults, **settings}
        batch, single = string_batch(prompts, "text-generation")
        if not batch:
            return []
        encoded = self.tokenizer.encode(batch, add_special_tokens=False)
        ids, mask = encoded.input_ids, encoded.attention_mask.bool()
        lengths = mask.sum(1)
        width = ids.shape[1]
        shift = width - lengths  # left-pad: generation continues from the right end of every row
        index = (torch.arange(width)[None] - shift[:, None]) % width
        ids, mask = ids.gather(1, index).to(self.device), mask.gather(1, index).to(self.device)  # (B, T)
        strategy = "sample" if options["sample"] else ("beam" if options["beams"] > 1 else "greedy")
        out = self.model.generate(
            ids, mask, max_new_tokens=options["max_new_tokens"], strategy=strategy, temperature=options["temperature"],
            top_k=options["top_k"], top_p=options["top_p"], num_beams=options["beams"],
        )  # fmt: skip
        texts = [p + self.tokenizer.decode(o) for p, o in zip(batch, out.sequences.cpu())]
        return texts[0] if single else texts


class TextClassificationPipeline:
    """Labels with probabilities for texts, with a BERT sequence classifier, its tokenizer and label names.

    Args:
        bundle: the loaded classifier and tokenizer.
        labels: the class names, in the classifier's order.
        top_k: labels returned per text.
        batch_size: texts per forward pass.
        device: where the model runs.
    """

    def __init__(
        self, bundle: Any, labels: Sequence[str], top_k: int = 2, batch_size: int = 32,
        device: str | torch.device = "cpu",
    ):  # fmt: skip
        if top_k < 1 or batch_size < 1:
            raise ValueError(f"top_k and batch_size must be at least 1, got {top_k} and {batch_size}")
        self.device = torch.device(device)
        bundle.model.to(self.device).eval()
        self.bundle, self.labels, self.top_k, self.batch_size = bundle, list(labels), top_k, batch_size

    @torch.no_grad()
    def probabilities(self, texts: Sequence[str]) -> Tensor:
        """Class probabilities (N, K)."""
        model, tokenizer = self.bundle.model, self.bundle.tokenizer
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = tokenizer.encode(list(texts[start : start + self.batch_size]), max_length=model.config.max_len)
            ids, mask = batch.input_ids.to(self.device), batch.attention_mask.bool().to(self.device)  # (B, T)
            chunks.append(model(ids, mask).float().softmax(-1).cpu())  # (B, K)
        return torch.cat(chunks)

    def __call__(self, texts: str | Sequence[str]) -> Any:
        """Top-k ``{"label", "score"}`` for one text, or a list of such lists."""
        batch, single = string_batch(texts, "text-classification")
        if not batch:
            return []
        scores, indices = self.probabilities(batch).topk(min(self.top_k, len(self.labels)), dim=-1)
        results = [
            [{"label": self.labels[i], "score": round(float(p), 6)} for p, i in zip(ps.tolist(), ids.tolist())]
            for ps, ids in zip(scores, indices)
        ]
        return results[0] if single else results


def build_feature_extraction(
    model: str | Path, batch_size: int = 32, device: str | torch.device = "cpu"
) -> FeatureExtractionPipeline:
    """Sentence embeddings from a BERT directory (ours or Hugging Face's)."""
    from polyformer.text.bert import load_bert

    return FeatureExtractionPipeline(load_bert(model, task="base"), batch_size=batch_size, device=device)


def build_translation(
    model: str | Path, num_beams: int = 4, batch_size: int = 32, max_new_tokens: int | None = None,
    device: str | torch.device = "cpu",
) -> TranslationPipeline:  # fmt: skip
    """Translation with our encoder-decoder directories or Hugging Face Marian/BART directories."""
    from polyformer.text.tokenizer import TextTokenizer
    from polyformer.text.translation import (
        is_hf_seq2seq_directory,
        load_hf_seq2seq,
        load_source_tokenizer,
        load_translation_model,
    )

    directory = resolve_model_dir(model, "translation")
    if is_hf_seq2seq_directory(directory):  # Marian (source.spm / target.spm) or BART (tokenizer files)
        marian = (directory / "source.spm").is_file()
        source = TextTokenizer.from_marian(directory, "source") if marian else None
        loaded, tokenizer = load_hf_seq2seq(directory), TextTokenizer.load(directory)
    else:
        loaded, tokenizer = load_translation_model(directory)
        source = load_source_tokenizer(directory)
    return TranslationPipeline(
        loaded, tokenizer, num_beams=num_beams, batch_size=batch_size, device=device, source_tokenizer=source,
        max_new_tokens=max_new_tokens,
    )  # fmt: skip


def build_fill_mask(model: str | Path, top_k: int = 5, device: str | torch.device = "cpu") -> FillMaskPipeline:
    """fill-mask with a masked-LM BERT directory or its training run."""
    from polyformer.text.bert import load_bert

    return FillMaskPipeline(load_bert(resolve_model_dir(model, "fill-mask"), task="masked_lm"), top_k, device)


def build_text_generation(
    model: str | Path, max_new_tokens: int = 40, sample: bool = False, temperature: float = 1.0,
    top_k: int | None = None, top_p: float | None = None, beams: int = 1, device: str | torch.device = "cpu",
) -> TextGenerationPipeline:  # fmt: skip
    """text-generation with our decoder-only LM directories or a Hugging Face GPT-2 directory."""
    from polyformer.core import DecoderOnlyTransformer
    from polyformer.text.gpt import is_hf_gpt2_directory, load_hf_gpt2
    from polyformer.text.tokenizer import TextTokenizer

    directory = resolve_model_dir(model, "text-generation")
    if is_hf_gpt2_directory(directory):
        loaded = load_hf_gpt2(directory)
    else:
        loaded = DecoderOnlyTransformer.from_pretrained(directory)
    return TextGenerationPipeline(
        loaded, TextTokenizer.load(directory), max_new_tokens=max_new_tokens, sample=sample, temperature=temperature,
        top_k=top_k, top_p=top_p, beams=beams, device=device,
    )  # fmt: skip


def build_text_classification(
    model: str | Path, top_k: int = 2, batch_size: int = 32, device: str | torch.device = "cpu"
) -> TextClassificationPipeline:
    """text-classification with a fine-tuned BERT classifier (or its run) and its label names."""
    from polyformer.apps.recipes.text_classification import read_label_names
    from polyformer.text.bert import load_bert

    directory = resolve_model_dir(model, "text-classification")
    bundle = load_bert(directory, task="sequence_classification")
    return TextClassificationPipeline(bundle, read_label_names(directory), top_k, batch_size, device)


for _task in (
    PipelineTask("feature-extraction", build_feature_extraction, "sentence embeddings (BERT)",
                 needs="a BERT directory (ours or Hugging Face's)",
                 families=("encoder",)),
    PipelineTask("translation", build_translation, "translate texts (encoder-decoder, Marian, BART)",
                 default_model="translation_en_es",
                 families=("encoder-decoder",)),
    PipelineTask("fill-mask", build_fill_mask, "most likely tokens at mask tokens (masked-LM BERT)",
                 needs="a trained masked-LM directory or run directory",
                 families=("encoder",)),
    PipelineTask("text-generation", build_text_generation, "continue prompts (decoder-only LM, GPT-2)",
                 needs="a trained causal-LM directory or run directory, or a GPT-2 directory",
                 families=("decoder-only",)),
    PipelineTask("text-classification", build_text_classification, "labels of texts (fine-tuned BERT)",
                 needs="a trained classifier or its run directory",
                 families=("encoder",)),
):  # fmt: skip
    register_task(_task)
