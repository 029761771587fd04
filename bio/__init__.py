"""polyformer.bio: DNABERT-style k-mer DNA models, built on polyformer.core.

So far: the sequence rule and reverse complement (:mod:`.sequence`) and DNABERT's k-mer
tokenizer (:mod:`.tokenizer`).
"""

from .sequence import SequenceError, normalize_sequence, reverse_complement
from .tokenizer import KmerTokenizer, kmer_vocabulary

__all__ = ["KmerTokenizer", "SequenceError", "kmer_vocabulary", "normalize_sequence", "reverse_complement"]
