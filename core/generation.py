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
import torch.nn.functional as F
from torch import Tensor

from .logit_processors import LogitProcessorList, build_logit_processors

__all__ = [
    "GenerationOutput", "beam_search", "generate", "generate_after_prompt", "greedy_search", "sample",
    "top_k_top_p_filter",
]  # fmt: skip

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
    early_stopping: bool | str = False,
    processors: Sequence[LogitProcessorFn] | None = None,
    callback: StepCallback | None = None,
    patience: float = 1.0,
) -> GenerationOutput:
    """Keep ``num_beams`` live hypotheses per input; return the best finished ones by length-normalised score.

    The algorithm of Hugging Face transformers' beam search, step for step, so that the same
    model gives the same tokens: each step ranks all ``K * V`` continuations by their summed
    log-probability and keeps the best ``2K``; the best ``K`` of those that do not end in EOS
    live on, and those among the first ``K`` that end in EOS (or reach ``max_new_tokens``)
    compete for the ``K`` finished slots by ``sum log p / generated_length ** length_penalty``.

    Args:
        length_penalty: exponent of the length in the normalisation; >1 favours longer
            outputs, 0 ranks by raw log-probability.
        early_stopping: when to stop: True as soon as every input has ``K`` finished
            hypotheses; False (transformers' default) also when no live hypothesis can beat the
            worst finished one at its current length; "never" when none could at the longest
            possible length (the canonical beam search).
        processors: applied in order to the log-probabilities (B*K, V) of every live
            hypothesis, with its own generated tokens (B*K, L) (row ``b * K + k``), before they
            are added to the beam scores.
        callback: called after every step as ``callback(step, tokens (B, K))`` with the last
            token of each live hypothesis, best first. They are tentative: only ``sequences`` is final.
        patience: finished hypotheses kept per input, as a multiple of ``num_beams``
            (openai/whisper's patience): ``round(K * patience)`` slots compete, so a patience
            above 1 searches longer before the stopping rules above are met. 1 = transformers.

    Returns:
        ``sequences`` (B, L): the best finished hypothesis of each input, padded with ``pad_id``
        after its EOS; ``scores`` (B,) its normalised score; ``beams`` (B, K', L) and
        ``beam_scores`` (B, K'): all ``K' = round(K * patience)`` finished hypotheses, best first.
    """
    _validate(prompt, max_new_tokens, eos_id, pad_id)
    if num_beams < 1:
        raise ValueError(f"num_beams must be at least 1, got {num_beams}")
    if early_stopping not in (True, False, "never"):
        raise ValueError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
    if patience <= 0:
        raise ValueError(f"patience must be positive, got {patience}")
    b, k, device = prompt.shape[0], num_beams, prompt.device
    slots = max(1, round(k * patience))  # finished hypotheses kept per input
    process = _as_processor(processors)
    expand = torch.arange(b, device=device).repeat_interleave(k)
    cache.reorder(expand)
    prompt = prompt.index_select(0, expand)
    prompt_mask = None if prompt_mask is None else prompt_mask.index_select(0, expand)
    logits = model.step(prompt, cache, prompt_mask)[:, -1]  # (B*K, V)
    vocab = logits.shape[-1]
    if 2 * k > k * vocab:
        raise ValueError(f"num_beams={k} is too large for the vocabulary ({vocab})")
    never = -1.0e9  # transformers' "impossible" score, added rather than set, as there
    running = torch.zeros(b, k, device=device)
    running[:, 1:] = never  # all beams start identical: expand only the first
    live = torch.empty(b, k, 0, dtype=torch.long, device=device)  # live hypotheses' tokens
    done = torch.full((b, slots, max_new_tokens), pad_id, dtype=torch.long, device=device)  # finished ones
    done_scores = torch.full((b, slots), never, device=device)
    done_full = torch.zeros(b, slots, dtype=torch.bool, device=device)
    done_lengths = torch.zeros(b, slots, dtype=torch.long, device=device)
    improvable = torch.ones(b, 1, dtype=torch.bool, device=device)
    first_k = torch.arange(2 * k, device=device) < k
    offsets = (torch.arange(b, device=device) * k).unsqueeze(1)
    for i in range(max_new_tokens):
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        logprobs = _process(process, live.reshape(b * k, -1), logprobs).view(b, k, vocab)
        totals = (running.unsqueeze(-1) + logprobs).view(b, k * vocab)
        top, flat = totals.topk(2 * k, dim=-1)  # (B, 2K), best first
        parent, token = flat // vocab, flat % vocab
        history = live.gather(1, parent.unsqueeze(-1).expand(-1, -1, live.shape[-1]))
        candidates = torch.cat([history, token.unsqueeze(-1)], dim=-1)  # (B, 2K, i + 1)
        ends = token.eq(eos_id) if eos_id is not None else torch.zeros_like(token, dtype=torch.bool)
        if i == max_new_tokens - 1:
            ends = torch.ones_like(ends)  # the length limit finishes every hypothesis
        # Live on: the best K continuations that did not just finish.
        alive = top + ends.float() * never
        keep = alive.topk(k, dim=-1).indices
        running, parent_kept = alive.gather(1, keep), parent.gather(1, keep)
        live = candidates.gather(1, keep.unsqueeze(-1).expand(-1, -1, i + 1))
        # Finish: those among the first K that just ended, if they beat the finished ones.
        normalised = top / float(i + 1) ** length_penalty
        full = done_full.all(dim=1, keepdim=True) & (early_stopping is True)
        just_done = ends & first_k
        normalised = normalised + (full | ~improvable).float() * never + (~just_done).float() * never
        padded = F.pad(candidates, (0, max_new_tokens - i - 1), value=pad_id)
        merged_scores = torch.cat([done_scores, normalised], dim=1)
        best = merged_scores.topk(slots, dim=-1).indices
        done_scores = merged_scores.gather(1, best)
        done = torch.cat([done, padded], dim=1).gather(1, best.unsqueeze(-1).expand(-1, -1, max_new_tokens))
        done_full = torch.cat([done_full, just_done], dim=1).gather(1, best)
        lengths = torch.full_like(token, i + 1)
        done_lengths = torch.cat([done_lengths, lengths], dim=1).gather(1, best)
        if callback is not None:
            callback(i, live[:, :, -1])
        if i == max_new_tokens - 1 or bool(ends.all()):
            break
        length = max_new_tokens if early_stopping == "never" and length_penalty > 0 else i + 1
        best_possible = running[:, :1] / float(length) ** length_penalty
        worst_done = torch.where(done_full, done_scores.min(dim=1, keepdim=True).values, never)
        improvable = improvable & (best_possible > worst_done).any(dim=-1, keepdim=True)
        all_full = bool(done_full.all()) and early_stopping is True
        if not bool(improvable.any()) or all_full:
            break
        cache.reorder((parent_kept + offsets).view(-1), keep_source=True)  # parents are beams of the same input
        logits = model.step(live[:, :, -1].reshape(-1, 1), cache)[:, -1]
    width = max(1, int(done_lengths.max()))
    beams = done[:, :, :width]
    return GenerationOutput(beams[:, 0], done_scores[:, 0], beams, done_scores)


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
    early_stopping: bool | str = False,
    patience: float = 1.0,
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
    beam = dict(num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping, patience=patience)
    return beam_search(model, cache, prompt, **beam, **common)


