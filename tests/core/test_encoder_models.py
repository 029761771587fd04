"""The encoder-only model reproduces Hugging Face BERT with the same weights; its heads, token
types, positions and pooling behave; it learns a tiny masked-LM task."""

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

from polyformer.core import (
    EncoderConfig,
    EncoderForMaskedLM,
    EncoderForSequenceClassification,
    EncoderForTokenClassification,
    EncoderOnlyTransformer,
    mask_tokens,
    mean_pool,
    token_cross_entropy,
)
from polyformer.core.convert_hf_bert import convert_hf_bert_state_dict

TINY = dict(
    vocab_size=50, d_model=32, num_heads=4, num_layers=2, d_ff=64, max_len=24, dropout=0.0, attention_dropout=0.0
)


def _from_hf(hf_model) -> dict[str, torch.Tensor]:
    """The reference's weights under our names (the backbone under ``backbone.``, as the head models hold it)."""
    state = convert_hf_bert_state_dict(hf_model.state_dict())
    heads = ("mlm_head.", "classifier.")
    return {name if name.startswith(heads) else f"backbone.{name}": t for name, t in state.items()}


def _hf_config(**changes) -> BertConfig:
    fields = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    fields.update(max_position_embeddings=24, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **changes)
    return BertConfig(**fields)


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids = torch.randint(1, 50, (3, 10))
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = 0
    types = torch.zeros(3, 10, dtype=torch.long)
    types[:, 5:] = 1
    return ids, mask, types


@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_masked_lm_matches_hugging_face_bert(backend):
    torch.manual_seed(0)
    hf = BertForMaskedLM(_hf_config()).eval()
    ours = EncoderForMaskedLM(EncoderConfig(**TINY, backend=backend)).eval()
    ours.load_weights(_from_hf(hf))
    ids, mask, types = _batch()
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        out = ours(ids, mask, types)
    real = mask.bool()
    torch.testing.assert_close(out[real], expected[real], atol=1e-4, rtol=1e-4)
    assert ours.mlm_head.decoder.weight is ours.backbone.embed.tokens.weight  # tied decoder


def test_sequence_classification_matches_hugging_face_bert():
    torch.manual_seed(1)
    hf = BertForSequenceClassification(_hf_config(num_labels=3)).eval()
    ours = EncoderForSequenceClassification(EncoderConfig(**TINY, num_labels=3)).eval()
    ours.load_weights(_from_hf(hf))
    ids, mask, types = _batch()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, mask, types), hf(ids, mask, types).logits, atol=1e-4, rtol=1e-4)


def test_token_types_positions_and_padding_change_what_they_should():
    torch.manual_seed(0)
    model = EncoderOnlyTransformer(EncoderConfig(**TINY)).eval()
    ids, mask, types = _batch()
    with torch.no_grad():
        base = model(ids, mask, types).last_hidden_state
        assert not torch.allclose(model(ids, mask, torch.zeros_like(types)).last_hidden_state, base)
        longer = torch.cat([ids[2:3, :4], torch.randint(1, 50, (1, 6))], dim=1)  # change only padded slots
        again = model(longer, mask[2:3]).last_hidden_state
        torch.testing.assert_close(again[0, :4], model(ids[2:3], mask[2:3]).last_hidden_state[0, :4])
    with pytest.raises(ValueError, match="positions"):
        model(torch.randint(1, 50, (1, 30)))
    with pytest.raises(ValueError, match="token_type_ids"):
        model(ids, mask, types[:, :4])
    with pytest.raises(ValueError, match="no token-type"):
        EncoderOnlyTransformer(EncoderConfig(**TINY, type_vocab_size=0))(ids, mask, types)


@pytest.mark.parametrize("position", ["rotary", "alibi", "sinusoidal", "none"])
def test_other_positions_and_pre_norm_run_and_respect_padding(position):
    config = EncoderConfig(
        **{**TINY, "position": position, "norm_first": True, "type_vocab_size": 0, "pooler": False, "pool": "mean"}
    )
    model = EncoderForTokenClassification(config).eval()
    ids, mask, _ = _batch()
    with torch.no_grad():
        logits = model(ids, mask)
        trimmed = model(ids[2:3, :4], mask[2:3, :4])
    assert logits.shape == (3, 10, 2) and torch.isfinite(logits).all()
    torch.testing.assert_close(logits[2:3, :4], trimmed, atol=1e-5, rtol=1e-5)
    assert model.backbone.encoder.final_norm is not None


