"""The text part of ``polyformer demo``: the shipped English-to-Spanish model translates held-out Bible verses."""

from __future__ import annotations

import time
from collections.abc import Callable

from polyformer.apps.pipelines import SHIPPED_CHECKPOINTS, pipeline
from polyformer.apps.recipes.text_translation import score_translations
from polyformer.text.bible import load_bible_pairs

__all__ = ["run", "run_text_demo"]

SHOWN = 4  # verses printed
SCORED = 80  # verses scored (the first of the test books: Ruth, then Joel)


def run_text_demo(echo: Callable[[str], None]) -> float:
    """Translate held-out verses (books never trained on) with the shipped model; print a few and their BLEU.

    Returns:
        The BLEU of the scored verses.
    """
    start = time.perf_counter()
    directory = SHIPPED_CHECKPOINTS["translation_en_es"]
    translator = pipeline("translation", model=directory, num_beams=4)
    size_mb = sum(p.stat().st_size for p in directory.iterdir()) / 1e6
    verses = load_bible_pairs("test")[:SCORED]
    echo(f"[text] shipped English -> Spanish transformer {directory.name} ({size_mb:.1f} MB) on held-out Bible books")
    outputs = translator([v.en for v in verses])
    for verse, output in list(zip(verses, outputs))[:SHOWN]:
        echo(f"  {verse.reference}")
        echo(f"    en:     {verse.en}")
        echo(f"    model:  {output}")
        echo(f"    RV1909: {verse.es}")
    scores = score_translations(outputs, [v.es for v in verses])
    echo(
        f"  BLEU {scores['bleu']:.2f}, chrF {scores['chrf']:.2f} on the first {len(verses)} test verses "
        f"(beam 4, {time.perf_counter() - start:.1f}s)"
    )
    return scores["bleu"]


def run(echo: Callable[[str], None]) -> None:
    run_text_demo(echo)
