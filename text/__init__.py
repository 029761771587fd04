"""polyformer.text: tokenizers, BERT and GPT so far (translation and causal LMs are to come), built on polyformer.core.

Importing this package registers the text presets (``bert_*``, ``gpt*``) in the core registry.
"""

from . import bert, gpt  # noqa: F401  (register the BERT and GPT presets)
