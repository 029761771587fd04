"""Logit processors on constructed logits, and end to end through greedy, sampling and beam search."""

import pytest
import torch
from fake_decoders import LastTokenModel

from polyformer.core import create_model
from polyformer.core.generation import beam_search, generate, greedy_search, sample
from polyformer.core.logit_processors import (
    BadWords,
    ForcedTokens,
    LogitProcessorList,
    MinLength,
    NoRepeatNGram,
    RepetitionPenalty,
    SuppressTokens,
    SuppressTokensAtBegin,
    build_logit_processors,
)

PAD, BOS, EOS = 0, 1, 2
INF = float("-inf")
V = 8


def _gen(rows):
    return torch.tensor(rows, dtype=torch.long).view(len(rows), -1)


class PrefModel(LastTokenModel):
    """After token ``last``, the tokens of ``prefs[last]`` are preferred in that order."""

    def __init__(self, prefs, vocab=V):
        table = torch.zeros(vocab, vocab)
        for last, order in prefs.items():
            for rank, token in enumerate(order):
                table[last, token] = 10.0 - rank
        super().__init__(table)


def _run(strategy, model, prompt=None, **options):
    prompt = torch.tensor([[BOS]]) if prompt is None else prompt
    if strategy == "sample":
        options.setdefault("generator", torch.Generator().manual_seed(0))
    if strategy == "beam":
        options.setdefault("num_beams", 3)
    options.setdefault("max_new_tokens", 6)
    return generate(model, PrefModel.Cache(), prompt, strategy=strategy, pad_id=PAD, **options)


def _outputs(out):
    """Every output sequence: the beams for beam search, else the sequences."""
    seqs = out.beams.flatten(0, 1) if out.beams is not None else out.sequences
    return [s.tolist() for s in seqs]


def _trim(out):
    """The sequences as lists, without trailing padding (beam search runs every row to the same length)."""
    rows = [s.tolist() for s in out.sequences]
    for row in rows:
        while row and row[-1] == PAD:
            row.pop()
    return rows


def _has_repeated_ngram(seq, n):
    grams = [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]
    return len(grams) != len(set(grams))


# ---------------------------------------------------------------- processors on constructed logits


def test_forced_tokens_forces_only_at_their_steps():
    proc = ForcedTokens({0: 5, 2: 3})
    logits = torch.arange(12.0).view(2, 6)
    assert proc(_gen([[], []]), logits).tolist() == [[INF] * 5 + [0.0]] * 2
    assert torch.equal(proc(_gen([[1], [2]]), logits), logits)
    assert proc(_gen([[1, 1], [2, 2]]), logits).tolist() == [[INF, INF, INF, 0.0, INF, INF]] * 2
    assert ForcedTokens([(1, 4)]).tokens == {1: 4}  # pairs, as forced_decoder_ids


def test_suppress_tokens_always_and_at_begin():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    assert SuppressTokens([1, 3])(_gen([[2, 2]]), logits).tolist() == [[0.0, INF, 2.0, INF]]
    assert torch.equal(SuppressTokens([])(_gen([[]]), logits), logits)
    begin = SuppressTokensAtBegin([2])
    assert begin(_gen([[]]), logits).tolist() == [[0.0, 1.0, INF, 3.0]]
    assert begin(_gen([[3]]), logits).tolist() == [[0.0, 1.0, 2.0, 3.0]]
    later = SuppressTokensAtBegin([0, 2], begin_index=2)
    assert later(_gen([[3]]), logits).tolist() == [[0.0, 1.0, 2.0, 3.0]]
    assert later(_gen([[3, 3]]), logits).tolist() == [[INF, 1.0, INF, 3.0]]


def test_min_length_holds_back_eos():
    proc = MinLength(2, eos_id=EOS)
    logits = torch.tensor([[0.5, 1.0, 9.0]])
    assert proc(_gen([[]]), logits).tolist() == [[0.5, 1.0, INF]]
    assert proc(_gen([[1]]), logits).tolist() == [[0.5, 1.0, INF]]
    assert proc(_gen([[1, 1]]), logits).tolist() == [[0.5, 1.0, 9.0]]


