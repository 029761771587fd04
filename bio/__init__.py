"""polyformer.bio: DNABERT-style k-mer DNA models, built on polyformer.core.

The sequence rule and reverse complement (:mod:`.sequence`), DNABERT's k-mer tokenizer
(:mod:`.tokenizer`) and DNABERT-2's byte-pair encoding (:mod:`.bpe`), k-mer-aware MLM masking
(:mod:`.masking`), readers for FASTA / FASTQ / GenBank and ``sequence,label`` CSV files and the
shipped data (:mod:`.data`), both strands: reverse-complement augmentation and averaged prediction
(:mod:`.strand`), and the DNABERT / DNABERT-2 models (:mod:`.dnabert`; importing this package
registers their presets).
"""

from . import dnabert  # noqa: F401  (registers the DNABERT presets)
from .bpe import DnaBpeTokenizer
from .masking import mask_kmers
from .sequence import SequenceError, normalize_sequence, reverse_complement
from .strand import rc_augment, rc_average
from .tokenizer import DnaTokenizer, KmerTokenizer, kmer_vocabulary

__all__ = [
    "DnaBpeTokenizer", "DnaTokenizer", "KmerTokenizer", "SequenceError", "kmer_vocabulary", "mask_kmers",
    "normalize_sequence", "rc_augment", "rc_average", "reverse_complement",
]  # fmt: skip
