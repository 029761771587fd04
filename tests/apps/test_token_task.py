"""Token-level engine tasks: masked LM, causal LM and seq2seq losses, metrics, and a tiny LM trained by the engine."""

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from engine_tiny_run import single_thread
from torch import nn

from polyformer.apps.engine import CausalLMTask, MaskedLMTask, Seq2SeqTask, TrainingConfig, evaluate, train
from polyformer.core import DecoderOnlyTransformer, EncoderDecoderTransformer, TransformerConfig
from polyformer.core.objectives import IGNORE_INDEX, mask_tokens

PAD, BOS, EOS, MASK = 0, 1, 2, 3
VOCAB = 16


class PerToken(nn.Module):
    """Embedding + linear: logits (B, T, V) per position; records the attention mask it was given."""

    def __init__(self, vocab: int = VOCAB, dim: int = 8):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab)
        self.mask = "not called"

    def forward(self, ids, attention_mask=None):
        self.mask = attention_mask
        return self.head(self.embed(ids))


class TinySeq2Seq(nn.Module):
    """logits of tgt_in positions, shifted by the mean source embedding."""

    def __init__(self, vocab: int = VOCAB, dim: int = 8):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, src, tgt_in, src_mask=None):
        return self.head(self.embed(tgt_in) + self.embed(src).mean(1, keepdim=True))


def manual_ce(logits, labels):
    keep = labels.ne(IGNORE_INDEX)
    return F.cross_entropy(logits[keep], labels[keep])


def test_masked_lm_loss_over_labelled_tokens_in_every_batch_layout():
    model = PerToken()
    ids = torch.randint(4, VOCAB, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[0, 5:] = False
    labels = torch.full((3, 7), IGNORE_INDEX)
    labels[0, 1], labels[1, 2], labels[1, 6], labels[2, 0] = 5, 9, 4, 15
    expected = manual_ce(model(ids), labels)
    task = MaskedLMTask()
    torch.testing.assert_close(task.loss(model, (ids, labels)), expected)
    assert model.mask is None  # no mask given: the model is called with the ids alone
    torch.testing.assert_close(task.loss(model, {"input_ids": ids, "attention_mask": mask, "labels": labels}), expected)
    assert model.mask is mask
    torch.testing.assert_close(task.loss(model, [ids, mask, labels]), expected)
    MaskedLMTask(pad_id=PAD).loss(model, (ids.masked_fill(~mask, PAD), labels))
    assert torch.equal(model.mask, mask)  # derived from pad_id


def test_masked_lm_with_dynamic_masking():
    model = PerToken()
    ids = torch.randint(4, VOCAB, (8, 12))
    ids[:, 9:] = PAD
    mask_fn = functools.partial(mask_tokens, mask_id=MASK, vocab_size=VOCAB, special_ids=(BOS, EOS), mask_prob=0.3)
    task = MaskedLMTask(mask_fn=mask_fn, pad_id=PAD)
    torch.manual_seed(5)
    loss = task.loss(model, ids)
    torch.manual_seed(5)
    inputs, labels = mask_fn(ids, attention_mask=ids.ne(PAD))
    assert labels[:, 9:].eq(IGNORE_INDEX).all() and labels.ne(IGNORE_INDEX).any()
    torch.testing.assert_close(loss, manual_ce(model(inputs), labels))
    with pytest.raises(ValueError, match="keys"):
        task.loss(model, {"input_ids": ids, "labels": labels})  # labels and mask_fn: ambiguous


def test_causal_lm_shifts_and_ignores_padding():
    model = PerToken()
    ids = torch.tensor([[BOS, 5, 6, 7, EOS, PAD, PAD], [BOS, 8, 9, 10, 11, 12, EOS]])
    x = IGNORE_INDEX
    targets = torch.tensor([[5, 6, 7, EOS, x, x], [8, 9, 10, 11, 12, EOS]])
    expected = manual_ce(model(ids[:, :-1]), targets)
    loss = CausalLMTask(pad_id=PAD).loss(model, {"input_ids": ids})
    torch.testing.assert_close(loss, expected)
    assert model.mask.tolist() == [[True] * 5 + [False], [True] * 6]
    other_pads = ids.masked_fill(ids.eq(PAD), 9)  # padding marked by the mask alone: its ids do not matter
    loss = CausalLMTask().loss(model, (other_pads, ids.ne(PAD)))
    torch.testing.assert_close(loss, expected)
    everything = CausalLMTask().loss(model, ids)  # no padding information: pads are targets too
    torch.testing.assert_close(everything, F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten()))