def test_repetition_penalty_divides_positive_multiplies_negative():
    logits = torch.tensor([[2.0, -2.0, 4.0, -1.0], [2.0, -2.0, 4.0, -1.0]])
    out = RepetitionPenalty(2.0)(_gen([[0, 1, 1], [3, 3, 3]]), logits)
    assert out.tolist() == [[1.0, -4.0, 4.0, -1.0], [2.0, -2.0, 4.0, -2.0]]
    # Prompt tokens count when given; the prompt row is repeated for N = B * K rows; padding is masked.
    prompt, mask = torch.tensor([[2, 0]]), torch.tensor([[True, False]])
    out = RepetitionPenalty(2.0, prompt=prompt, prompt_mask=mask)(_gen([[1], [3]]), logits)
    assert out.tolist() == [[2.0, -4.0, 2.0, -1.0], [2.0, -2.0, 2.0, -2.0]]
    assert RepetitionPenalty(2.0, prompt=prompt)(_gen([[1], [1]]), logits)[:, 0].tolist() == [1.0, 1.0]


def test_no_repeat_ngram_bans_completions_of_seen_ngrams():
    logits = torch.zeros(2, 6)
    out = NoRepeatNGram(2)(_gen([[3, 4, 3], [1, 2, 3]]), logits)
    assert out.tolist() == [[0, 0, 0, 0, INF, 0], [0] * 6]  # "3 4" seen: 4 banned after 3
    out = NoRepeatNGram(3)(_gen([[1, 2, 1, 2], [1, 2, 5, 2]]), logits)
    assert out.tolist() == [[0, INF, 0, 0, 0, 0], [0] * 6]  # "1 2 1" seen; "5 2 _" is new
    out = NoRepeatNGram(1)(_gen([[1, 5, 1]]), logits[:1])
    assert out.tolist() == [[0, INF, 0, 0, 0, INF]]
    assert torch.equal(NoRepeatNGram(3)(_gen([[1, 1]]), logits[:1]), logits[:1])  # too short to repeat


def test_bad_words_ban_last_token_after_matching_prefix():
    proc = BadWords([[4], [1, 2, 3], [5, 5]])
    logits = torch.zeros(3, 6)
    out = proc(_gen([[0, 1, 2], [1, 2, 0], [2, 0, 5]]), logits)
    assert out.tolist() == [[0, 0, 0, INF, INF, 0], [0, 0, 0, 0, INF, 0], [0, 0, 0, 0, INF, INF]]
    assert proc(_gen([[]]), logits[:1]).tolist() == [[0, 0, 0, 0, INF, 0]]  # prefixes longer than history


def test_processor_list_applies_in_order():
    logits = torch.zeros(1, 4)
    forced_last = LogitProcessorList([SuppressTokens([2]), ForcedTokens({0: 2})])
    assert forced_last(_gen([[]]), logits).tolist() == [[INF, INF, 0.0, INF]]
    suppressed_last = LogitProcessorList([ForcedTokens({0: 2}), SuppressTokens([2])])
    assert suppressed_last(_gen([[]]), logits).tolist() == [[INF] * 4]