def generate_after_prompt(
    model: Steppable,
    cache: Any,
    prompt: Tensor | Sequence[int],
    batch: int,
    device: torch.device,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    max_positions: int | None = None,
    **options: Any,
) -> GenerationOutput:
    """:func:`generate` for an encoder-decoder whose cache already holds the encoded source.

    What every encoder-decoder (translation, speech recognition) does around generation, written
    once: the decoder prompt may be a list of ids shared by every row (start, language and task
    tokens) or a (B, T) tensor; with ``max_positions`` (the decoder's position table),
    ``max_new_tokens`` is capped to the room the prompt leaves.

    Raises:
        ValueError: an empty prompt, a prompt of the wrong shape, or no room left after it.
    """
    if not isinstance(prompt, Tensor):
        if not prompt:
            raise ValueError("the decoder prompt needs at least one token")
        prompt = torch.tensor([list(prompt)], dtype=torch.long).expand(batch, -1)
    if prompt.dim() != 2 or prompt.shape[0] != batch:
        raise ValueError(f"the decoder prompt must be (B={batch}, T) token ids, got {tuple(prompt.shape)}")
    if max_positions is not None:
        room = max_positions - prompt.shape[1]
        if room < 1:
            raise ValueError(f"a prompt of {prompt.shape[1]} tokens leaves no room in {max_positions} target positions")
        max_new_tokens = min(max_new_tokens, room)
    options.setdefault("eos_id", eos_id)
    options.setdefault("pad_id", pad_id)
    return generate(model, cache, prompt.to(device), max_new_tokens=max_new_tokens, **options)