def tiny_lm(seed=0):
    torch.manual_seed(seed)
    config = TransformerConfig(vocab_size=VOCAB, d_model=32, num_heads=4, decoder_layers=2, d_ff=64, dropout=0.0,
                               max_len=64, pad_id=PAD, bos_id=BOS, eos_id=EOS, norm_first=True)  # fmt: skip
    return DecoderOnlyTransformer(config)


def test_causal_lm_on_a_decoder_only_transformer_is_unaffected_by_padding():
    model = tiny_lm().eval()
    row = torch.tensor([[BOS, 5, 6, 7, 8, EOS]])
    padded = torch.cat([row, torch.full((1, 3), PAD)], dim=1)
    task = CausalLMTask(pad_id=PAD)
    with torch.no_grad():
        torch.testing.assert_close(task.loss(model, padded), task.loss(model, row), atol=1e-5, rtol=1e-5)
        expected = F.cross_entropy(model(row[:, :-1])[0], row[0, 1:])
        torch.testing.assert_close(task.loss(model, row), expected)


def test_seq2seq_teacher_forcing_in_both_layouts():
    model = TinySeq2Seq()
    src = torch.randint(4, VOCAB, (2, 5))
    tgt = torch.tensor([[BOS, 7, 8, EOS, PAD], [BOS, 9, 10, 11, EOS]])
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    x = IGNORE_INDEX
    labels = torch.tensor([[7, 8, EOS, x], [9, 10, 11, EOS]])
    expected = manual_ce(model(src, tgt_in), labels)
    task = Seq2SeqTask(pad_id=PAD)
    torch.testing.assert_close(task.loss(model, (src, tgt)), expected)
    torch.testing.assert_close(task.loss(model, (src, tgt_in, tgt_out)), expected)
    torch.testing.assert_close(task.loss(model, {"src": src, "tgt_in": tgt_in, "tgt_out": tgt_out}), expected)
    torch.testing.assert_close(task.loss(model, {"src": src, "tgt": tgt, "src_mask": src.ne(PAD)}), expected)
    unpadded = Seq2SeqTask().loss(model, (src, tgt_in, labels))  # IGNORE_INDEX labels work without a pad_id
    torch.testing.assert_close(unpadded, expected)


def test_seq2seq_on_an_encoder_decoder_transformer():
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=VOCAB, d_model=16, num_heads=2, encoder_layers=1, decoder_layers=1, d_ff=32,
                               dropout=0.0, max_len=32, pad_id=PAD, bos_id=BOS, eos_id=EOS)  # fmt: skip
    model = EncoderDecoderTransformer(config).eval()
    src = torch.tensor([[5, 6, 7, PAD], [8, 9, 10, 11]])
    tgt = torch.tensor([[BOS, 7, 6, 5, EOS, PAD], [BOS, 11, 10, 9, 8, EOS]])
    with torch.no_grad():
        logits = model(src, tgt[:, :-1])
        expected = manual_ce(logits, tgt[:, 1:].masked_fill(tgt[:, 1:].eq(PAD), IGNORE_INDEX))
        torch.testing.assert_close(Seq2SeqTask(pad_id=PAD).loss(model, (src, tgt)), expected)


class NextIsPlusOne(nn.Module):
    """An oracle causal LM: always predicts ``id + 1`` (mod V) with high confidence."""

    def forward(self, ids, attention_mask=None):
        return F.one_hot((ids + 1) % VOCAB, VOCAB).float() * 4.0


def test_metrics_are_token_weighted_loss_accuracy_and_perplexity():
    ids = torch.tensor([
        [5, 6, 7, 8, 9, PAD],   # 4 right (6 7 8 9), padding after
        [5, 6, 9, 10, PAD, PAD],  # 2 right (6, 10), 1 wrong (9)
        [5, 7, 8, 9, 10, 11],   # 4 right, 1 wrong (7)
    ])  # fmt: skip
    data = [{"input_ids": row} for row in ids]
    metrics = evaluate(NextIsPlusOne(), CausalLMTask(pad_id=PAD), data, batch_size=2)
    assert metrics.keys() == {"loss", "accuracy", "perplexity"}
    assert metrics["accuracy"] == pytest.approx(10 / 12)
    inputs, labels = ids[:, :-1], ids[:, 1:].masked_fill(ids[:, 1:].eq(PAD), IGNORE_INDEX)
    expected = manual_ce(NextIsPlusOne()(inputs), labels).item()  # over all 12 tokens, not a mean of batch means
    assert metrics["loss"] == pytest.approx(expected, rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)
    assert "perplexity" not in CausalLMTask(perplexity=False).make_metrics()


