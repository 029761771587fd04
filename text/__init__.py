"""polyformer.text: tokenizers, BERT (masked LM, classification, sentence embeddings), GPT causal
LMs and encoder-decoder translation, with Hugging Face BERT/GPT-2/Marian/BART interop, built on
polyformer.core.

Importing this package registers the text presets (``bert_*``, ``gpt*``) in the core registry.
"""

from . import bert, gpt  # noqa: F401  (register the BERT and GPT presets)
