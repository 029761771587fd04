"""Marian and BART: Hugging Face directories give the same logits and the same greedy and beam tokens."""

import json

import pytest
import torch

from polyformer.text.translation import load_hf_seq2seq, seq2seq_config_from_hf

transformers = pytest.importorskip("transformers")

COMMON = dict(
    vocab_size=80, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
    decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=40, dropout=0.0,
    attention_dropout=0.0, activation_dropout=0.0,
)  # fmt: skip
MARIAN = dict(COMMON, pad_token_id=79, eos_token_id=0, decoder_start_token_id=79, scale_embedding=True,
              activation_function="swish", forced_eos_token_id=None)  # fmt: skip
BART = dict(COMMON, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=None,
            forced_bos_token_id=None)  # fmt: skip
CASES = {
    "marian": (transformers.MarianMTModel, transformers.MarianConfig, MARIAN),
    "bart": (transformers.BartForConditionalGeneration, transformers.BartConfig, BART),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, tmp_path_factory):
    model_class, config_class, fields = CASES[request.param]
    torch.manual_seed(0)
    reference = model_class(config_class(**fields))
    with torch.no_grad():
        for parameter in reference.parameters():
            if parameter.requires_grad:  # Marian's sinusoidal table is fixed
                parameter.add_(torch.randn_like(parameter) * 0.05)
        reference.final_logits_bias.normal_(0.0, 0.1)
    path = tmp_path_factory.mktemp(request.param)
    reference.eval().save_pretrained(path)
    return request.param, reference, load_hf_seq2seq(path), fields


def sources(pad):
    generator = torch.Generator().manual_seed(1)
    src = torch.randint(3, 78, (3, 9), generator=generator)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    src[mask == 0] = pad
    return src, mask


def test_teacher_forced_logits_match(pair):
    _, reference, ours, fields = pair
    src, mask = sources(fields["pad_token_id"])
    tgt = torch.randint(3, 78, (3, 7))
    tgt[:, 0] = fields["decoder_start_token_id"]
    with torch.no_grad():
        expected = reference(input_ids=src, attention_mask=mask, decoder_input_ids=tgt).logits
        torch.testing.assert_close(ours(src, tgt, mask.bool()), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("beams, early_stopping", [(1, True), (4, True), (4, False), (3, "never")])
def test_generation_gives_the_same_tokens(pair, beams, early_stopping):
    _, reference, ours, fields = pair
    src, mask = sources(fields["pad_token_id"])
    with torch.no_grad():
        expected = reference.generate(
            src, attention_mask=mask, max_new_tokens=10, num_beams=beams, do_sample=False, length_penalty=1.0,
            early_stopping=early_stopping,
        )[:, 1:]  # fmt: skip
    options = dict(num_beams=beams, length_penalty=1.0, early_stopping=early_stopping)
    got = ours.generate(src, mask.bool(), max_new_tokens=10, **options).sequences
    assert torch.equal(got[:, : expected.shape[1]], expected)


def test_unsupported_configs_are_named(tmp_path):
    with pytest.raises(ValueError, match="mBART's pre-norm"):
        seq2seq_config_from_hf({**BART, "model_type": "bart", "normalize_before": True})
    with pytest.raises(ValueError, match="not one of"):
        seq2seq_config_from_hf({"model_type": "t5"})
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "marian", **MARIAN}))
    with pytest.raises(FileNotFoundError, match="neither model.safetensors nor pytorch_model.bin"):
        load_hf_seq2seq(tmp_path)


def test_translation_pipeline_on_a_marian_directory_matches_transformers(tmp_path):
    """A Marian directory as transformers saves it, with its SentencePiece files: the same translations."""
    spm = pytest.importorskip("sentencepiece")
    from polyformer.apps import pipeline
    from polyformer.text.bible import load_bible_pairs

    texts = [v.en for v in load_bible_pairs("train")[:1500]]
    (tmp_path / "corpus.txt").write_text("\n".join(texts), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(tmp_path / "corpus.txt"), model_prefix=str(tmp_path / "sp"), vocab_size=120, model_type="unigram",
        bos_id=-1, eos_id=0, unk_id=1, pad_id=-1, eos_piece="</s>", unk_piece="<unk>", minloglevel=2,
    )  # fmt: skip
    processor = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp.model"))
    vocab = {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}
    vocab["<pad>"] = len(vocab)
    fields = dict(MARIAN, vocab_size=len(vocab), pad_token_id=len(vocab) - 1, decoder_start_token_id=len(vocab) - 1)
    torch.manual_seed(0)
    reference = transformers.MarianMTModel(transformers.MarianConfig(**fields)).eval()
    directory = tmp_path / "marian"
    reference.save_pretrained(directory)
    for side in ("source", "target"):
        (directory / f"{side}.spm").write_bytes((tmp_path / "sp.model").read_bytes())
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    tokenizer = transformers.MarianTokenizer(
        source_spm=str(directory / "source.spm"), target_spm=str(directory / "target.spm"),
        vocab=str(directory / "vocab.json"),
    )  # fmt: skip
    sources = ["In the beginning God created the heavens.", "The Lord is my shepherd."]
    batch = tokenizer(sources, return_tensors="pt", padding=True)
    with torch.no_grad():
        generated = reference.generate(**batch, max_new_tokens=8, num_beams=1, do_sample=False)
    expected = [text.strip() for text in tokenizer.batch_decode(generated, skip_special_tokens=True)]
    assert pipeline("translation", model=directory, num_beams=1, max_new_tokens=8)(sources) == expected
