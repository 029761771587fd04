"""DNABERT models: Hugging Face BERT parity with a k-mer vocabulary, save/load and export round trips,
presets, strand-symmetric prediction, embeddings, and the clear errors."""

import json
import random

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

from polyformer.bio import DnaBpeTokenizer, KmerTokenizer, reverse_complement
from polyformer.bio.dnabert import (
    DnaModel,
    classify_sequences,
    embed_sequences,
    load_dnabert,
    save_dnabert,
)
from polyformer.core import EncoderForMaskedLM, EncoderForSequenceClassification, create_model, list_presets

K = 3
LABELS = ["EI", "IE", "N"]


def _hf_config(**changes) -> BertConfig:
    fields = dict(vocab_size=4**K + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    return BertConfig(**fields, max_position_embeddings=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                      **changes)  # fmt: skip


def _sequences(n: int = 5, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice("ACGT") for _ in range(rng.randint(10, 30))) for _ in range(n)]


def _hf_directory(tmp_path, model):
    model.save_pretrained(tmp_path)
    KmerTokenizer(K).save(tmp_path)
    return tmp_path


def test_a_hugging_face_dnabert_masked_lm_loads_with_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    reference = BertForMaskedLM(_hf_config()).eval()
    bundle = load_dnabert(_hf_directory(tmp_path, reference))
    assert bundle.source == "huggingface" and isinstance(bundle.model, EncoderForMaskedLM)
    assert isinstance(bundle.tokenizer, KmerTokenizer) and bundle.tokenizer.k == K and bundle.labels is None
    batch = bundle.tokenizer.encode_batch(_sequences())
    with torch.no_grad():
        expected = reference(input_ids=batch.input_ids, attention_mask=batch.attention_mask.long()).logits
        ours = bundle.model(batch.input_ids, batch.attention_mask)
    real = batch.attention_mask
    assert (ours[real] - expected[real]).abs().max() < 1e-4


def test_a_dnabert_classifier_round_trips_through_both_layouts(tmp_path):
    torch.manual_seed(1)
    config = _hf_config(id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    reference = BertForSequenceClassification(config).eval()
    bundle = load_dnabert(_hf_directory(tmp_path / "hf", reference))
    assert isinstance(bundle.model, EncoderForSequenceClassification) and bundle.labels == LABELS
    sequences = _sequences(6, seed=2)
    batch = bundle.tokenizer.encode_batch(sequences)
    with torch.no_grad():
        expected = reference(input_ids=batch.input_ids, attention_mask=batch.attention_mask.long()).logits.softmax(-1)
    assert (classify_sequences(bundle, sequences, batch_size=4) - expected).abs().max() < 1e-4

    ours = load_dnabert(save_dnabert(bundle, tmp_path / "ours"))
    assert ours.source == "polyformer" and ours.labels == LABELS and ours.tokenizer.k == K
    assert (classify_sequences(ours, sequences) - expected).abs().max() < 1e-4

    exported = save_dnabert(ours, tmp_path / "export", huggingface=True)
    again = BertForSequenceClassification.from_pretrained(exported).eval()
    assert again.config.id2label == dict(enumerate(LABELS))
    assert (tmp_path / "export" / "vocab.txt").read_text() == (tmp_path / "hf" / "vocab.txt").read_text()
    with torch.no_grad():
        logits = again(input_ids=batch.input_ids, attention_mask=batch.attention_mask.long()).logits
    assert (logits.softmax(-1) - expected).abs().max() < 1e-4


def test_rc_averaged_classification_is_exactly_strand_symmetric():
    torch.manual_seed(3)
    model = EncoderForSequenceClassification(create_model("dnabert_tiny", k=K, max_len=40).config.replace(num_labels=3))
    bundle = DnaModel(model.eval(), KmerTokenizer(K), LABELS, "polyformer")
    sequences = _sequences(7, seed=4)
    forward = classify_sequences(bundle, sequences, batch_size=3, rc=True)
    backward = classify_sequences(bundle, [reverse_complement(s) for s in sequences], batch_size=3, rc=True)
    assert torch.equal(forward, backward)
    plain = classify_sequences(bundle, sequences, batch_size=3)
    assert not torch.allclose(plain, classify_sequences(bundle, [reverse_complement(s) for s in sequences]))
    assert torch.allclose(forward.sum(-1), torch.ones(7))


def test_embeddings_ignore_padding_and_long_sequences_are_refused():
    torch.manual_seed(5)
    bundle = DnaModel(create_model("dnabert_tiny", k=K, max_len=20).eval(), KmerTokenizer(K), None, "polyformer")
    short, longer = "ACGTACGTAC", "ACGTTTGACCAGTA"
    alone = embed_sequences(bundle, [short])
    together = embed_sequences(bundle, [short, longer])
    assert together.shape == (2, 128) and torch.allclose(alone[0], together[0], atol=1e-5)
    assert embed_sequences(bundle, [short], pooling="cls", normalize=True).norm(dim=-1).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="sequence 2 has 22 tokens but the model takes at most 20; split"):
        embed_sequences(bundle, [short, "A" * 22])
    with pytest.raises(ValueError, match="not a sequence classifier"):
        classify_sequences(bundle, [short])
    with pytest.raises(ValueError, match="pooling"):
        embed_sequences(bundle, [short], pooling="max")


@pytest.mark.parametrize("name", [p.name for p in list_presets("dnabert")])
def test_dnabert_presets_train_and_dnabert2_takes_any_length(name):
    small = dict(num_layers=1, d_model=32, num_heads=2, d_ff=64)
    model = create_model(name, **small, **({} if "2" in name else {"k": K}))
    vocab = model.config.vocab_size
    assert vocab == (4096 if "dnabert2" in name else 4**K + 5)
    length = 600 if "dnabert2" in name else 30  # ALiBi has no position table
    ids = torch.randint(5, vocab, (2, length))
    logits = model(ids)
    assert logits.shape == (2, length, vocab)
    logits.logsumexp(-1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_bpe_models_save_in_our_layout_only_and_mismatches_are_caught(tmp_path):
    tokenizer = DnaBpeTokenizer.train(_sequences(50), vocab_size=40)
    small = dict(num_layers=1, d_model=32, num_heads=2, d_ff=64)
    model = create_model("dnabert2_mini", **small, vocab_size=tokenizer.vocab_size)
    bundle = DnaModel(model.eval(), tokenizer, None, "polyformer")
    loaded = load_dnabert(save_dnabert(bundle, tmp_path / "bpe"))
    assert isinstance(loaded.tokenizer, DnaBpeTokenizer) and loaded.max_tokens is None
    assert json.loads((tmp_path / "bpe" / "dna_tokenizer.json").read_text()) == {"kind": "bpe"}
    with pytest.raises(ValueError, match="k-mer vocab.txt; this model uses BPE"):
        save_dnabert(bundle, tmp_path / "hf", huggingface=True)
    KmerTokenizer(K).save(tmp_path / "bpe")
    (tmp_path / "bpe" / "dna_tokenizer.json").write_text('{"kind": "kmer", "k": 3}')
    with pytest.raises(ValueError, match="69 tokens but the model 40 embeddings"):
        load_dnabert(tmp_path / "bpe")
    with pytest.raises(FileNotFoundError, match="no DNA tokenizer"):
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "config.json").write_text("{}")
        load_dnabert(tmp_path / "empty")
