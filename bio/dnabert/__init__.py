"""DNABERT-style DNA encoders (Ji et al. 2021; DNABERT-2, Zhou et al. 2024) on core's encoder-only models.

Presets (:mod:`.presets`, registered in core's registry when this package is imported), loading and
saving our directories and Hugging Face DNABERT ones (:mod:`.pretrained`), and prediction: class
probabilities with optional reverse-complement averaging, and sequence embeddings (:mod:`.inference`).
"""

from .inference import classify_sequences, embed_sequences
from .presets import dnabert2_base, dnabert2_mini, dnabert_base, dnabert_mini, dnabert_tiny
from .pretrained import DnaModel, load_dna_tokenizer, load_dnabert, save_dna_tokenizer, save_dnabert

__all__ = [
    "DnaModel", "classify_sequences", "dnabert2_base", "dnabert2_mini", "dnabert_base", "dnabert_mini", "dnabert_tiny",
    "embed_sequences", "load_dna_tokenizer", "load_dnabert", "save_dna_tokenizer", "save_dnabert",
]  # fmt: skip
