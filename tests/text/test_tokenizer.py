"""TextTokenizer: training, loading and saving through Hugging Face tokenizers, and parity with transformers."""

import json

import pytest
import torch

from polyformer.text.corpus import load_corpus
from polyformer.text.tokenizer import TextTokenizer

transformers = pytest.importorskip("transformers")

SAMPLES = ["When shall we three meet again?", "Fair is foul, and foul is fair:", "Hover through the fog."]


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "macbeth.txt"
    path.write_text(load_corpus()[:60000], encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_trained_tokenizers_round_trip_and_save(corpus_file, tmp_path, kind):
    tokenizer = TextTokenizer.train([corpus_file], kind=kind, vocab_size=600, max_length=64)
    assert tokenizer.vocab_size <= 600
    batch = tokenizer.encode(SAMPLES)
    assert batch.input_ids.shape[0] == 3 and batch.attention_mask.sum(1).tolist() == batch.lengths
    decoded = tokenizer.decode(batch.input_ids)
    if kind == "wordpiece":  # BERT's decoder joins punctuation with spaces
        assert [d.replace(" ", "") for d in decoded] == [s.replace(" ", "") for s in SAMPLES]
        assert tokenizer.tokens("fair")[0] == "[CLS]" and tokenizer.tokens("fair")[-1] == "[SEP]"
    else:
        assert decoded == SAMPLES
        assert tokenizer.tokens("fair")[-1] == "</s>"
    tokenizer.save(tmp_path / "tok")
    again = TextTokenizer.load(tmp_path / "tok")
    assert again.specials == tokenizer.specials and again.max_length == 64
    assert torch.equal(again.encode(SAMPLES).input_ids, batch.input_ids)
    # transformers reads the same directory and gives the same ids
    fast = transformers.PreTrainedTokenizerFast.from_pretrained(tmp_path / "tok")
    assert fast(SAMPLES[0])["input_ids"] == batch.input_ids[0, : batch.lengths[0]].tolist()
    assert fast.pad_token == tokenizer.specials.pad


def test_byte_level_bpe_encodes_any_text(corpus_file):
    tokenizer = TextTokenizer.train([corpus_file], kind="bpe", vocab_size=400)
    text = "Ñandú — 東京 🙂"
    assert tokenizer.decode(tokenizer.encode(text).input_ids[0]) == text


def test_padding_truncation_pairs_and_roles(corpus_file):
    tokenizer = TextTokenizer.train([corpus_file], kind="wordpiece", vocab_size=500, lowercase=True)
    batch = tokenizer.encode(["a b c d e f g", "a"], max_length=5)
    assert batch.input_ids.shape == (2, 5) and batch.attention_mask.tolist()[1] == [1, 1, 1, 0, 0]
    assert batch.input_ids[1, 3:].tolist() == [tokenizer.pad_id] * 2 and tokenizer.pad_id == tokenizer.token_id("pad")
    pairs = tokenizer.encode(["fair is foul"], pairs=["foul is fair"])
    types = pairs.token_type_ids[0].tolist()
    assert types[0] == 0 and types[-1] == 1 and sorted(set(types)) == [0, 1]
    assert tokenizer.token_id("mask") is not None and tokenizer.token_id("bos") is None


def test_bert_vocab_txt_matches_transformers(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s", ",", "!", "un", "##aff", "##able"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    ours = TextTokenizer.load(tmp_path / "vocab.txt")
    reference = transformers.BertTokenizerFast.from_pretrained(tmp_path)  # reads the vocab.txt there
    for text in ("Hello, worlds!", "unaffable hello", "HELLO unknownword"):
        assert ours.encode(text).input_ids[0].tolist() == reference(text)["input_ids"], text
    assert ours.tokens("Hello worlds") == ["[CLS]", "hello", "world", "##s", "[SEP]"]


def test_hugging_face_directory_roles_come_from_its_config(tmp_path, corpus_file):
    TextTokenizer.train([corpus_file], kind="bpe", vocab_size=300).save(tmp_path)
    settings = json.loads((tmp_path / "tokenizer_config.json").read_text())
    settings["pad_token"] = {"content": "</s>"}  # the object form transformers writes
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(settings))
    assert TextTokenizer.load(tmp_path).specials.pad == "</s>"


def test_bad_inputs_are_clear(tmp_path, corpus_file):
    with pytest.raises(ValueError, match="unknown tokenizer kind 'sentencepiece'"):
        TextTokenizer.train([corpus_file], kind="sentencepiece")
    with pytest.raises(FileNotFoundError, match="not found"):
        TextTokenizer.train([tmp_path / "nothing.txt"])
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("ok\nfa\xe7ade\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt, line 2: not valid UTF-8"):
        TextTokenizer.train([bad])
    with pytest.raises(ValueError, match="too small"):
        TextTokenizer.train([corpus_file], vocab_size=4)
    tokenizer = TextTokenizer.train([corpus_file], kind="unigram", vocab_size=300)
    with pytest.raises(ValueError, match="batch is empty"):
        tokenizer.encode([])
    with pytest.raises(ValueError, match="2 second segments for 1 texts"):
        tokenizer.encode(["a"], pairs=["b", "c"])
    with pytest.raises(FileNotFoundError, match=r"holds neither tokenizer.json, vocab.txt, vocab.json \+ merges"):
        TextTokenizer.load(tmp_path)
    (tmp_path / "broken.json").write_text("{}")
    with pytest.raises(ValueError, match="not a tokenizers tokenizer.json"):
        TextTokenizer.load(tmp_path / "broken.json")


def test_gpt2_vocab_and_merges_match_transformers(corpus_file, tmp_path):
    trained = TextTokenizer.train([corpus_file], kind="bpe", vocab_size=400)
    trained.tokenizer.model.save(str(tmp_path))  # writes vocab.json and merges.txt
    ours = TextTokenizer.load(tmp_path)
    reference = transformers.GPT2TokenizerFast.from_pretrained(tmp_path)  # reads the same two files
    for text in SAMPLES + [" leading space", "Ñandú 🙂"]:
        assert ours.encode(text).input_ids[0].tolist() == reference(text)["input_ids"], text
        assert ours.decode(ours.encode(text).input_ids[0]) == text


def test_marian_sentencepiece_files_give_marian_tokenizers_ids(tmp_path):
    """A real SentencePiece model (trained here on Bible verses) with a Marian vocab.json: MarianTokenizer's ids."""
    spm = pytest.importorskip("sentencepiece")
    from polyformer.text.bible import load_bible_pairs

    verses = load_bible_pairs("train")[:2000]
    (tmp_path / "en.txt").write_text("\n".join(v.en for v in verses), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(tmp_path / "en.txt"), model_prefix=str(tmp_path / "en"), vocab_size=300, model_type="unigram",
        bos_id=-1, eos_id=0, unk_id=1, pad_id=-1, eos_piece="</s>", unk_piece="<unk>", minloglevel=2,
    )  # fmt: skip
    for side in ("source", "target"):
        (tmp_path / f"{side}.spm").write_bytes((tmp_path / "en.model").read_bytes())
    processor = spm.SentencePieceProcessor(model_file=str(tmp_path / "en.model"))
    vocab = {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}
    vocab["<pad>"] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    ours = TextTokenizer.from_marian(tmp_path, "source")
    files = {name: str(tmp_path / f"{name}.spm") for name in ("source", "target")}
    reference = transformers.MarianTokenizer(
        source_spm=files["source"], target_spm=files["target"], vocab=str(tmp_path / "vocab.json")
    )
    for verse in load_bible_pairs("test")[:100]:
        assert ours.encode(verse.en).input_ids[0].tolist() == reference(verse.en)["input_ids"], verse.reference
    assert ours.pad_id == vocab["<pad>"] and ours.token_id("eos") == 0
    assert ours.decode(ours.encode("In the beginning God created.").input_ids[0]) == "In the beginning God created."
    with pytest.raises(FileNotFoundError, match="source.spm, target.spm and vocab.json"):
        TextTokenizer.from_marian(tmp_path / "missing")
