"""polyformer.text: tokenizers and BERT so far (translation and causal LMs are to come), built on polyformer.core.

Importing this package registers the text presets (``bert_*``) in the core registry.
"""

from . import bert  # noqa: F401  (registers the BERT presets)
