"""Hugging Face BERT directories load into the core encoder models with the same outputs, and ours export back."""

import json

import pytest
import torch

from polyformer.core import (
    EncoderConfig,
    EncoderForMaskedLM,
    EncoderForSequenceClassification,
    EncoderOnlyTransformer,
)
from polyformer.core.convert_hf_bert import (
    convert_hf_bert_state_dict,
    hf_bert_config,
    load_hf_bert,
    read_hf_bert,
    save_hf_bert,
)

transformers = pytest.importorskip("transformers")

TOL = dict(atol=1e-4, rtol=1e-4)
HF_FIELDS = dict(
    vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    max_position_embeddings=24, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
)  # fmt: skip
TINY = dict(
    vocab_size=60, d_model=32, num_heads=4, num_layers=2, d_ff=64, max_len=24, dropout=0.0, attention_dropout=0.0
)


def perturbed(model):
    """Random weights everywhere, also where transformers initialises zeros and ones."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model.eval()


def batch():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 60, (3, 11), generator=generator)
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, 8:] = 0
    mask[2, 3:] = 0
    types = torch.zeros(3, 11, dtype=torch.long)
    types[:, 6:] = 1
    return ids, mask, types


def outputs(model, ids, mask, types):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=types)
    if isinstance(out, torch.Tensor):
        return out
    return getattr(out, "logits", None) if getattr(out, "logits", None) is not None else out.last_hidden_state


@pytest.mark.parametrize(
    "hf_class, task, extra",
    [
        ("BertModel", "base", {}),
        ("BertForMaskedLM", "masked_lm", {}),
        ("BertForSequenceClassification", "sequence_classification", {"num_labels": 3}),
        ("BertForTokenClassification", "token_classification", {"num_labels": 5}),
    ],
)
def test_hugging_face_directory_gives_the_reference_outputs(tmp_path, hf_class, task, extra):
    torch.manual_seed(0)
    reference = perturbed(getattr(transformers, hf_class)(transformers.BertConfig(**HF_FIELDS, **extra)))
    reference.save_pretrained(tmp_path)
    config, _, found_task = read_hf_bert(tmp_path)
    assert found_task == task and config.d_model == 32 and config.num_labels == extra.get("num_labels", 2)
    ours = load_hf_bert(tmp_path)
    ids, mask, types = batch()
    expected, got = outputs(reference, ids, mask, types), outputs(ours, ids, mask, types)
    real = mask.bool()
    if got.dim() == 3:
        got, expected = got[real], expected[real]
    torch.testing.assert_close(got, expected, **TOL)


def test_pytorch_model_bin_and_the_bare_encoder_of_a_masked_lm(tmp_path):
    torch.manual_seed(1)
    reference = perturbed(transformers.BertForMaskedLM(transformers.BertConfig(**HF_FIELDS)))
    reference.config.save_pretrained(tmp_path)
    torch.save(reference.state_dict(), tmp_path / "pytorch_model.bin")  # the older format (transformers 5 writes none)
    encoder = load_hf_bert(tmp_path, task="base")
    assert isinstance(encoder, EncoderOnlyTransformer) and encoder.pooler is None  # BertForMaskedLM has no pooler
    ids, mask, types = batch()
    with torch.no_grad():
        expected = reference.bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        got = encoder(ids, mask, types).last_hidden_state
    torch.testing.assert_close(got[mask.bool()], expected[mask.bool()], **TOL)
    with pytest.raises(ValueError, match="classifier"):
        load_hf_bert(tmp_path, task="sequence_classification")


@pytest.mark.parametrize(
    "model_class, hf_class, extra",
    [
        (EncoderOnlyTransformer, "BertModel", {}),
        (EncoderForMaskedLM, "BertForMaskedLM", {}),
        (EncoderForSequenceClassification, "BertForSequenceClassification", {"num_labels": 4}),
    ],
)
def test_our_models_export_to_a_directory_transformers_loads(tmp_path, model_class, hf_class, extra):
    torch.manual_seed(2)
    ours = perturbed(model_class(EncoderConfig(**TINY, **extra)))
    save_hf_bert(ours, tmp_path / "hf")
    loaded = getattr(transformers, hf_class).from_pretrained(tmp_path / "hf").eval()
    ids, mask, types = batch()
    expected, got = outputs(ours, ids, mask, types), outputs(loaded, ids, mask, types)
    if got.dim() == 3:
        got, expected = got[mask.bool()], expected[mask.bool()]
    torch.testing.assert_close(got, expected, **TOL)
    again = load_hf_bert(tmp_path / "hf")  # and back: the same weights exactly
    for name, tensor in ours.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], tensor, rtol=0, atol=0, msg=name)


def test_errors_name_what_does_not_fit(tmp_path):
    with pytest.raises(ValueError, match="has no counterpart"):
        convert_hf_bert_state_dict({"bert.encoder.layer.0.crossattention.self.query.weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="norm_first=True .*position='rotary'"):
        hf_bert_config(EncoderConfig(**TINY, norm_first=True, position="rotary"))
    with pytest.raises(ValueError, match="pool='mean'"):
        hf_bert_config(EncoderConfig(**TINY, pool="mean"), "sequence_classification")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="not a Hugging Face BERT config"):
        read_hf_bert(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        read_hf_bert(tmp_path / "missing")
    with pytest.raises(ValueError, match="position_embedding_type 'relative_key'"):
        transformers.BertConfig(**HF_FIELDS, position_embedding_type="relative_key").save_pretrained(tmp_path / "rel")
        read_hf_bert(tmp_path / "rel")
