"""BERT for text (Devlin et al. 2019): presets, loading our or Hugging Face directories with their tokenizer,
and sentence embeddings. The encoder itself and the Hugging Face weight mapping are core's
(:mod:`polyformer.core.encoder_models`, :mod:`polyformer.core.convert_hf_bert`), shared with bio's DNABERT.

Importing this package registers the ``bert_*`` presets in the core registry.
"""

from .presets import bert_base, bert_mini, bert_small, bert_tiny
from .pretrained import BertBundle, SentencePooling, load_bert, read_pooling, save_bert, sentence_embeddings

__all__ = [name for name in dir() if not name.startswith("_")]
