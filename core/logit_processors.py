"""Composable logit processors for generation: forced and suppressed tokens, minimum length,
repetition penalty, no-repeat n-grams and bad words.

A processor is any callable ``processor(generated, logits) -> logits`` where ``generated``
(N, L) int64 holds the tokens generated so far (not the prompt, so ``L`` is the index of the
step being decided) and ``logits`` (N, V) are the scores of the next token. For greedy search
and sampling ``N = B`` and the scores are the raw logits; for beam search ``N = B * K`` (row
``b * K + k`` is hypothesis ``k`` of input ``b``, with its own history) and the scores are
log-probabilities. This follows the ``LogitsProcessor`` conventions of Hugging Face transformers
(Wolf et al. 2020); banned tokens get ``-inf``. The repetition penalty is CTRL's (Keskar et al.
2019); the n-gram blocking is that of Paulus et al. 2018 (Klein et al. 2017, OpenNMT).

Shape legend: N rows (B, or B * K for beam search), L generated length, V vocabulary.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor

__all__ = [
    "BadWords",
    "ForcedTokens",
    "LogitProcessor",
    "LogitProcessorList",
    "MinLength",
    "NoRepeatNGram",
    "RepetitionPenalty",
    "SuppressTokens",
    "SuppressTokensAtBegin",
    "build_logit_processors",
]

NEG_INF = float("-inf")


def _token_id(value: object, what: str) -> int:
    """``value`` as a non-negative int token id, or a ValueError naming ``what``."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer token id, got {value!r}")
    try:
        index = operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be an integer token id, got {value!r}") from None
    if index < 0:
        raise ValueError(f"{what} must be a non-negative token id, got {index}")
    return index


def _token_ids(values: Iterable[object], what: str) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValueError(f"{what} must be a sequence of token ids, got {values!r}")
    return tuple(_token_id(v, what) for v in values)


def _check_inputs(generated: Tensor, logits: Tensor, largest_id: int) -> None:
    if generated.dim() != 2 or logits.dim() != 2 or generated.shape[0] != logits.shape[0]:
        raise ValueError(
            f"expected generated (N, L) and logits (N, V), got {tuple(generated.shape)} and {tuple(logits.shape)}"
        )
    if largest_id >= logits.shape[1]:
        raise ValueError(f"token id {largest_id} is outside the vocabulary of size {logits.shape[1]}")


def _ban(logits: Tensor, banned: Tensor) -> Tensor:
    """Set to -inf the logits where the (N, V) bool mask ``banned`` is True."""
    return logits.masked_fill(banned, NEG_INF)


def _mark(n: int, vocab: int, ids: Tensor, keep: Tensor | None = None) -> Tensor:
    """(N, V) bool mask, True at ``ids`` (N, M) where ``keep`` (N, M) is True (all when None)."""
    counts = torch.zeros(n, vocab, device=ids.device)
    weight = torch.ones(ids.shape, device=ids.device) if keep is None else keep.float()
    return counts.scatter_add_(1, ids, weight) > 0  # scatter_add: duplicates with mixed keep are safe


class LogitProcessor:
    """Base class: checks shapes and token ids, then calls :meth:`process`.

    Subclasses set ``largest_id`` (the largest token id they index, -1 when none) and implement
    :meth:`process`. Any plain callable with the same signature can be used in its place.
    """

    largest_id: int = -1

    def __call__(self, generated: Tensor, logits: Tensor) -> Tensor:
        """Processed logits (N, V) for tokens ``generated`` (N, L) and scores ``logits`` (N, V)."""
        _check_inputs(generated, logits, self.largest_id)
        return self.process(generated, logits)

    def process(self, generated: Tensor, logits: Tensor) -> Tensor:
        raise NotImplementedError


class ForcedTokens(LogitProcessor):
    """Force a given token at given generation steps (every other logit -inf, the forced one 0).

    This is how a multilingual or Whisper-style decoder is given several start tokens after its
    prompt (language, task, ...), as ``forced_decoder_ids`` in Hugging Face transformers.

    Args:
        tokens: mapping from step index (0 = first generated token) to the token id to force
            there, or an iterable of ``(step, token)`` pairs.
    """

    def __init__(self, tokens: Mapping[int, int] | Iterable[tuple[int, int]]):
        try:
            pairs = dict(tokens)
        except (TypeError, ValueError):
            raise ValueError(f"tokens must map step index -> token id, got {tokens!r}") from None
        self.tokens = {_token_id(s, "forced step index"): _token_id(t, "forced token") for s, t in pairs.items()}
        self.largest_id = max(self.tokens.values(), default=-1)

    def process(self, generated: Tensor, logits: Tensor) -> Tensor:
        token = self.tokens.get(generated.shape[1])
        if token is None:
            return logits
        forced = torch.full_like(logits, NEG_INF)
        forced[:, token] = 0.0
        return forced


