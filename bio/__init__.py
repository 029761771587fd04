"""polyformer.bio: DNABERT-style k-mer DNA models, built on polyformer.core.

So far: the sequence rule and reverse complement (:mod:`.sequence`), DNABERT's k-mer
tokenizer (:mod:`.tokenizer`), its k-mer-aware MLM masking (:mod:`.masking`), readers for
FASTA / FASTQ / GenBank and ``sequence,label`` CSV files (:mod:`.data`), and both strands:
reverse-complement augmentation and averaged prediction (:mod:`.strand`).
"""

from .masking import mask_kmers
from .sequence import SequenceError, normalize_sequence, reverse_complement
from .strand import rc_augment, rc_average
from .tokenizer import KmerTokenizer, kmer_vocabulary

__all__ = [
    "KmerTokenizer", "SequenceError", "kmer_vocabulary", "mask_kmers", "normalize_sequence", "rc_augment", "rc_average",
    "reverse_complement",
]  # fmt: skip
