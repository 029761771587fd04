"""polyformer.text: tokenizers, translation, masked LM and causal LM, built on polyformer.core."""
