"""Pretraining objectives: BERT masking, span masking, next-token targets, token cross-entropy and CTC beam search."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from polyformer.core.objectives import (
    IGNORE_INDEX,
    contiguous_spans,
    ctc_beam_search,
    ctc_greedy_decode,
    mask_spans,
    mask_tokens,
    maskable_positions,
    next_token_targets,
    token_cross_entropy,
)

PAD, CLS, SEP, MASK = 0, 1, 2, 3
SPECIALS = (PAD, CLS, SEP, MASK)
VOCAB = 1000


def corpus(rows=400, length=512, seed=0, vocab=VOCAB):
    """[CLS] tokens [SEP] [PAD]..., a quarter of the rows padded; plus the padding mask (True = real)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(len(SPECIALS), vocab, (rows, length), generator=generator)
    lengths = torch.full((rows,), length)
    lengths[: rows // 4] = torch.randint(length // 4, length, (rows // 4,), generator=generator)
    real = torch.arange(length) < lengths[:, None]
    ids[:, 0] = CLS
    ids[torch.arange(rows), lengths - 1] = SEP
    return ids.masked_fill(~real, PAD), real


def bert(ids, seed=0, **options):
    options = {"mask_id": MASK, "vocab_size": VOCAB, "special_ids": (CLS, SEP), "pad_id": PAD, **options}
    return mask_tokens(ids, generator=torch.Generator().manual_seed(seed), **options)


def runs(row):
    """(start, length) of each run of True in a 1-D bool tensor."""
    out, start = [], None
    for i, value in enumerate(row.tolist() + [False]):
        if value and start is None:
            start = i
        elif not value and start is not None:
            out.append((start, i - start))
            start = None
    return out


# -- BERT masking ---------------------------------------------------------------------------------------------


def test_bert_rates_on_200k_tokens():
    ids, _ = corpus()
    out = bert(ids)
    maskable = maskable_positions(ids, special_ids=SPECIALS)
    selected = out.selected
    assert maskable.sum() > 150_000
    assert selected.sum() / maskable.sum() == pytest.approx(0.15, abs=0.004)
    n = selected.sum()
    to_mask = (out.inputs.eq(MASK) & selected).sum() / n
    unchanged = (out.inputs.eq(ids) & selected).sum() / n  # includes random draws of the original (1 in ~1000)
    assert to_mask == pytest.approx(0.8, abs=0.01)
    assert unchanged == pytest.approx(0.1, abs=0.01)
    assert 1 - to_mask - unchanged == pytest.approx(0.1, abs=0.01)


def test_specials_and_padding_are_never_selected_nor_changed():
    ids, real = corpus(rows=200, length=128)
    ids[5, 10:20] = MASK  # a MASK already in the data is special too
    for options in ({"pad_id": PAD}, {"pad_id": None, "attention_mask": real, "special_ids": (PAD, CLS, SEP)}):
        out = bert(ids, mask_prob=0.9, **options)  # a high rate: a bug would show
        protected = torch.isin(ids, torch.tensor(SPECIALS))
        assert not out.selected[protected].any()
        assert torch.equal(out.inputs[~out.selected], ids[~out.selected])
        random_tokens = out.selected & out.inputs.ne(MASK) & out.inputs.ne(ids)
        assert random_tokens.sum() > 100
        assert not torch.isin(out.inputs[random_tokens], torch.tensor(SPECIALS)).any()


def test_padding_from_attention_mask_alone_is_protected():
    ids = torch.randint(4, VOCAB, (64, 32))
    real = torch.arange(32) < torch.randint(1, 32, (64, 1))  # padding with ordinary ids: only the mask knows
    out = mask_tokens(ids, mask_id=MASK, vocab_size=VOCAB, attention_mask=real, mask_prob=0.9)
    assert not out.selected[~real].any() and torch.equal(out.inputs[~real], ids[~real])
    assert out.selected[real].float().mean() > 0.85


def test_labels_are_the_original_ids_exactly_where_selected():
    ids, _ = corpus(rows=50, length=64)
    out = bert(ids, mask_prob=0.5)
    assert out.labels.dtype == torch.int64 and out.inputs.dtype == ids.dtype
    assert torch.equal(out.labels[out.selected], ids[out.selected])
    assert out.labels[~out.selected].eq(IGNORE_INDEX).all()
    assert torch.equal(out.selected, out.labels.ne(IGNORE_INDEX))


def test_seeded_generator_is_deterministic():
    ids, _ = corpus(rows=20, length=64)
    a, b, c = bert(ids, seed=7), bert(ids, seed=7), bert(ids, seed=8)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, c.labels)
    torch.manual_seed(3)
    d = mask_tokens(ids, mask_id=MASK, vocab_size=VOCAB, special_ids=(CLS, SEP), pad_id=PAD)
    torch.manual_seed(3)
    e = mask_tokens(ids, mask_id=MASK, vocab_size=VOCAB, special_ids=(CLS, SEP), pad_id=PAD)
    assert torch.equal(d.inputs, e.inputs)