class SuppressTokens(LogitProcessor):
    """Never emit the given tokens (their logits are always -inf).

    Args:
        token_ids: the ids to suppress (may be empty).
    """

    def __init__(self, token_ids: Iterable[int]):
        self.token_ids = _token_ids(token_ids, "suppressed token")
        self.largest_id = max(self.token_ids, default=-1)

    def process(self, generated: Tensor, logits: Tensor) -> Tensor:
        if not self.token_ids:
            return logits
        out = logits.clone()
        out[:, list(self.token_ids)] = NEG_INF
        return out


class SuppressTokensAtBegin(SuppressTokens):
    """Suppress the given tokens at one step only, e.g. EOS or blank as the first token.

    Args:
        token_ids: the ids to suppress at that step.
        begin_index: the step (0 = first generated token); set it past any forced start
            tokens so the suppression applies to the first freely chosen token.
    """

    def __init__(self, token_ids: Iterable[int], begin_index: int = 0):
        super().__init__(token_ids)
        if isinstance(begin_index, bool) or not isinstance(begin_index, int) or begin_index < 0:
            raise ValueError(f"begin_index must be a non-negative int, got {begin_index!r}")
        self.begin_index = begin_index

    def process(self, generated: Tensor, logits: Tensor) -> Tensor:
        return super().process(generated, logits) if generated.shape[1] == self.begin_index else logits


class MinLength(LogitProcessor):
    """Forbid EOS until ``min_new_tokens`` tokens have been generated.

    Args:
        min_new_tokens: the fewest tokens before EOS (EOS itself is token ``min_new_tokens + 1``
            at the earliest, so an output has at least ``min_new_tokens`` non-EOS tokens).
        eos_id: the end-of-sequence token.
    """

    def __init__(self, min_new_tokens: int, eos_id: int):
        if isinstance(min_new_tokens, bool) or not isinstance(min_new_tokens, int) or min_new_tokens < 0:
            raise ValueError(f"min_new_tokens must be a non-negative int, got {min_new_tokens!r}")
        self.min_new_tokens = min_new_tokens
        self.eos_id = _token_id(eos_id, "eos_id")
        self.largest_id = self.eos_id

    def process(self, generated: Tensor, logits: Tensor) -> Tensor:
        if generated.shape[1] >= self.min_new_tokens:
            return logits
        out = logits.clone()
        out[:, self.eos_id] = NEG_INF
        return out


class RepetitionPenalty(LogitProcessor):
    """CTRL's repetition penalty (Keskar et al. 2019), with Hugging Face's sign handling.

    The logit of every token already generated in the row is divided by ``penalty`` when
    positive and multiplied by it when negative, so ``penalty > 1`` discourages repeats (each
    token is penalised once, however often it occurred).

    Prompt tokens are *not* penalised by default: the processor sees only the generated tokens,
    which for an encoder-decoder model is everything the decoder wrote. Hugging Face also
    penalises a decoder-only model's prompt; pass ``prompt`` to do the same.

    Args:
        penalty: strictly positive; 1 leaves the logits unchanged.
        prompt: optional (B, T) prompt tokens also counted as seen. With N = B * K rows (beam
            search) each prompt row is repeated for its K hypotheses.
        prompt_mask: optional (B, T) bool, True = real token; padding is then not penalised.
    """

    def __init__(self, penalty: float, prompt: Tensor | None = None, prompt_mask: Tensor | None = None):
        if isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or not penalty > 0:
            raise ValueError(f"repetition penalty must be a positive number, got {penalty!r}")
        if prompt is not None and prompt.dim() != 2:
            raise ValueError(f"prompt must be token ids (B, T), got shape {tuple(prompt.shape)}")
        if prompt_mask is not None and (prompt is None or prompt_mask.shape != prompt.shape):
            raise ValueError("prompt_mask needs a prompt of the same shape")
        self.penalty = float(penalty)
        self.prompt, self.prompt_mask = prompt, prompt_mask
        self.largest_id = -1 if prompt is None or prompt.numel() == 0 else int(prompt.max())

    def _seen_in_prompt(self, n: int, vocab: int) -> Tensor | None:
        if self.prompt is None:
            return None
        prompt, mask = self.prompt, self.prompt_mask
        if prompt.shape[0] != n:
            if n % prompt.shape[0]:
                raise ValueError(f"{n} rows cannot be matched to a prompt of batch {prompt.shape[0]}")
            repeats = n // prompt.shape[0]
            prompt = prompt.repeat_interleave(repeats, 0)
            mask = None if mask is None else mask.repeat_interleave(repeats, 0)
        return _mark(n, vocab, prompt.to(torch.long), mask)

    def process(self, generated: Tensor, logits: Tensor) -> Tensor:
        n, vocab = logits.shape
        seen = _mark(n, vocab, generated)
        from_prompt = self._seen_in_prompt(n, vocab)
        if from_prompt is not None:
            seen = seen | from_prompt.to(seen.device)
        penalised = torch.where(logits < 0, logits * self.penalty, logits / self.penalty)
        return torch.where(seen, penalised, logits)


