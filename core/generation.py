"""Generation shared by every decoder: greedy, sampling (temperature, top-k, top-p), beam search.

Works with any model that has ``step(tokens, cache, token_mask=None) -> logits (B, t, V)`` and
a cache with ``reorder(index)`` (:class:`~polyformer.core.kv_cache.KVCache`). Every strategy is
batched and feeds one new token per step through the cache.

Beam search keeps K hypotheses per input. A hypothesis that emits EOS is finished: it keeps
its slot and its score, and competes with live ones by its length-normalised score
``sum log p / length ** length_penalty`` (as in Hugging Face transformers). Search stops when
every hypothesis is finished or ``max_new_tokens`` is reached. Top-p follows Holtzman et al.
2020; beam search follows Sutskever et al. 2014 / Wu et al. 2016.

Every strategy takes logit processors (:mod:`~polyformer.core.logit_processors`: forced and
suppressed tokens, minimum length, repetition penalty, no-repeat n-grams, bad words, or any
callable ``(generated (N, L), scores (N, V)) -> scores``) and a per-step ``callback`` for
streaming. As in Hugging Face transformers, greedy search and sampling process the raw logits
(before temperature / top-k / top-p), beam search the log-probabilities of each hypothesis.

Shape legend: B batch, K beams, T prompt length, L generated length, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from .logit_processors import LogitProcessorList, build_logit_processors

__all__ = ["GenerationOutput", "beam_search", "generate", "greedy_search", "sample", "top_k_top_p_filter"]

LogitProcessorFn = Callable[[Tensor, Tensor], Tensor]
"""``processor(generated (N, L) int64, scores (N, V)) -> scores (N, V)``."""
StepCallback = Callable[[int, Tensor], None]
"""``callback(step, tokens)``: tokens (B,) for greedy/sampling, (B, K) for beam search."""


class Steppable(Protocol):
    def step(self, tokens: Tensor, cache: Any, token_mask: Tensor | None = None) -> Tensor: ...


@dataclass
class GenerationOutput:
    """Generated tokens.

    Attributes:
        sequences: (B, L) new tokens only, ``pad_id`` after EOS.
        scores: (B,) total log-probability (greedy/sampling; under the processed distribution
            when there are logit processors) or normalised beam score.
        beams: (B, K, L) every final beam, best first (beam search only).
        beam_scores: (B, K) their normalised scores (beam search only).
    """

    sequences: Tensor
    scores: Tensor
    beams: Tensor | None = None
    beam_scores: Tensor | None = None


def _validate(prompt: Tensor, max_new_tokens: int, eos_id: int | None, pad_id: int) -> None:
    if prompt.dim() != 2 or prompt.shape[1] == 0:
        raise ValueError(f"prompt must be token ids (B, T) with T >= 1, got shape {tuple(prompt.shape)}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")


def top_k_top_p_filter(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Set to -inf every logit (B, V) outside the top k and outside the smallest set of mass p."""
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass of the tokens ranked above each one
        remove_sorted = before >= top_p
        remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


def _as_processor(processors: Sequence[LogitProcessorFn] | LogitProcessorFn | None) -> LogitProcessorList | None:
    """The processors as one :class:`LogitProcessorList`, or None when there are none."""
    if processors is None:
        return None
    if callable(processors) and not isinstance(processors, list):
        processors = [processors]
    processors = LogitProcessorList(processors)
    return processors if processors else None


def _process(processors: LogitProcessorList | None, generated: Tensor, scores: Tensor) -> Tensor:
    """Scores (N, V) after the processors, given each row's generated tokens (N, L)."""
    return scores if processors is None else processors(generated, scores)


def _decode_loop(
    model: Steppable,
    cache: Any,
    prompt: Tensor,
    prompt_mask: Tensor | None,
    max_new_tokens: int,
    eos_id: int | None,
    pad_id: int,
    choose: Callable[[Tensor], Tensor],
    processors: Sequence[LogitProcessorFn] | None = None,
    callback: StepCallback | None = None,
) -> GenerationOutput:
    """Shared loop of greedy and sampling: ``choose(logprobs (B, V)) -> tokens (B,)``.

    The processors see the raw logits (B, V) and the tokens generated so far (B, L); the
    log-softmax of what they return is what ``choose`` gets and what the scores add up.
    """
    b = prompt.shape[0]
    process = _as_processor(processors)
    logits = model.step(prompt, cache, prompt_mask)[:, -1]
    finished = torch.zeros(b, dtype=torch.bool, device=prompt.device)
    scores = torch.zeros(b, device=prompt.device)
    generated = torch.empty(b, 0, dtype=torch.long, device=prompt.device)
    for i in range(max_new_tokens):
        processed = _process(process, generated, logits.float())
        # A finished row emits padding whatever its logits; neutral ones keep sampling well defined.
        logprobs = torch.log_softmax(processed.masked_fill(finished.unsqueeze(1), 0.0), dim=-1)
        token = choose(logprobs)
        scores = scores + torch.where(finished, 0.0, logprobs.gather(1, token[:, None]).squeeze(1))
        token = token.masked_fill(finished, pad_id)
        generated = torch.cat([generated, token[:, None]], dim=1)
        if callback is not None:
            callback(i, token)
        if eos_id is not None:
            finished = finished | token.eq(eos_id)
        if bool(finished.all()) or i == max_new_tokens - 1:
            break
        logits = model.step(token[:, None], cache)[:, -1]
    return GenerationOutput(generated, scores)