def test_only_mask_or_only_random_or_only_keep():
    ids, _ = corpus(rows=50, length=64)
    masked = bert(ids, replace_prob=1.0, random_prob=0.0)
    assert masked.inputs[masked.selected].eq(MASK).all()
    kept = bert(ids, replace_prob=0.0, random_prob=0.0)
    assert torch.equal(kept.inputs, ids) and kept.selected.any()
    drawn = bert(ids, replace_prob=0.0, random_prob=1.0, random_ids=[10, 11, 12])
    assert torch.isin(drawn.inputs[drawn.selected], torch.tensor([10, 11, 12])).all()


def test_random_tokens_cover_the_non_special_vocabulary():
    ids = torch.full((200, 100), 7)
    out = mask_tokens(ids, mask_id=MASK, vocab_size=12, special_ids=(CLS, SEP), pad_id=PAD, mask_prob=0.9,
                      replace_prob=0.0, random_prob=1.0)  # fmt: skip
    assert set(out.inputs[out.selected].tolist()) == set(range(4, 12))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"mask_prob": 0.0}, "mask_prob"),
        ({"mask_prob": 1.0}, "mask_prob"),
        ({"mask_prob": float("nan")}, "mask_prob"),
        ({"replace_prob": 0.95, "random_prob": 0.1}, "<= 1"),
        ({"random_prob": -0.1}, "random_prob"),
        ({"mask_id": VOCAB}, "mask_id"),
        ({"special_ids": (CLS, 5000)}, "special_ids"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"random_ids": []}, "random replacements"),
        ({"random_ids": [[4, 5]]}, "random_ids"),
        ({"random_ids": [4, VOCAB]}, "random_ids"),
        ({"attention_mask": torch.ones(2, 8, dtype=torch.long)}, "bool"),
        ({"attention_mask": torch.ones(2, 7, dtype=torch.bool)}, "shape"),
    ],
)
def test_bad_arguments_raise(options, message):
    ids = torch.randint(4, 100, (2, 8))
    with pytest.raises(ValueError, match=message):
        bert(ids, **options)


def test_bad_ids_raise():
    with pytest.raises(ValueError, match="integer"):
        bert(torch.rand(2, 8))
    with pytest.raises(ValueError, match="shape"):
        bert(torch.randint(4, 100, (8,)))
    with pytest.raises(ValueError, match=r"\[0, 1000\)"):
        bert(torch.tensor([[5, 1000]]))
    with pytest.raises(ValueError, match="random replacements"):
        mask_tokens(torch.tensor([[1, 2]]), mask_id=3, vocab_size=4, special_ids=(0, 1, 2))
    out = mask_tokens(torch.tensor([[3, 3]]), mask_id=3, vocab_size=4, special_ids=(0, 1, 2), random_prob=0.0)
    assert not out.selected.any()  # nothing maskable, nothing random needed: fine


