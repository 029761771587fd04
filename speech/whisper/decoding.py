"""Decoding one 30 s window the way openai/whisper does, on core's generation.

- :func:`detect_language`: one decoder step on ``<|startoftranscript|>``; the distribution over the
  language tokens.
- :class:`TimestampRules`: the logit processor that makes timestamp tokens come in pairs, never
  decrease, start the text within ``max_initial_timestamp`` seconds, and win over text when
  their total probability is higher (Whisper's ``ApplyTimestampRules``, as in transformers'
  ``WhisperTimeStampLogitsProcessor``).
- :func:`decode_window`: greedy, beam (with patience and length penalty) or sampled decoding of a
  batch of windows after their prompts, with each result's average log-probability, no-speech
  probability and compression ratio; :func:`decode_with_fallback` retries the windows that fail
  the compression-ratio or log-probability thresholds at the next temperature of the ladder.

Shape legend: B windows, S encoder positions, D width, V vocabulary, L generated tokens.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from polyformer.core import LogitProcessor, generate

from .model import Whisper
from .tokenizer import TIME_PRECISION, WhisperTokenizer

__all__ = [
    "DecodingOptions",
    "DecodingResult",
    "TimestampRules",
    "compression_ratio",
    "decode_window",
    "decode_with_fallback",
    "detect_language",
]

NEG_INF = float("-inf")


def compression_ratio(text: str) -> float:
    """UTF-8 length over zlib-compressed length: high for repetitive (looping) output."""
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


@dataclass
class DecodingOptions:
    """What openai/whisper's ``DecodingOptions`` and ``transcribe`` options control.

    Attributes:
        task: ``transcribe`` or ``translate`` (to English).
        language: a code or name; None = detect (multilingual models).
        temperature: 0 = greedy or beam search; above 0 = sampling. A tuple is the fallback ladder.
        beam_size: beams at temperature 0 (None or 1 = greedy).
        patience: beam search keeps going until ``round(beam_size * patience)`` hypotheses have
            finished (openai/whisper's patience; 1.0 = the usual beam search).
        length_penalty: exponent of the length normalisation of beam scores (None = 1.0).
        best_of: samples drawn per window at temperature > 0; the most likely is kept.
        timestamps: predict segment timestamps (False = ``<|notimestamps|>``).
        max_initial_timestamp: the first timestamp is at most this many seconds.
        suppress_tokens: ids never generated; "-1" = the model's set (or Whisper's non-speech symbols).
        suppress_blank: no space or end-of-text as the first token.
        max_new_tokens: most tokens per window (Whisper: half the decoder context, 224).
        compression_ratio_threshold: above it the window is retried at the next temperature.
        logprob_threshold: an average log-probability below it is retried too.
        no_speech_threshold: with a low log-probability, a no-speech probability above it marks
            the window as silence instead.
    """

    task: str = "transcribe"
    language: str | None = None
    temperature: float | tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    beam_size: int | None = None
    patience: float | None = None
    length_penalty: float | None = None
    best_of: int | None = 5
    timestamps: bool = True
    max_initial_timestamp: float | None = 1.0
    suppress_tokens: str | Sequence[int] | None = "-1"
    suppress_blank: bool = True
    max_new_tokens: int = 224
    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {self.task!r}")
        for t in self.temperatures:
            if t < 0:
                raise ValueError(f"temperatures must be non-negative, got {t}")
        if self.beam_size is not None and self.beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {self.beam_size}")
        if self.best_of is not None and self.best_of < 1:
            raise ValueError(f"best_of must be at least 1, got {self.best_of}")
        if self.patience is not None and self.patience <= 0:
            raise ValueError(f"patience must be positive, got {self.patience}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")

    @property
    def temperatures(self) -> tuple[float, ...]:
        t = self.temperature
        return tuple(float(x) for x in t) if isinstance(t, (tuple, list)) else (float(t),)


@dataclass
class DecodingResult:
    """One decoded window."""

    tokens: list[int]  # generated ids, end-of-text removed (timestamps kept)
    text: str
    avg_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float
    language: str | None = None
    language_probs: dict[str, float] = field(default_factory=dict)


class TimestampRules(LogitProcessor):
    """Whisper's timestamp constraints on logits (N, V), given the tokens generated after the prompt.

    - ``<|notimestamps|>`` is never generated.
    - Timestamps come in pairs (end of one segment, start of the next), except that the text may
      end after one: after a timestamp that follows text, only a timestamp or end-of-text; after a
      pair, only text (or end-of-text).
    - Timestamps never decrease, and a segment has positive length.
    - The first token is a timestamp, at most ``max_initial_index`` steps of 0.02 s.
    - When the timestamps' total probability beats every single text token, a timestamp is chosen.
    """

    def __init__(self, timestamp_begin: int, eot: int, no_timestamps: int, max_initial_index: int | None = 50):
        self.timestamp_begin, self.eot, self.no_timestamps = timestamp_begin, eot, no_timestamps
        self.max_initial_index = max_initial_index
        self.largest_id = max(timestamp_begin, eot, no_timestamps)

    def process(self, generated: Tensor, logits: Tensor) -> Tensor:
        logits = logits.clone()
        tb = self.timestamp_begin
        logits[:, self.no_timestamps] = NEG_INF
        for k in range(generated.shape[0]):
            seq = generated[k]
            last_ts = seq.numel() >= 1 and int(seq[-1]) >= tb
            penultimate_ts = seq.numel() < 2 or int(seq[-2]) >= tb
            if last_ts:
                if penultimate_ts:  # a pair just closed: text next
                    logits[k, tb:] = NEG_INF
                else:  # one timestamp after text: another timestamp, or the end
                    logits[k, : self.eot] = NEG_INF
            stamps = seq[seq >= tb]
            if stamps.numel():
                floor = int(stamps[-1]) if last_ts and not penultimate_ts else int(stamps[-1]) + 1
                logits[k, tb:floor] = NEG_INF
        if generated.shape[1] == 0:
            logits[:, :tb] = NEG_INF
            if self.max_initial_index is not None:
                logits[:, tb + self.max_initial_index + 1 :] = NEG_INF
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        stamp_mass = logprobs[:, tb:].logsumexp(dim=-1)
        best_text = logprobs[:, :tb].max(dim=-1).values
        prefer = stamp_mass > best_text
        logits[prefer, :tb] = NEG_INF
        return logits


class _FirstLogits:
    """Wraps the model for core's generation and keeps the logits of the prompt's first step."""

    def __init__(self, model: Whisper):
        self.model = model
        self.first: Tensor | None = None

    def step(self, tokens: Tensor, cache, token_mask: Tensor | None = None) -> Tensor:
        logits = self.model.step(tokens, cache, token_mask)
        if self.first is None:
            self.first = logits
        return logits


@torch.no_grad()
def detect_language(model: Whisper, tokenizer: WhisperTokenizer, memory: Tensor) -> list[dict[str, float]]:
    """Per window, the probability of each language (code -> p), from one step on ``<|startoftranscript|>``."""
    if not tokenizer.multilingual:
        return [{"en": 1.0} for _ in range(memory.shape[0])]
    cache = model.decoder.new_cache(memory)
    sot = torch.full((memory.shape[0], 1), tokenizer.sot, dtype=torch.long, device=memory.device)
    logits = model.step(sot, cache)[:, -1].float()
    ids = torch.tensor(tokenizer.language_ids, device=memory.device)
    probs = logits.index_select(1, ids).softmax(dim=-1)
    return [dict(zip(tokenizer.languages, row.tolist())) for row in probs]


def _suppressed(model: Whisper, tokenizer: WhisperTokenizer, option: str | Sequence[int] | None) -> list[int]:
    if option is None:
        return []
    if isinstance(option, str):
        values = [int(v) for v in option.split(",") if v.strip()]
    else:
        values = [int(v) for v in option]
    if -1 in values:
        values = [v for v in values if v >= 0]
        values += model.config.suppress_tokens or tokenizer.non_speech_tokens()
    specials = [tokenizer.translate, tokenizer.transcribe, tokenizer.sot, tokenizer.sot_prev, tokenizer.sot_lm]
    values += [t for t in specials if t is not None]
    if tokenizer.no_speech is not None:
        values.append(tokenizer.no_speech)
    return sorted({v for v in values if v < model.config.vocab_size})


def _prompts(
    tokenizer: WhisperTokenizer, sot_sequences: list[list[int]], previous: list[list[int]] | None, room: int
) -> tuple[Tensor, Tensor | None]:
    """Left-padded prompts ``[<|startofprev|> previous...] sot_sequence`` (B, T) and their mask."""
    rows = []
    for i, sot in enumerate(sot_sequences):
        prev = previous[i] if previous else []
        prev = prev[-(room - 1) :] if prev and tokenizer.sot_prev is not None else []
        rows.append(([tokenizer.sot_prev] + prev if prev else []) + sot)
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.eot, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = True
    return ids, (None if bool(mask.all()) else mask)


@torch.no_grad()
def decode_window(
    model: Whisper,
    tokenizer: WhisperTokenizer,
    memory: Tensor,
    options: DecodingOptions,
    temperature: float = 0.0,
    languages: list[str] | None = None,
    previous: list[list[int]] | None = None,
) -> list[DecodingResult]:
    """Decode a batch of encoded windows (B, S, D) once, at ``temperature``.

    Args:
        languages: the language code of each window (None: ``options.language``, else detected).
        previous: per window, earlier text tokens to condition on (after ``<|startofprev|>``).
    """
    if options.timestamps and not tokenizer.has_timestamps:
        raise ValueError("this model's vocabulary has no timestamp tokens: decode with timestamps=False")
    b = memory.shape[0]
    language_probs: list[dict[str, float]] = [{} for _ in range(b)]
    if languages is None:
        if options.language is not None or not tokenizer.multilingual:
            languages = [options.language or "en"] * b
        else:
            language_probs = detect_language(model, tokenizer, memory)
            languages = [max(p, key=p.get) for p in language_probs]
    sots = [tokenizer.sot_sequence(lang, options.task, options.timestamps) for lang in languages]
    half = model.config.max_target_positions // 2
    prompt, prompt_mask = _prompts(tokenizer, sots, previous, half)
    prompt, prompt_mask = prompt.to(memory.device), None if prompt_mask is None else prompt_mask.to(memory.device)
    sot_index = prompt.shape[1] - len(sots[0])  # every sot sequence has the same length
    max_new = min(options.max_new_tokens, model.config.max_target_positions - prompt.shape[1])
    if max_new < 1:
        raise ValueError("the prompt fills the decoder's context; shorten the initial prompt")
    processors: list = []
    if options.timestamps:
        initial = None
        if options.max_initial_timestamp is not None:
            initial = round(options.max_initial_timestamp / TIME_PRECISION)
        processors.append(TimestampRules(tokenizer.timestamp_begin, tokenizer.eot, tokenizer.no_timestamps, initial))
    common = dict(
        eos_id=tokenizer.eot,
        pad_id=tokenizer.eot,
        prompt_mask=prompt_mask,
        suppress_tokens=_suppressed(model, tokenizer, options.suppress_tokens) or None,
        begin_suppress_tokens=(model.config.begin_suppress_tokens or [tokenizer.encode(" ")[0], tokenizer.eot])
        if options.suppress_blank
        else None,
        processors=processors,
    )
    runner = _FirstLogits(model)
    cache = model.decoder.new_cache(memory)
    if temperature > 0:
        n = options.best_of or 1
        cache.reorder(torch.arange(b, device=memory.device).repeat_interleave(n))
        generator = torch.Generator(device=memory.device).manual_seed(options.seed)
        out = generate(
            runner, cache, prompt.repeat_interleave(n, 0), max_new, strategy="sample", temperature=temperature,
            generator=generator, **{**common, "prompt_mask": None if prompt_mask is None else
                                    prompt_mask.repeat_interleave(n, 0)},
        )  # fmt: skip
        sequences, sums = out.sequences.view(b, n, -1), out.scores.view(b, n)
        lengths = _lengths(sequences.reshape(b * n, -1), tokenizer.eot).view(b, n)
        ranked = sums / (lengths + 1).float()  # openai/whisper ranks samples by mean log-probability
        pick = ranked.argmax(dim=1)
        rows = torch.arange(b)
        chosen, chosen_sum = sequences[rows, pick], sums[rows, pick]
        first = runner.first.view(b, n, *runner.first.shape[1:])[:, 0]
    elif (options.beam_size or 1) > 1:
        k = options.beam_size
        out = _beam(runner, cache, prompt, max_new, k, options, common)
        chosen = out.sequences
        lengths_with_eot = _lengths(chosen, tokenizer.eot) + chosen.eq(tokenizer.eot).any(dim=1).long()
        chosen_sum = out.scores * lengths_with_eot.clamp(min=1).float() ** (options.length_penalty or 1.0)
        first = runner.first.view(b, k, *runner.first.shape[1:])[:, 0]
    else:
        out = generate(runner, cache, prompt, max_new, strategy="greedy", **common)
        chosen, chosen_sum, first = out.sequences, out.scores, runner.first
    no_speech = torch.zeros(b)
    if tokenizer.no_speech is not None and tokenizer.no_speech < first.shape[-1]:
        no_speech = first[:, sot_index].float().softmax(dim=-1)[:, tokenizer.no_speech].cpu()
    results = []
    lengths = _lengths(chosen, tokenizer.eot)
    for i in range(b):
        tokens = chosen[i, : int(lengths[i])].tolist()
        text = tokenizer.decode(tokens).strip()
        results.append(
            DecodingResult(
                tokens=tokens,
                text=text,
                avg_logprob=float(chosen_sum[i]) / (len(tokens) + 1),
                no_speech_prob=float(no_speech[i]),
                temperature=temperature,
                compression_ratio=compression_ratio(text),
                language=languages[i],
                language_probs=language_probs[i],
            )
        )
    return results


def _lengths(sequences: Tensor, eot: int) -> Tensor:
    """Tokens before the first end-of-text in each row (B, L) -> (B,)."""
    is_eot = sequences.eq(eot)
    first = torch.where(is_eot.any(dim=1), is_eot.float().argmax(dim=1), torch.full_like(is_eot[:, 0], 0).long())
    return torch.where(is_eot.any(dim=1), first, torch.full_like(first, sequences.shape[1]))


def _beam(runner, cache, prompt: Tensor, max_new: int, k: int, options: DecodingOptions, common: dict):
    """Beam search (transformers' algorithm; ``patience`` widens the finished set, as openai/whisper's)."""
    return generate(
        runner, cache, prompt, max_new, strategy="beam", num_beams=k,
        length_penalty=1.0 if options.length_penalty is None else options.length_penalty,
        patience=1.0 if options.patience is None else options.patience, **common,
    )  # fmt: skip


def _needs_fallback(result: DecodingResult, options: DecodingOptions) -> bool:
    ratio_limit = options.compression_ratio_threshold
    if ratio_limit is not None and result.compression_ratio > ratio_limit:
        return True
    if options.logprob_threshold is not None and result.avg_logprob < options.logprob_threshold:
        silent = options.no_speech_threshold is not None and result.no_speech_prob > options.no_speech_threshold
        return not silent
    return False


@torch.no_grad()
def decode_with_fallback(
    model: Whisper,
    tokenizer: WhisperTokenizer,
    memory: Tensor,
    options: DecodingOptions,
    previous: list[list[int]] | None = None,
    languages: list[str] | None = None,
) -> list[DecodingResult]:
    """Decode windows (B, S, D) at the first temperature, and retry those that fail the thresholds
    at each next one (openai/whisper's ``decode_with_fallback``); the last try is kept.

    ``languages`` gives each window's language; by default ``options.language``, else detected.
    """
    b = memory.shape[0]
    probs: list[dict[str, float]] = [{} for _ in range(b)]
    if languages is None and options.language is None and tokenizer.multilingual:
        probs = detect_language(model, tokenizer, memory)
        languages = [max(p, key=p.get) for p in probs]
    results: list[DecodingResult | None] = [None] * b
    todo = list(range(b))
    for temperature in options.temperatures:
        rows = torch.tensor(todo, device=memory.device)
        decoded = decode_window(
            model,
            tokenizer,
            memory.index_select(0, rows),
            options,
            temperature,
            None if languages is None else [languages[i] for i in todo],
            None if previous is None else [previous[i] for i in todo],
        )
        retry = []
        for i, result in zip(todo, decoded):
            results[i] = replace(result, language_probs=probs[i])
            if _needs_fallback(result, options):
                retry.append(i)
        todo = retry
        if not todo:
            break
    return [r for r in results if r is not None]