def test_build_logit_processors_order_and_begin_index():
    procs = build_logit_processors(
        eos_id=EOS, forced_tokens={0: 5, 1: 6}, suppress_tokens=[3], begin_suppress_tokens=[EOS],
        min_new_tokens=2, repetition_penalty=1.5, no_repeat_ngram_size=3, bad_words=[[4]],
    )
    kinds = [type(p) for p in procs]
    assert kinds == [RepetitionPenalty, NoRepeatNGram, BadWords, MinLength, SuppressTokens, SuppressTokensAtBegin,
                     ForcedTokens]
    assert procs[5].begin_index == 2  # first step after the forced start tokens
    assert build_logit_processors(repetition_penalty=1.0, no_repeat_ngram_size=0, min_new_tokens=0) == []


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ForcedTokens({-1: 3}), "step index"),
        (lambda: ForcedTokens({0: "a"}), "forced token"),
        (lambda: ForcedTokens(5), "map step index"),
        (lambda: SuppressTokens([-1]), "non-negative"),
        (lambda: SuppressTokens("ab"), "sequence of token ids"),
        (lambda: SuppressTokensAtBegin([1], begin_index=-1), "begin_index"),
        (lambda: MinLength(-1, EOS), "min_new_tokens"),
        (lambda: MinLength(2, None), "eos_id"),
        (lambda: RepetitionPenalty(0.0), "positive"),
        (lambda: RepetitionPenalty(-1.0), "positive"),
        (lambda: RepetitionPenalty(1.2, prompt_mask=torch.ones(1, 2, dtype=torch.bool)), "prompt_mask"),
        (lambda: NoRepeatNGram(0), "ngram_size"),
        (lambda: BadWords([]), "non-empty"),
        (lambda: BadWords([[]]), "non-empty"),
        (lambda: BadWords([[1, -2]]), "non-negative"),
        (lambda: LogitProcessorList([1]), "callable"),
        (lambda: build_logit_processors(min_new_tokens=2), "needs eos_id"),
    ],
)
def test_bad_processor_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_processor_inputs():
    with pytest.raises(ValueError, match="outside the vocabulary"):
        SuppressTokens([9])(_gen([[]]), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="expected generated"):
        SuppressTokens([1])(_gen([[], []]), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="cannot be matched"):
        RepetitionPenalty(2.0, prompt=torch.tensor([[1], [2]]))(_gen([[1], [1], [1]]), torch.zeros(3, 4))
    model = PrefModel({BOS: [3]})
    with pytest.raises(ValueError, match="needs eos_id"):
        _run("greedy", model, min_new_tokens=2)


# ---------------------------------------------------------------- end to end