# -- span masking ---------------------------------------------------------------------------------------------


def reference_spans(starts, maskable, length, left):
    """Each start covers start-left .. start-left+length-1, stopping at the first non-maskable token either way."""
    covered = torch.zeros_like(starts)
    for b, s in starts.nonzero().tolist():
        if not maskable[b, s]:
            continue
        for i in range(s, s - left - 1, -1):
            if i < 0 or not maskable[b, i]:
                break
            covered[b, i] = True
        for i in range(s, s - left + length):
            if i >= starts.shape[1] or not maskable[b, i]:
                break
            covered[b, i] = True
    return covered


@pytest.mark.parametrize("length, centered", [(1, False), (3, False), (6, False), (6, True), (5, True)])
def test_contiguous_spans_match_a_reference(length, centered):
    generator = torch.Generator().manual_seed(length)
    starts = torch.rand(30, 40, generator=generator) < 0.08
    maskable = torch.rand(30, 40, generator=generator) < 0.85
    left = (length - 1) // 2 if centered else 0
    expected = reference_spans(starts, maskable, length, left)
    assert torch.equal(contiguous_spans(length, centered=centered)(starts, maskable), expected)


def test_a_lone_start_covers_exactly_its_span():
    starts = torch.zeros(1, 20, dtype=torch.bool)
    starts[0, 8] = True
    maskable = torch.ones(1, 20, dtype=torch.bool)
    assert contiguous_spans(6)(starts, maskable)[0].nonzero().flatten().tolist() == [8, 9, 10, 11, 12, 13]
    centered = contiguous_spans(6, centered=True)(starts, maskable)  # DNABERT's 6-mer window: -2 .. +3
    assert centered[0].nonzero().flatten().tolist() == [6, 7, 8, 9, 10, 11]
    maskable[0, 11] = False  # a special token cuts the span
    assert contiguous_spans(6)(starts, maskable)[0].nonzero().flatten().tolist() == [8, 9, 10]


def test_span_masking_masks_whole_spans_never_specials_and_keeps_the_rate():
    ids, _ = corpus()
    k = 6
    out = mask_spans(ids, span_fn=contiguous_spans(k), mask_id=MASK, vocab_size=VOCAB, special_ids=(CLS, SEP),
                     pad_id=PAD, generator=torch.Generator().manual_seed(0))  # fmt: skip
    maskable = maskable_positions(ids, special_ids=SPECIALS)
    selected = out.selected
    assert not selected[~maskable].any()
    assert torch.equal(out.labels[selected], ids[selected])
    # every run of masked tokens is at least k long unless it ends at an edge, a special token or padding
    short = 0
    for b in range(ids.shape[0]):
        for start, length in runs(selected[b]):
            if length < k:
                short += 1
                end = start + length
                assert end == ids.shape[1] or not maskable[b, end], (b, start, length)
    assert short > 0  # clipped spans do occur (the spans reach SEP)
    # expected fraction: a token with n possible covering starts is masked with probability 1 - (1 - p) ** n
    p = contiguous_spans(k).start_prob(0.15)
    index = torch.arange(ids.shape[1])
    segment_start = torch.where(~maskable, index + 1, 0).cummax(dim=1).values
    n_starts = (index - segment_start + 1).clamp(max=k)
    expected = (1 - (1 - p) ** n_starts.double())[maskable].mean()
    assert 0.145 < expected < 0.15
    assert selected.sum() / maskable.sum() == pytest.approx(expected.item(), abs=0.004)