def greedy_search(
    model: Steppable,
    cache: Any,
    prompt: Tensor,
    max_new_tokens: int,
    eos_id: int | None = None,
    pad_id: int = 0,
    prompt_mask: Tensor | None = None,
    processors: Sequence[LogitProcessorFn] | None = None,
    callback: StepCallback | None = None,
) -> GenerationOutput:
    """Pick the most likely token at every step.

    Args:
        processors: applied in order to the raw logits (B, V) before the argmax.
        callback: called after every step as ``callback(step, tokens (B,))`` with the tokens
            just emitted (``pad_id`` for finished rows), exactly the column ``step`` of the output.
    """
    _validate(prompt, max_new_tokens, eos_id, pad_id)
    choose = lambda lp: lp.argmax(-1)  # noqa: E731
    return _decode_loop(model, cache, prompt, prompt_mask, max_new_tokens, eos_id, pad_id, choose, processors, callback)


def sample(
    model: Steppable,
    cache: Any,
    prompt: Tensor,
    max_new_tokens: int,
    eos_id: int | None = None,
    pad_id: int = 0,
    prompt_mask: Tensor | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    processors: Sequence[LogitProcessorFn] | None = None,
    callback: StepCallback | None = None,
) -> GenerationOutput:
    """Sample each token from the temperature-scaled, top-k / top-p filtered distribution.

    Args:
        processors: applied in order to the raw logits (B, V), before temperature, top-k and top-p.
        callback: as in :func:`greedy_search`.
    """
    _validate(prompt, max_new_tokens, eos_id, pad_id)
    if temperature <= 0:
        raise ValueError(f"temperature must be positive (use greedy search for temperature 0), got {temperature}")

    def choose(logprobs: Tensor) -> Tensor:
        filtered = top_k_top_p_filter(logprobs / temperature, top_k, top_p)
        return torch.multinomial(filtered.softmax(-1), 1, generator=generator).squeeze(1)

    return _decode_loop(model, cache, prompt, prompt_mask, max_new_tokens, eos_id, pad_id, choose, processors, callback)