def test_training_loss_uses_label_smoothing_and_metrics_do_not():
    model = PerToken()
    ids = torch.randint(4, VOCAB, (2, 6))
    task = CausalLMTask(label_smoothing=0.2)
    expected = F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten(), label_smoothing=0.2)
    torch.testing.assert_close(task.loss(model, ids), expected)
    metrics = {name: metric for name, metric in task.make_metrics().items()}
    with torch.no_grad():
        task.update_metrics(metrics, model, ids)
        plain = F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
    torch.testing.assert_close(metrics["loss"].compute(), plain)


@pytest.mark.parametrize(
    "task, batch",
    [
        (MaskedLMTask(), (torch.zeros(2, 3, dtype=torch.long),)),
        (MaskedLMTask(), {"input_ids": torch.zeros(2, 3, dtype=torch.long)}),
        (CausalLMTask(), {"ids": torch.zeros(2, 3, dtype=torch.long)}),
        (CausalLMTask(), (torch.zeros(2, 3, dtype=torch.long),) * 3),
        (Seq2SeqTask(), (torch.zeros(2, 3, dtype=torch.long),)),
        (Seq2SeqTask(), {"src": torch.zeros(2, 3, dtype=torch.long), "tgt_in": torch.zeros(2, 3, dtype=torch.long)}),
    ],
)
def test_unexpected_batches_raise(task, batch):
    with pytest.raises(ValueError, match="batch"):
        task.loss(PerToken(), batch)


class CountingUp:
    """Right-padded runs a, a+1, ..., 15, EOS, PAD...: a bigram rule, so every target is predictable."""

    def __init__(self, size=256, length=14, seed=0):
        generator = torch.Generator().manual_seed(seed)
        firsts = torch.randint(4, VOCAB - 2, (size,), generator=generator).tolist()
        self.rows = [torch.tensor([*range(a, VOCAB), EOS] + [PAD] * (length - 1 - VOCAB + a)) for a in firsts]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return {"input_ids": self.rows[index]}


def test_engine_trains_a_tiny_decoder_only_lm(tmp_path):
    model = tiny_lm()
    config = TrainingConfig(out_dir=str(tmp_path), batch_size=32, max_steps=120, lr=3e-3, warmup_steps=10,
                            precision="fp32", quiet=True, plot=False, log_every=20, best_metric="loss",
                            best_mode="min", weight_decay=0.0)  # fmt: skip
    task = CausalLMTask(pad_id=PAD)
    with single_thread():  # on a busy machine, threads fighting over the cores cost far more than they bring
        before = evaluate(model, task, CountingUp(64, seed=1), batch_size=64)
        result = train(model, task, CountingUp(), config, eval_data=CountingUp(64, seed=1))
    assert before["loss"] > 2.0
    assert result.metrics["loss"] < 0.2 and result.metrics["accuracy"] > 0.95
    assert result.metrics["perplexity"] == pytest.approx(math.exp(result.metrics["loss"]), rel=1e-4)
    assert (result.model_dir / "model.safetensors").is_file()


def test_engine_runs_masked_lm_with_dynamic_masking(tmp_path):
    mask_fn = functools.partial(mask_tokens, mask_id=MASK, vocab_size=VOCAB, special_ids=(BOS, EOS), pad_id=PAD)
    config = TrainingConfig(out_dir=str(tmp_path), batch_size=16, max_steps=4, lr=1e-2, precision="fp32", quiet=True,
                            plot=False)  # fmt: skip
    task = MaskedLMTask(mask_fn=mask_fn, pad_id=PAD)
    results, eval_data = [], CountingUp(32, seed=1)
    for out_dir in (tmp_path / "a", tmp_path / "b"):
        torch.manual_seed(0)
        model = PerToken()
        with single_thread():
            results.append(train(model, task, CountingUp(64), config.replace(out_dir=str(out_dir)), eval_data))
    first, second = results
    assert math.isfinite(first.metrics["loss"]) and 0.0 <= first.metrics["accuracy"] <= 1.0
    assert first.metrics == second.metrics  # masking draws from the seeded global RNG: a run repeats exactly