def test_replacement_is_decided_per_span_by_default():
    ids, _ = corpus(rows=400, length=256)
    options = dict(span_fn=contiguous_spans(4), mask_id=MASK, vocab_size=VOCAB, special_ids=(CLS, SEP), pad_id=PAD)
    out = mask_spans(ids, generator=torch.Generator().manual_seed(1), **options)
    kinds = []
    for b in range(ids.shape[0]):
        for start, length in runs(out.selected[b]):
            got, original = out.inputs[b, start : start + length], ids[b, start : start + length]
            if got.eq(MASK).all():
                kinds.append("mask")
            elif got.eq(original).all():
                kinds.append("keep")
            else:
                assert not got.eq(MASK).any() and got.ne(original).float().mean() > 0.5
                kinds.append("random")
    assert len(kinds) > 3000
    for kind, share in (("mask", 0.8), ("keep", 0.1), ("random", 0.1)):
        assert kinds.count(kind) / len(kinds) == pytest.approx(share, abs=0.03)
    per_token = mask_spans(ids, generator=torch.Generator().manual_seed(1), per_span=False, **options)
    mixed = sum(
        1
        for b in range(50)
        for start, length in runs(per_token.selected[b])
        if 0 < per_token.inputs[b, start : start + length].eq(MASK).sum() < length
    )
    assert mixed > 20


def test_span_masking_is_deterministic_and_validates():
    ids, _ = corpus(rows=20, length=64)
    options = dict(span_fn=contiguous_spans(3), mask_id=MASK, vocab_size=VOCAB, special_ids=(CLS, SEP), pad_id=PAD)
    a = mask_spans(ids, generator=torch.Generator().manual_seed(2), **options)
    b = mask_spans(ids, generator=torch.Generator().manual_seed(2), **options)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)

    def everything(starts, maskable, generator):
        return torch.ones_like(starts)

    out = mask_spans(ids, span_fn=everything, start_prob=0.1, mask_id=MASK, vocab_size=VOCAB, pad_id=PAD)
    assert torch.equal(out.selected, maskable_positions(ids, special_ids=(MASK,), pad_id=PAD))
    with pytest.raises(ValueError, match="start_prob"):
        mask_spans(ids, span_fn=everything, mask_id=MASK, vocab_size=VOCAB)
    with pytest.raises(ValueError, match="start_prob"):
        mask_spans(ids, span_fn=everything, start_prob=0.0, mask_id=MASK, vocab_size=VOCAB)
    with pytest.raises(ValueError, match="bool tensor"):
        mask_spans(ids, span_fn=lambda s, m, g: s.long(), start_prob=0.1, mask_id=MASK, vocab_size=VOCAB)
    with pytest.raises(ValueError, match="span_length"):
        contiguous_spans(0)
    with pytest.raises(ValueError, match="mask_prob"):
        mask_spans(ids, span_fn=contiguous_spans(3), mask_id=MASK, vocab_size=VOCAB, mask_prob=1.5)


# -- next-token targets ---------------------------------------------------------------------------------------


def test_next_token_targets_ignore_padding_on_either_side():
    ids = torch.tensor([[5, 6, 7, 8, 0, 0], [0, 0, 5, 6, 7, 8]])
    inputs, targets, mask = next_token_targets(ids, pad_id=0)
    assert torch.equal(inputs, ids[:, :-1])
    x = IGNORE_INDEX
    assert targets.tolist() == [[6, 7, 8, x, x], [x, x, 6, 7, 8]]  # 5 after padding has no real context
    assert mask.tolist() == [[True] * 4 + [False], [False, False, True, True, True]]
    same = next_token_targets(ids, attention_mask=ids.ne(0))
    assert torch.equal(same.targets, targets) and torch.equal(same.attention_mask, mask)


def test_next_token_targets_without_padding_info_keep_every_target():
    ids = torch.tensor([[5, 6, 0], [7, 8, 9]], dtype=torch.int32)
    inputs, targets, mask = next_token_targets(ids)
    assert mask is None and targets.dtype == torch.int64
    assert targets.tolist() == [[6, 0], [8, 9]] and inputs.tolist() == [[5, 6], [7, 8]]
    with pytest.raises(ValueError, match="at least 2"):
        next_token_targets(ids[:, :1])
    with pytest.raises(ValueError, match="integer"):
        next_token_targets(ids.float())
    with pytest.raises(ValueError, match="bool"):
        next_token_targets(ids, attention_mask=torch.ones(2, 3))


