"""The shipped English-to-Spanish model: the translation pipeline, its demo and its quality on held-out verses."""

import pytest

from polyformer.apps.pipelines import SHIPPED_CHECKPOINTS, pipeline
from polyformer.apps.recipes.text_translation import score_translations
from polyformer.text.bible import load_bible_pairs
from polyformer.text.translation import load_translation_model


@pytest.fixture(scope="module")
def translator():
    return pipeline("translation", num_beams=2)  # the shipped model by default


def test_shipped_model_translates_held_out_verses(translator):
    verses = load_bible_pairs("test")[:24]
    outputs = translator([v.en for v in verses])
    assert len(outputs) == 24 and all(isinstance(o, str) and o for o in outputs)
    assert score_translations(outputs, [v.es for v in verses])["bleu"] > 8  # 19.3 on all 359 with beam 4
    assert translator("And God said.") == translator(["And God said."])[0]
    assert "Dios" in translator("God is love.")


def test_directory_holds_model_and_matching_tokenizer():
    model, tokenizer = load_translation_model(SHIPPED_CHECKPOINTS["translation_en_es"])
    assert tokenizer.vocab_size == model.config.vocab_size == 6000
    assert sum(p.stat().st_size for p in SHIPPED_CHECKPOINTS["translation_en_es"].iterdir()) < 25e6


def test_demo_prints_verses_and_bleu():
    from polyformer.apps.demos.text import run_text_demo

    lines = []
    bleu = run_text_demo(lines.append)
    assert lines[0].startswith("[text] shipped English -> Spanish") and "Ruth 1:1" in lines[1]
    assert lines[-1].startswith("  BLEU") and bleu > 8


def test_bad_inputs(translator):
    with pytest.raises(TypeError, match="translation takes strings"):
        translator([1])
    assert translator([]) == []