STRATEGIES = ["greedy", "sample", "beam"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_forced_start_tokens_appear_at_their_steps(strategy):
    model = PrefModel({t: [3, 4, EOS] for t in range(V)})
    out = _run(strategy, model, forced_tokens={0: 5, 1: 6, 3: 7}, top_k=2)
    for seq in _outputs(out):
        assert seq[0] == 5 and seq[1] == 6 and seq[3] == 7
    if strategy == "beam":
        assert out.beam_scores.isfinite().all()
    if strategy != "sample":
        assert out.sequences.tolist() == [[5, 6, 3, 7, 3, 3]]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_min_length_prevents_early_eos(strategy):
    model = PrefModel({t: [EOS, 3, 4] for t in range(V)})
    assert _trim(_run(strategy, model, eos_id=EOS, top_k=1)) == [[EOS]]
    out = _run(strategy, model, eos_id=EOS, min_new_tokens=3, top_k=1)
    assert _trim(out) == [[3, 3, 3, EOS]]
    for seq in _outputs(out):
        assert EOS not in seq[:3]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_suppressed_tokens_are_never_emitted(strategy):
    model = PrefModel({t: [EOS, 3, 4, 5] for t in range(V)})
    out = _run(strategy, model, eos_id=EOS, suppress_tokens=[3], begin_suppress_tokens=[EOS], top_k=1)
    assert _trim(out) == [[4, EOS]]  # EOS barred at step 0 only, 3 always
    out = _run(strategy, model, eos_id=EOS, suppress_tokens=[3], begin_suppress_tokens=[EOS], forced_tokens={0: 6})
    for seq in _outputs(out):
        assert 3 not in seq and seq[0] == 6 and seq[1] != EOS  # begin suppression moves past forced tokens


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_no_repeat_ngram_never_repeats(strategy):
    model = PrefModel({BOS: [3, 4], 3: [4, 5, 6, 7], 4: [3, 5, 6], 5: [3, 4, 6], 6: [3, 4, 5], 7: [3]})
    baseline = _run(strategy, model, max_new_tokens=8, top_k=1).sequences[0].tolist()
    assert _has_repeated_ngram(baseline, 2)  # the model loops 3 4 3 4 ... on its own
    out = _run(strategy, model, max_new_tokens=8, no_repeat_ngram_size=2, top_k=2)
    for seq in _outputs(out):
        assert not _has_repeated_ngram(seq, 2), seq
    if strategy == "greedy":
        assert out.sequences.tolist() == [[3, 4, 3, 5, 3, 6, 3, 7]]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_bad_words_are_never_produced(strategy):
    model = PrefModel({t: [3, 5, 4, 6] for t in range(V)})
    out = _run(strategy, model, bad_words=[[4], [3, 5], [3, 3]], max_new_tokens=5, top_k=3)
    for seq in _outputs(out):
        assert 4 not in seq
        pairs = list(zip(seq, seq[1:]))
        assert (3, 5) not in pairs and (3, 3) not in pairs, seq
    if strategy == "greedy":
        assert out.sequences.tolist() == [[3, 6, 3, 6, 3]]


def test_repetition_penalty_end_to_end():
    model = PrefModel({t: [3, 4] for t in range(V)})
    model.table[:, 3], model.table[:, 4] = 2.0, 1.5
    assert _run("greedy", model, max_new_tokens=3).sequences.tolist() == [[3, 3, 3]]
    # After a 3: 3 -> 2 / 2 = 1 < 1.5, so 4; then 4 -> 0.75 < 1, so 3.
    assert _run("greedy", model, max_new_tokens=3, repetition_penalty=2.0).sequences.tolist() == [[3, 4, 3]]


@pytest.mark.parametrize("strategy", ["greedy", "sample"])
def test_callback_streams_the_output_tokens(strategy):
    model = PrefModel({BOS: [3, 4], 3: [4, EOS], 4: [EOS, 3], 5: [EOS], 6: [5]})
    calls = []
    prompt = torch.tensor([[BOS], [6]])
    out = _run(strategy, model, prompt, eos_id=EOS, callback=lambda i, t: calls.append((i, t.clone())), top_k=1)
    assert [i for i, _ in calls] == list(range(out.sequences.shape[1]))
    assert torch.equal(torch.stack([t for _, t in calls], 1), out.sequences)
    assert out.sequences.tolist() == [[3, 4, EOS], [5, EOS, PAD]]


def test_callback_in_beam_search_gets_each_live_beams_newest_token():
    model = PrefModel({BOS: [3, 4, 5], 3: [4, EOS], 4: [EOS, 3], 5: [EOS]})
    calls = []
    out = _run("beam", model, eos_id=EOS, callback=lambda i, t: calls.append((i, t.clone())))
    assert [i for i, _ in calls] == list(range(len(calls))) and len(calls) >= out.sequences.shape[1]
    assert all(t.shape == (1, 3) for _, t in calls)
    assert sorted(calls[0][1][0].tolist()) == [3, 4, 5]  # the first step: the three preferred first tokens
    assert all(EOS not in t[0].tolist() for _, t in calls[:-1])  # live beams never end in EOS
    single = []
    greedy = _run("beam", model, eos_id=EOS, num_beams=1, callback=lambda i, t: single.append(t.clone()))
    streamed = torch.cat(single, 1)  # the live beam's tokens: up to the step where the best one finished
    assert torch.equal(streamed[:, :-1], greedy.sequences[:, :-1]) and greedy.sequences[0, -1] == EOS


def test_beam_processors_see_each_hypothesis_own_history():
    model = PrefModel({BOS: [3, 4, 5], 3: [4, 5, 3], 4: [3, 5, 4], 5: [4, 3, 5], 6: [5, 3, 4]})
    seen = {}

    def record(generated, scores):
        seen[generated.shape[1]] = generated.clone()
        return scores

    prompt = torch.tensor([[BOS], [6]])
    cache = PrefModel.Cache()
    out = beam_search(model, cache, prompt, max_new_tokens=5, num_beams=3, processors=[NoRepeatNGram(2), record])
    assert len(seen) == 5 and seen[0].shape == (6, 0)
    for length, generated in seen.items():
        if length == 0:
            continue
        for b in range(2):
            rows = {tuple(r) for r in generated[3 * b : 3 * b + 3].tolist()}
            for k in range(3):  # every final hypothesis grew from a history its own input saw
                assert tuple(out.beams[b, k, :length].tolist()) in rows
    # The cache was reordered with the hypotheses: it holds each final beam's prompt and tokens but the last.
    assert cache.history[:, 0].tolist() == [BOS] * 3 + [6] * 3
    for b in range(2):
        rows = {tuple(r) for r in cache.history[3 * b : 3 * b + 3, 1:].tolist()}
        assert all(tuple(out.beams[b, k, :-1].tolist()) in rows for k in range(3))
    for seq in _outputs(out):
        assert not _has_repeated_ngram(seq, 2)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_finished_rows_emit_padding_under_processors(strategy):
    # Row 1 ends at once; forcing 5 at step 3 and banning every seen token must not touch its padding.
    model = PrefModel({**{t: [3, 4, 6] for t in range(V)}, 7: [EOS]})
    options = dict(forced_tokens={3: 5}, no_repeat_ngram_size=1, suppress_tokens=[PAD, BOS])
    out = _run(strategy, model, torch.tensor([[BOS], [7]]), eos_id=EOS, max_new_tokens=5, top_k=1, **options)
    assert out.sequences[1].tolist() == [EOS, PAD, PAD, PAD, PAD]
    assert out.sequences[0, 3].item() == 5
    if strategy != "beam":  # beam search may break the tie 3 4 6 / 3 6 4 either way
        assert out.sequences[0, :4].tolist() == [3, 4, 6, 5]
    if strategy == "greedy":  # EOS and 7 tie after 5: argmax takes the first
        assert out.sequences[0].tolist() == [3, 4, 6, 5, EOS]
    assert out.scores.isfinite().all()


def test_beam_one_equals_greedy_with_processors_fake_model():
    model = PrefModel({t: [EOS, 3, 4, 5, 6, 7] for t in range(V)})
    options = dict(eos_id=EOS, max_new_tokens=8, forced_tokens={0: 7}, suppress_tokens=[6],
                   begin_suppress_tokens=[5], min_new_tokens=4, no_repeat_ngram_size=2, bad_words=[[3, 4]])
    greedy = _run("greedy", model, torch.tensor([[BOS], [5]]), **options)
    beam = _run("beam", model, torch.tensor([[BOS], [5]]), num_beams=1, **options)
    assert torch.equal(greedy.sequences, beam.sequences)
    assert greedy.sequences[0].tolist() == [7, 3, 3, 5, EOS]


def test_beam_one_equals_greedy_with_processors_real_model():
    torch.manual_seed(0)
    model = create_model("decoder_lm_tiny", vocab_size=40).eval()
    ids = torch.randint(3, 40, (3, 5))
    options = dict(max_new_tokens=8, forced_tokens={0: 9, 1: 11}, suppress_tokens=[5, 6], min_new_tokens=5,
                   no_repeat_ngram_size=2, bad_words=[[7], [12, 13]], begin_suppress_tokens=[3])
    greedy = model.generate(ids, **options)
    beam = model.generate(ids, num_beams=1, strategy="beam", **options)
    assert torch.equal(greedy.sequences, beam.sequences)
    assert greedy.sequences[:, :2].tolist() == [[9, 11]] * 3


def test_strategy_functions_take_processors_directly():
    model = PrefModel({t: [3, 4] for t in range(V)})
    prompt = torch.tensor([[BOS]])
    procs = [SuppressTokens([3])]
    assert greedy_search(model, PrefModel.Cache(), prompt, 2, processors=procs).sequences.tolist() == [[4, 4]]
    out = sample(model, PrefModel.Cache(), prompt, 2, processors=procs, top_k=1)
    assert out.sequences.tolist() == [[4, 4]]
    out = beam_search(model, PrefModel.Cache(), prompt, 2, num_beams=2, processors=SuppressTokens([3]))
    assert out.sequences.tolist() == [[4, 4]]