# -- token cross-entropy --------------------------------------------------------------------------------------


def test_token_cross_entropy_is_the_mean_over_labelled_tokens():
    logits = torch.randn(3, 5, 11)
    labels = torch.randint(0, 11, (3, 5))
    labels[0, :3] = IGNORE_INDEX
    labels[2, 4] = IGNORE_INDEX
    keep = labels.ne(IGNORE_INDEX)
    expected = F.cross_entropy(logits[keep], labels[keep])
    torch.testing.assert_close(token_cross_entropy(logits, labels), expected)
    smoothed = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), label_smoothing=0.1)
    torch.testing.assert_close(token_cross_entropy(logits, labels, label_smoothing=0.1), smoothed)
    half = token_cross_entropy(logits.bfloat16(), labels)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, expected, atol=0.05, rtol=0)


def test_token_cross_entropy_without_labels_is_zero_with_a_gradient():
    logits = torch.randn(2, 4, 7, requires_grad=True)
    loss = token_cross_entropy(logits, torch.full((2, 4), IGNORE_INDEX))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() == 0


def test_token_cross_entropy_validates():
    with pytest.raises(ValueError, match="match"):
        token_cross_entropy(torch.randn(2, 4, 7), torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        token_cross_entropy(torch.randn(2, 4, 7), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="floating"):
        token_cross_entropy(torch.zeros(2, 4, 7, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="label_smoothing"):
        token_cross_entropy(torch.randn(2, 4, 7), torch.zeros(2, 4, dtype=torch.long), label_smoothing=1.0)


def _most_likely_labelling(log_probs: torch.Tensor, blank: int) -> list[int]:
    """By brute force: every path of (S, V) frames, collapsed, its probability summed per labelling."""
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(log_probs.shape[1]), repeat=log_probs.shape[0]):
        score = sum(log_probs[t, c].item() for t, c in enumerate(path))
        labels = tuple(c for t, c in enumerate(path) if c != blank and (t == 0 or path[t - 1] != c))
        totals[labels] = math.log(math.exp(totals.get(labels, -math.inf)) + math.exp(score))
    return list(max(totals, key=totals.get))


@pytest.mark.parametrize("blank", [0, 2])
def test_ctc_beam_search_with_a_wide_beam_finds_the_most_likely_labelling(blank):
    """Exact against brute force on 5 frames of 3 classes; greedy (the best single path) often is not."""
    greedy_wrong = 0
    for seed in range(30):
        logits = torch.randn(1, 5, 3, generator=torch.Generator().manual_seed(seed)) * 1.5
        exact = _most_likely_labelling(logits[0].log_softmax(dim=-1), blank)
        assert ctc_beam_search(logits, blank=blank, beam_size=243) == [exact], seed
        greedy_wrong += ctc_greedy_decode(logits, blank=blank) != [exact]
    assert greedy_wrong >= 5


def test_ctc_beam_search_reads_only_the_real_frames_and_merges_repeats():
    frames = torch.full((2, 7, 5), -5.0)
    for t, best in enumerate([0, 2, 2, 0, 2, 3, 3]):
        frames[:, t, best] = 5.0
    assert ctc_beam_search(frames, torch.tensor([7, 3]), beam_size=3) == [[2, 2, 3], [2]]
    assert ctc_beam_search(frames[:, :0], beam_size=2) == [[], []]  # no frames: nothing said


def test_ctc_beam_search_refuses_bad_arguments():
    with pytest.raises(ValueError, match="beam_size must be at least 1"):
        ctc_beam_search(torch.randn(1, 4, 3), beam_size=0)
    with pytest.raises(ValueError, match=r"blank must be a class in \[0, 3\)"):
        ctc_beam_search(torch.randn(1, 4, 3), blank=3)
    with pytest.raises(ValueError, match="logits must be a floating tensor"):
        ctc_beam_search(torch.zeros(1, 4, 3, dtype=torch.long))