def test_mean_pooling_and_sentence_embeddings_ignore_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    torch.testing.assert_close(mean_pool(hidden, torch.tensor([[True, True, False]])), torch.tensor([[2.0, 3.0]]))
    model = EncoderOnlyTransformer(EncoderConfig(**TINY)).eval()
    ids, mask, _ = _batch()
    emb = model.sentence_embeddings(ids, mask)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(emb[2], model.sentence_embeddings(ids[2:3, :4], mask[2:3, :4])[0], atol=1e-5, rtol=1e-5)
    classifier = EncoderForSequenceClassification(EncoderConfig(**TINY, pool="mean", num_labels=4)).eval()
    assert classifier(ids, mask).shape == (3, 4)


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="pooler"):
        EncoderConfig(**TINY, pooler=False)
    with pytest.raises(ValueError, match="position"):
        EncoderConfig(**TINY, position="relative")
    with pytest.raises(ValueError, match="activation"):
        EncoderForMaskedLM(EncoderConfig(**TINY, activation="tanh"))


def test_masked_lm_learns_to_copy_masked_tokens_from_their_neighbours():
    """Each sequence repeats one token; the model must fill in the masked copies."""
    torch.manual_seed(0)
    config = EncoderConfig(**{**TINY, "vocab_size": 20, "mask_id": 3, "num_layers": 1}, norm_first=True)
    model = EncoderForMaskedLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        ids = torch.randint(4, 20, (32, 1), generator=gen).expand(32, 12).clone()
        batch = mask_tokens(ids, mask_id=3, vocab_size=20, special_ids=(0, 1, 2), mask_prob=0.3, generator=gen)
        loss = token_cross_entropy(model(batch.inputs), batch.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2


def test_masked_lm_with_labels_projects_only_the_labelled_positions():
    from polyformer.apps.engine import MaskedLMTask

    torch.manual_seed(0)
    model = EncoderForMaskedLM(EncoderConfig(**TINY)).eval()
    ids, mask, _ = _batch()
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 5], labels[2, 0] = 7, 9, 11
    with torch.no_grad():
        full = model(ids, mask)
        torch.testing.assert_close(model(ids, mask, labels=labels), full[labels.ne(-100)])
        task = MaskedLMTask()
        batch = {"input_ids": ids, "attention_mask": mask.bool(), "labels": labels}
        expected = token_cross_entropy(full, labels)
        torch.testing.assert_close(task.loss(model, batch), expected)
    with pytest.raises(ValueError, match="labels must be"):
        model(ids, mask, labels=labels[:, :3])


def test_a_gated_encoder_gets_a_masked_lm_head_with_its_gate_activation_and_alibi_works():
    """DNABERT-2's shape: GEGLU feed-forward, ALiBi positions, a GELU prediction head."""
    torch.manual_seed(0)
    config = EncoderConfig(**{**TINY, "activation": "geglu", "position": "alibi", "max_len": 8})
    model = EncoderForMaskedLM(config).eval()
    assert model.mlm_head.activation == "gelu"
    hidden = torch.randn(2, 5, 32)
    head = model.mlm_head
    expected = head.decoder(head.norm(torch.nn.functional.gelu(head.dense(hidden)))) + head.bias
    assert torch.allclose(head(hidden), expected)
    ids = torch.randint(5, 50, (2, 12))  # longer than max_len: ALiBi needs no position table
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 7:] = False
    logits = model(ids, mask)
    assert logits.shape == (2, 12, 50) and torch.isfinite(logits).all()
    changed = ids.clone()
    changed[1, 7:] = 5  # padding does not change the real tokens' outputs
    assert torch.allclose(model(changed, mask)[1, :7], logits[1, :7], atol=1e-5)
    assert EncoderForMaskedLM(config.replace(activation="swiglu")).mlm_head.activation == "silu"


def test_an_encoder_directory_loads_as_the_head_that_saved_it(tmp_path):
    from polyformer.core.encoder_loading import load_encoder_directory

    mean_pooled = EncoderConfig(**TINY, pooler=False, pool="mean", num_labels=3)
    for model in (EncoderForSequenceClassification(mean_pooled), EncoderForTokenClassification(mean_pooled)):
        model.save_pretrained(tmp_path / type(model).__name__)
        loaded, source = load_encoder_directory(tmp_path / type(model).__name__)
        assert type(loaded) is type(model) and source == "polyformer"
    bare, _ = load_encoder_directory(tmp_path / "EncoderForSequenceClassification", task="base")
    assert type(bare) is EncoderOnlyTransformer
    with pytest.raises(ValueError, match="holds a sequence_classification model, not a masked_lm model"):
        load_encoder_directory(tmp_path / "EncoderForSequenceClassification", task="masked_lm")
