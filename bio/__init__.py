"""polyformer.bio: DNABERT-style k-mer DNA models, built on polyformer.core."""