def beam_search(
    model: Steppable,
    cache: Any,
    prompt: Tensor,
    max_new_tokens: int,
    num_beams: int = 4,
    eos_id: int | None = None,
    pad_id: int = 0,
    prompt_mask: Tensor | None = None,
    length_penalty: float = 1.0,
    processors: Sequence[LogitProcessorFn] | None = None,
    callback: StepCallback | None = None,
) -> GenerationOutput:
    """Keep the ``num_beams`` best hypotheses per input by length-normalised log-probability.

    Args:
        length_penalty: exponent of the length in the normalisation; >1 favours longer
            outputs, 0 ranks by raw log-probability.
        processors: applied in order to the log-probabilities (B*K, V) of every hypothesis,
            with its own generated tokens (B*K, L) (row ``b * K + k``), before they are added
            to the beam scores. Finished hypotheses still emit only padding, at no cost.
        callback: called after every step as ``callback(step, tokens (B, K))`` with the token
            each hypothesis just took, best hypothesis first. Hypotheses are reordered between
            steps, so for streaming these are tentative: only ``sequences`` is final.
    """
    _validate(prompt, max_new_tokens, eos_id, pad_id)
    if num_beams < 1:
        raise ValueError(f"num_beams must be at least 1, got {num_beams}")
    b, k, device = prompt.shape[0], num_beams, prompt.device
    process = _as_processor(processors)
    expand = torch.arange(b, device=device).repeat_interleave(k)
    cache.reorder(expand)
    prompt = prompt.index_select(0, expand)
    prompt_mask = None if prompt_mask is None else prompt_mask.index_select(0, expand)
    logits = model.step(prompt, cache, prompt_mask)[:, -1]  # (B*K, V)
    vocab = logits.shape[-1]
    if k > vocab:
        raise ValueError(f"num_beams={k} is larger than the vocabulary ({vocab})")
    scores = torch.full((b, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    finished = torch.zeros(b, k, dtype=torch.bool, device=device)
    lengths = torch.zeros(b, k, device=device)
    tokens = torch.empty(b, k, 0, dtype=torch.long, device=device)
    offsets = (torch.arange(b, device=device) * k).unsqueeze(1)
    done_row = torch.full((vocab,), float("-inf"), device=device)
    done_row[pad_id] = 0.0
    for i in range(max_new_tokens):
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        logprobs = _process(process, tokens.reshape(b * k, -1), logprobs).view(b, k, vocab)
        # A finished beam can only "emit" padding, at no cost, so its score stays put.
        logprobs = torch.where(finished.unsqueeze(-1), done_row, logprobs)
        candidates = scores.unsqueeze(-1) + logprobs  # (B, K, V)
        new_lengths = lengths + (~finished).float()
        norm = new_lengths.clamp(min=1.0).pow(length_penalty).unsqueeze(-1)
        ranked = (candidates / norm).view(b, k * vocab)
        best, flat = ranked.topk(k, dim=-1)  # (B, K), sorted best first
        parent, token = flat // vocab, flat % vocab
        scores = candidates.view(b, k * vocab).gather(1, flat)
        lengths = new_lengths.gather(1, parent)
        was_finished = finished.gather(1, parent)
        finished = was_finished | (token.eq(eos_id) if eos_id is not None else torch.zeros_like(was_finished))
        history = tokens.gather(1, parent.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        tokens = torch.cat([history, token.unsqueeze(-1)], dim=-1)
        if callback is not None:
            callback(i, token)
        if bool(finished.all()) or i == max_new_tokens - 1:
            break
        cache.reorder((parent + offsets).view(-1))
        logits = model.step(token.view(-1, 1), cache)[:, -1]
    return GenerationOutput(tokens[:, 0], best[:, 0], tokens, best)


def generate(
    model: Steppable,
    cache: Any,
    prompt: Tensor,
    max_new_tokens: int,
    strategy: str | None = None,
    eos_id: int | None = None,
    pad_id: int = 0,
    prompt_mask: Tensor | None = None,
    num_beams: int = 1,
    length_penalty: float = 1.0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    processors: Sequence[LogitProcessorFn] | None = None,
    callback: StepCallback | None = None,
    forced_tokens: Mapping[int, int] | None = None,
    suppress_tokens: Sequence[int] | None = None,
    begin_suppress_tokens: Sequence[int] | None = None,
    min_new_tokens: int | None = None,
    repetition_penalty: float | None = None,
    no_repeat_ngram_size: int | None = None,
    bad_words: Sequence[Sequence[int]] | None = None,
) -> GenerationOutput:
    """One entry point: ``strategy`` is ``greedy``, ``sample`` or ``beam`` (default: beam when
    ``num_beams > 1``, else greedy).

    The keyword arguments from ``forced_tokens`` on build logit processors, as in
    :func:`~polyformer.core.logit_processors.build_logit_processors` (all relative to the
    generated tokens, step 0 being the first one); they run before the given ``processors``.
    ``callback`` is called once per step, as in :func:`greedy_search` and :func:`beam_search`.
    """
    if strategy is None:
        strategy = "beam" if num_beams > 1 else "greedy"
    if strategy not in ("greedy", "sample", "beam"):
        raise ValueError(f"unknown generation strategy {strategy!r}; choose greedy, sample or beam")
    built = build_logit_processors(
        eos_id=eos_id,
        forced_tokens=forced_tokens,
        suppress_tokens=suppress_tokens,
        begin_suppress_tokens=begin_suppress_tokens,
        min_new_tokens=min_new_tokens,
        repetition_penalty=repetition_penalty,
        no_repeat_ngram_size=no_repeat_ngram_size,
        bad_words=bad_words,
    )
    built.extend(_as_processor(processors) or [])
    common = dict(max_new_tokens=max_new_tokens, eos_id=eos_id, pad_id=pad_id, prompt_mask=prompt_mask)
    common.update(processors=built, callback=callback)
    if strategy == "greedy":
        return greedy_search(model, cache, prompt, **common)
    if strategy == "sample":
        sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
        return sample(model, cache, prompt, **sampling, **common)
    return beam_search(model, cache, prompt, num_beams=num_beams, length_penalty=length_penalty, **common)
