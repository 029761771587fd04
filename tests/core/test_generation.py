"""Greedy, sampling and beam search through the shared generation code."""

import pytest
import torch
from fake_decoders import LastTokenModel

from polyformer.core import create_model, generate, top_k_top_p_filter

EOS, PAD = 2, 0


class TableModel(LastTokenModel):
    """``table[last]`` is the probability vector after ``last``."""

    def __init__(self, table):
        super().__init__(torch.tensor(table).log())


def _trap_table():
    # tokens: 0 pad, 1 bos, 2 eos, 3 "A", 4 "B", 5 "C", 6 "D"
    table = torch.full((7, 7), 1e-6)
    table[1, 3], table[1, 4] = 0.6, 0.4  # after BOS: A (0.6) or B (0.4)
    table[3, 5], table[3, 6], table[3, 2] = 0.34, 0.33, 0.33  # after A: nothing likely
    table[4, 2] = 0.99  # after B: EOS almost surely
    table[5, 2] = table[6, 2] = 0.99
    table[2, 2] = 1.0
    return (table / table.sum(1, keepdim=True)).tolist()


def test_beam_search_finds_sequence_greedy_misses():
    model = TableModel(_trap_table())
    bos = torch.tensor([[1]])
    greedy = generate(model, TableModel.Cache(), bos, max_new_tokens=4, eos_id=EOS, pad_id=PAD)
    beam = generate(
        model, TableModel.Cache(), bos, max_new_tokens=4, eos_id=EOS, pad_id=PAD, num_beams=3, length_penalty=0.0
    )
    assert greedy.sequences[0, :3].tolist() == [3, 5, 2]  # A C EOS: p = 0.6 * 0.34 * 0.99
    assert beam.sequences[0, :2].tolist() == [4, 2]  # B EOS: p = 0.4 * 0.99, higher
    assert beam.sequences[0, 2:].eq(PAD).all()
    assert beam.scores[0] > greedy.scores[0]
    expected = model.table[1, 4] + model.table[4, 2]  # log p(B | BOS) + log p(EOS | B)
    torch.testing.assert_close(beam.scores[0], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["seq2seq", "lm"])
def test_beam_size_one_equals_greedy(kind):
    if kind == "seq2seq":
        model = create_model("transformer_tiny", vocab_size=40).eval()
        src = torch.randint(3, 40, (4, 6))
        src[1, 4:] = 0
        greedy = model.generate(src, max_new_tokens=8)
        beam = model.generate(src, max_new_tokens=8, num_beams=1, strategy="beam")
    else:
        model = create_model("decoder_lm_tiny", vocab_size=40).eval()
        ids = torch.randint(3, 40, (3, 5))
        mask = torch.ones_like(ids, dtype=torch.bool)
        mask[0, :2] = False
        greedy = model.generate(ids, mask, max_new_tokens=8)
        beam = model.generate(ids, mask, max_new_tokens=8, num_beams=1, strategy="beam")
    assert torch.equal(greedy.sequences, beam.sequences)


