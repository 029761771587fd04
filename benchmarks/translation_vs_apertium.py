"""Translation quality of a polyformer model against Apertium's rule-based English -> Spanish on the same verses.

Both translate the held-out test books of the embedded Bible (whole books never trained on; World
English Bible -> Reina-Valera 1909 references); sacreBLEU scores each against the same references
(corpus BLEU and chrF, default settings). Apertium is the Debian package ``apertium-eng-spa``
(``apt-get install apertium-eng-spa``), run here as ``apertium -u eng-spa`` on one verse per line;
it is a benchmark baseline, never used by the tests.

Run: ``python benchmarks/translation_vs_apertium.py [--model translation_en_es] [--beams 4] [--limit N]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time

from polyformer.apps.engine.hardware import machine_summary
from polyformer.apps.pipelines import pipeline
from polyformer.apps.recipes.text_translation import score_translations
from polyformer.text.bible import load_bible_pairs


def apertium(sources: list[str]) -> list[str]:
    """Apertium's translations, one per source (newlines inside a verse are never present)."""
    if shutil.which("apertium") is None:
        sys.exit("apertium is not installed: apt-get install apertium-eng-spa")
    done = subprocess.run(
        ["apertium", "-u", "eng-spa"], input="\n".join(sources) + "\n", capture_output=True, text=True, check=True
    )
    lines = done.stdout.rstrip("\n").split("\n")
    if len(lines) != len(sources):
        sys.exit(f"apertium returned {len(lines)} lines for {len(sources)} verses")
    return [line.strip() for line in lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="translation_en_es", help="model or run directory, or a shipped name")
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--limit", type=int, default=0, help="score only the first N test verses (0 = all)")
    args = parser.parse_args()
    verses = load_bible_pairs("test")
    if args.limit:
        verses = verses[: args.limit]
    sources, references = [v.en for v in verses], [v.es for v in verses]
    start = time.perf_counter()
    ours = pipeline("translation", model=args.model, num_beams=args.beams)(sources)
    ours_seconds = time.perf_counter() - start
    start = time.perf_counter()
    baseline = apertium(sources)
    apertium_seconds = time.perf_counter() - start
    print(machine_summary())
    print(f"{len(verses)} test verses (books {', '.join(dict.fromkeys(v.book for v in verses))}), English -> Spanish")
    for name, outputs, seconds in (("polyformer", ours, ours_seconds), ("Apertium", baseline, apertium_seconds)):
        scores = score_translations(outputs, references)
        print(f"  {name:<11} BLEU {scores['bleu']:6.2f}   chrF {scores['chrf']:6.2f}   ({seconds:.1f} s)")
    for verse, mine, theirs in list(zip(verses, ours, baseline))[:3]:
        print(f"  {verse.reference}: {verse.en}")
        print(f"    polyformer: {mine}\n    Apertium:   {theirs}\n    RV1909:     {verse.es}")


if __name__ == "__main__":
    main()
