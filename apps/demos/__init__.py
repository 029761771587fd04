"""Each domain's part of ``polyformer demo``: one module per domain, run on embedded data and shipped checkpoints.

A demo is a function ``run(echo) -> None`` that prints what it does through ``echo``. The
registry below is what ``polyformer demo`` runs, in order; a new domain adds its module here.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["DEMOS", "run_demo"]

Echo = Callable[[str], None]

# name -> (module, what the demo shows); modules are imported only when their demo runs.
DEMOS: dict[str, tuple[str, str]] = {
    "core": ("polyformer.apps.demos.core", "an encoder-decoder trained to reverse sequences, greedy vs beam search"),
    "vision": (
        "polyformer.apps.demos.vision",
        "the shipped ViT on embedded Fashion-MNIST test images, the shipped DETR on held-out shapes images",
    ),
    "text": ("polyformer.apps.demos.text", "the shipped English-to-Spanish transformer on held-out Bible verses"),
    "speech": (
        "polyformer.apps.demos.speech",
        "the shipped Whisper-style model on voices it never heard; OpenAI Whisper base on real LibriVox recordings",
    ),
    "bio": ("polyformer.apps.demos.bio", "the shipped DNABERT classifying held-out primate splice junctions"),
}


def run_demo(name: str, echo: Echo) -> None:
    """Run the demo ``name`` (a key of :data:`DEMOS`)."""
    import importlib

    module, _ = DEMOS[name]
    importlib.import_module(module).run(echo)