class NoRepeatNGram(LogitProcessor):
    """Ban every token that would complete an n-gram already present in the generated tokens.

    Args:
        ngram_size: n >= 1 (1 bans every token already generated).
    """

    def __init__(self, ngram_size: int):
        if isinstance(ngram_size, bool) or not isinstance(ngram_size, int) or ngram_size < 1:
            raise ValueError(f"ngram_size must be a positive int, got {ngram_size!r}")
        self.n = ngram_size

    def process(self, generated: Tensor, logits: Tensor) -> Tensor:
        n, length = self.n, generated.shape[1]
        if length < n:
            return logits
        windows = generated.unfold(1, n, 1)  # (N, L - n + 1, n): every n-gram so far
        prefix = generated[:, length - n + 1 :]  # (N, n - 1): what the next token would extend
        match = windows[:, :, :-1].eq(prefix.unsqueeze(1)).all(-1)  # (N, L - n + 1)
        return _ban(logits, _mark(logits.shape[0], logits.shape[1], windows[:, :, -1], match))


class BadWords(LogitProcessor):
    """Never produce any of the given token sequences.

    A sequence's last token is banned when the row's generated tokens end with the rest of it;
    a single-token sequence is always banned.

    Args:
        sequences: non-empty token-id sequences (a list of lists).
    """

    def __init__(self, sequences: Iterable[Sequence[int]]):
        if isinstance(sequences, (str, bytes)) or not isinstance(sequences, Iterable):
            raise ValueError(f"bad words must be a list of token-id sequences, got {sequences!r}")
        self.sequences = tuple(_token_ids(s, "bad word token") for s in sequences)
        if not self.sequences or any(len(s) == 0 for s in self.sequences):
            raise ValueError(f"bad words must be a non-empty list of non-empty sequences, got {sequences!r}")
        self.always = tuple(sorted({s[0] for s in self.sequences if len(s) == 1}))
        self.largest_id = max(max(s) for s in self.sequences)

    def process(self, generated: Tensor, logits: Tensor) -> Tensor:
        banned = torch.zeros_like(logits, dtype=torch.bool)
        banned[:, list(self.always)] = True
        length = generated.shape[1]
        for seq in self.sequences:
            head = len(seq) - 1
            if head == 0 or head > length:
                continue
            tail = torch.tensor(seq[:-1], dtype=generated.dtype, device=generated.device)
            banned[:, seq[-1]] |= generated[:, length - head :].eq(tail).all(-1)
        return _ban(logits, banned)


class LogitProcessorList(list):
    """A list of processors, itself a processor applying them in order.

    Args:
        processors: callables ``(generated (N, L), logits (N, V)) -> logits (N, V)``.
    """

    def __init__(self, processors: Iterable[Callable[[Tensor, Tensor], Tensor]] = ()):
        super().__init__(processors)
        for p in self:
            if not callable(p):
                raise ValueError(f"a logit processor must be callable, got {p!r}")

    def __call__(self, generated: Tensor, logits: Tensor) -> Tensor:
        for processor in self:
            logits = processor(generated, logits)
        return logits


def build_logit_processors(
    eos_id: int | None = None,
    forced_tokens: Mapping[int, int] | Iterable[tuple[int, int]] | None = None,
    suppress_tokens: Iterable[int] | None = None,
    begin_suppress_tokens: Iterable[int] | None = None,
    min_new_tokens: int | None = None,
    repetition_penalty: float | None = None,
    no_repeat_ngram_size: int | None = None,
    bad_words: Iterable[Sequence[int]] | None = None,
) -> LogitProcessorList:
    """The processors for the usual generation options, in a fixed order.

    Order: repetition penalty, no-repeat n-gram, bad words, minimum length, suppressed tokens,
    begin-suppressed tokens, forced tokens (last, so a forced token always wins). ``None``
    (and 0 for ``min_new_tokens`` / ``no_repeat_ngram_size``, 1 for ``repetition_penalty``)
    leaves an option off. ``begin_suppress_tokens`` applies at the first step that is not
    forced: after forced start tokens at steps 0, 1, ... it suppresses the first free token.

    Raises:
        ValueError: for an invalid option, or ``min_new_tokens`` without ``eos_id``.
    """
    out = LogitProcessorList()
    if repetition_penalty is not None:
        penalty = RepetitionPenalty(repetition_penalty)
        if penalty.penalty != 1.0:
            out.append(penalty)
    if no_repeat_ngram_size:
        out.append(NoRepeatNGram(no_repeat_ngram_size))
    if bad_words is not None:
        out.append(BadWords(bad_words))
    if min_new_tokens:
        if eos_id is None:
            raise ValueError("min_new_tokens needs eos_id (the token it holds back)")
        out.append(MinLength(min_new_tokens, eos_id))
    if suppress_tokens is not None:
        out.append(SuppressTokens(suppress_tokens))
    forced = None if forced_tokens is None else ForcedTokens(forced_tokens)
    if begin_suppress_tokens is not None:
        begin = 0
        while forced is not None and begin in forced.tokens:
            begin += 1
        out.append(SuppressTokensAtBegin(begin_suppress_tokens, begin_index=begin))
    if forced is not None:
        out.append(forced)
    return out
