"""Every core preset: tiny forward and backward without NaN."""

import pytest
import torch

from polyformer.core import DecoderOnlyTransformer, create_model, list_presets

CORE_PRESETS = [p.name for p in list_presets("transformer")]


@pytest.mark.parametrize("name", CORE_PRESETS)
def test_preset_forward_backward_finite(name):
    model = create_model(name)
    vocab = model.config.vocab_size
    ids = torch.randint(3, min(vocab, 100), (2, 5))
    logits = model(ids) if isinstance(model, DecoderOnlyTransformer) else model(ids, ids[:, :4])
    assert logits.shape[-1] == vocab
    logits.logsumexp(-1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
