"""DNABERT's k-mer masking: masking a base masks every k-mer over it, so masked bases cannot be
read from the unmasked neighbouring k-mers."""

import random

import pytest
import torch

from polyformer.bio.masking import mask_kmers
from polyformer.bio.tokenizer import KmerTokenizer


def runs(row: torch.Tensor) -> list[tuple[int, int]]:
    """(start, end) of each maximal run of True, end exclusive."""
    out, start = [], None
    for i, value in enumerate(row.tolist() + [False]):
        if value and start is None:
            start = i
        elif not value and start is not None:
            out.append((start, i))
            start = None
    return out


@pytest.mark.parametrize("k", [3, 6])
def test_masked_runs_hide_at_least_one_base_entirely(k):
    tokenizer = KmerTokenizer(k)
    rng = random.Random(k)
    sequences = ["".join(rng.choice("ACGT") for _ in range(200)) for _ in range(16)]
    batch = tokenizer.encode_batch(sequences)
    masked = mask_kmers(batch.input_ids, tokenizer, generator=torch.Generator().manual_seed(0))
    selected = masked.labels.ne(-100)
    assert not selected[:, 0].any() and not selected.gather(1, torch.tensor(batch.lengths)[:, None] - 1).any()
    rate = selected.sum() / (batch.attention_mask.sum() - 2 * len(sequences))
    assert 0.10 < float(rate) < 0.20  # about mask_prob = 0.15 of the k-mers
    last = batch.lengths[0] - 1  # [SEP]
    for row in selected:
        for start, end in runs(row):
            if start > 1 and end < last:  # a run clear of the sequence ends
                assert end - start >= k
                # k-mer token t (t >= 1) covers bases t-1 .. t+k-2; the base at start + k - 2 is covered by
                # tokens start .. start + k - 1 only, all masked
                hidden = start + k - 2
                covering = range(max(1, hidden - k + 2), hidden + 2)
                assert all(bool(row[t]) for t in covering)


def test_masking_never_touches_special_unknown_or_padding_and_replaces_with_kmers():
    tokenizer = KmerTokenizer(3)
    batch = tokenizer.encode_batch(["ACGTNNNACGTACGTAAACCCGGGTTT" * 4, "ACGTACGT"])
    masked = mask_kmers(batch.input_ids, tokenizer, mask_prob=0.5, generator=torch.Generator().manual_seed(1))
    selected = masked.labels.ne(-100)
    specials = torch.isin(batch.input_ids, torch.tensor([tokenizer.cls_id, tokenizer.sep_id, tokenizer.unk_id,
                                                         tokenizer.pad_id]))  # fmt: skip
    assert selected.any() and not (selected & specials).any()
    changed = masked.inputs.ne(batch.input_ids)
    replaced = masked.inputs[changed]
    assert bool(((replaced == tokenizer.mask_id) | (replaced >= 5)).all())  # [MASK] or a k-mer


def test_non_overlapping_kmers_are_masked_one_by_one():
    tokenizer = KmerTokenizer(3, overlapping=False)
    batch = tokenizer.encode_batch(["ACG" * 200])
    masked = mask_kmers(batch.input_ids, tokenizer, generator=torch.Generator().manual_seed(2))
    lengths = [end - start for start, end in runs(masked.labels.ne(-100)[0])]
    assert 1 in lengths  # no span growth: single k-mers are masked alone