def test_greedy_matches_full_forward_argmax():
    model = create_model("decoder_lm_tiny", vocab_size=40).eval()
    ids = torch.randint(3, 40, (2, 4))
    out = model.generate(ids, max_new_tokens=5, eos_id=None).sequences
    seq = ids
    with torch.no_grad():
        for _ in range(5):
            seq = torch.cat([seq, model(seq)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, seq[:, 4:])


def test_batched_beam_search_equals_one_by_one():
    model = create_model("transformer_tiny", vocab_size=30).eval()
    src = torch.randint(3, 30, (3, 7))
    src[2, 3:] = 0
    batched = model.generate(src, max_new_tokens=6, num_beams=3)
    for i in range(3):
        row = src[i : i + 1, : int(src[i].ne(0).sum())]
        single = model.generate(row, max_new_tokens=6, num_beams=3)
        n = single.sequences.shape[1]
        assert torch.equal(batched.sequences[i, :n], single.sequences[0])
        torch.testing.assert_close(batched.scores[i], single.scores[0], atol=1e-4, rtol=1e-4)


def test_eos_pads_the_rest_and_stops_early():
    table = torch.full((5, 5), 0.01)
    table[1, 2] = 0.96  # BOS -> EOS
    model = TableModel((table / table.sum(1, keepdim=True)).tolist())
    out = generate(model, TableModel.Cache(), torch.tensor([[1], [1]]), max_new_tokens=10, eos_id=EOS, pad_id=PAD)
    assert out.sequences.tolist() == [[2], [2]]


def test_sampling_respects_top_k_and_is_seeded():
    model = create_model("decoder_lm_tiny", vocab_size=40).eval()
    ids = torch.randint(3, 40, (2, 3))
    a = model.generate(ids, max_new_tokens=6, strategy="sample", top_k=1, eos_id=None)
    g = model.generate(ids, max_new_tokens=6, eos_id=None)
    assert torch.equal(a.sequences, g.sequences)  # top-1 sampling is greedy
    s1 = model.generate(
        ids, max_new_tokens=6, strategy="sample", temperature=2.0, generator=torch.Generator().manual_seed(3)
    )
    s2 = model.generate(
        ids, max_new_tokens=6, strategy="sample", temperature=2.0, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(s1.sequences, s2.sequences)


def test_top_p_keeps_smallest_set_with_mass_p():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = top_k_top_p_filter(logits, top_p=0.75).isfinite()
    assert kept.tolist() == [[True, True, False, False]]
    kept = top_k_top_p_filter(logits, top_p=0.81).isfinite()
    assert kept.tolist() == [[True, True, True, False]]
    assert top_k_top_p_filter(logits, top_p=0.1).isfinite().tolist() == [[True, False, False, False]]


def test_bad_generation_arguments():
    model = create_model("decoder_lm_tiny", vocab_size=40).eval()
    ids = torch.randint(3, 40, (1, 3))
    with pytest.raises(ValueError, match="temperature"):
        model.generate(ids, strategy="sample", temperature=0.0)
    with pytest.raises(ValueError, match="unknown generation strategy"):
        model.generate(ids, strategy="nucleus")
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(ids, max_new_tokens=0)
    with pytest.raises(ValueError, match="top_p"):
        model.generate(ids, strategy="sample", top_p=1.5)


def test_patience_keeps_more_finished_hypotheses_and_is_validated():
    model = TableModel(_trap_table())
    bos = torch.tensor([[1]])
    common = dict(max_new_tokens=4, eos_id=EOS, pad_id=PAD, num_beams=2, length_penalty=0.0)
    plain = generate(model, TableModel.Cache(), bos, **common)
    patient = generate(model, TableModel.Cache(), bos, patience=2.0, **common)
    assert plain.beams.shape[1] == 2 and patient.beams.shape[1] == 4
    assert patient.sequences[0, :2].tolist() == plain.sequences[0, :2].tolist() == [4, 2]  # the same best one
    assert patient.beam_scores[0, 1] >= patient.beam_scores[0, 2]  # best first
    with pytest.raises(ValueError, match="patience"):
        generate(model, TableModel.Cache(), bos, patience=0.0, **common)


def test_beam_search_on_an_encoder_decoder_is_unchanged_by_keeping_the_source():
    # the beams reorder the self-attention cache only (keep_source); the cross-attention keys are per input
    model = create_model("transformer_tiny", vocab_size=30).eval()
    src = torch.randint(3, 30, (2, 9))
    out = model.generate(src, max_new_tokens=6, num_beams=4)
    for i in range(2):
        single = model.generate(src[i : i + 1], max_new_tokens=6, num_beams=4)
        n = single.sequences.shape[1]
        assert torch.equal(out.sequences[i, :n], single.sequences[0])


def test_generate_after_prompt_shares_a_list_prompt_and_caps_to_the_position_table():
    from polyformer.core import generate_after_prompt

    model = TableModel(_trap_table())
    common = dict(batch=2, device=torch.device("cpu"), eos_id=EOS, pad_id=PAD)
    out = generate_after_prompt(model, TableModel.Cache(), [1], max_new_tokens=4, **common)
    assert out.sequences.shape[0] == 2 and out.sequences[:, 0].tolist() == [3, 3]  # A after BOS, for both rows
    capped = generate_after_prompt(model, TableModel.Cache(), [1, 3], max_new_tokens=10, max_positions=3, **common)
    assert capped.sequences.shape[1] == 1  # 3 positions - 2 prompt tokens: room for one
    with pytest.raises(ValueError, match="leaves no room in 2 target positions"):
        generate_after_prompt(model, TableModel.Cache(), [1, 3], max_new_tokens=4, max_positions=2, **common)
    with pytest.raises(ValueError, match="needs at least one token"):
        generate_after_prompt(model, TableModel.Cache(), [], max_new_tokens=4, **common)
    with pytest.raises(ValueError, match=r"must be \(B=2, T\) token ids, got \(3, 1\)"):
        generate_after_prompt(model, TableModel.Cache(), torch.ones(3, 1, dtype=torch.long), max_new_tokens=4, **common)
