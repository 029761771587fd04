"""The sdpa backend on the decoding hot path: grouped-query attention without repeating the KV
cache, and the bf16 CPU dispatch rule for short queries over long keys."""

import pytest
import torch

from polyformer.core import eager_attention
from polyformer.core.backends.sdpa import SDPADispatchPolicy, SDPAttention


def _qkv(b, h, hkv, tq, tk, dtype=torch.float32):
    return (torch.randn(b, h, tq, 16, dtype=dtype), torch.randn(b, hkv, tk, 16, dtype=dtype),
            torch.randn(b, hkv, tk, 16, dtype=dtype))  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("masked", [False, True])
def test_grouped_keys_and_values_give_the_repeated_heads_result(dtype, masked):
    q, k, v = _qkv(2, 6, 2, 3, 7, dtype)
    mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    mask[1, ..., 5:] = False
    mask[0, ..., :] = False  # a row with nothing to attend to: zeros, not NaN
    mask = mask if masked else None
    backend = SDPAttention(num_heads=6, head_dim=16)
    out = backend(q, k, v, mask)
    ref = eager_attention(q, k.repeat_interleave(3, dim=1), v.repeat_interleave(3, dim=1), mask)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(out.float(), ref.float(), atol=tol, rtol=tol)
    assert torch.isfinite(out).all()


def test_the_multi_head_layer_hands_grouped_heads_to_sdpa_unrepeated(monkeypatch):
    from polyformer.core import MultiHeadAttention

    seen = []
    original = SDPAttention.forward

    def spy(self, q, k, v, *args, **kwargs):
        seen.append((q.shape[1], k.shape[1]))
        return original(self, q, k, v, *args, **kwargs)

    monkeypatch.setattr(SDPAttention, "forward", spy)
    layer = MultiHeadAttention(32, 4, num_kv_heads=2, backend="sdpa")
    reference = MultiHeadAttention(32, 4, num_kv_heads=2, backend="eager")
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(2, 5, 32)
    out, _ = layer(x)
    torch.testing.assert_close(out, reference(x)[0], atol=1e-5, rtol=1e-5)
    assert seen == [(4, 2)]


def test_dispatch_rule_for_short_queries_over_long_keys():
    policy = SDPADispatchPolicy()
    step = _qkv(5, 8, 8, 1, 1500, torch.bfloat16)  # one decoding step over Whisper's 1500 frames
    assert policy.use_matmul_path(*step)
    assert not policy.use_matmul_path(*_qkv(1, 8, 8, 1024, 1500, torch.bfloat16))  # a long query block: fused
    assert not policy.use_matmul_path(*_qkv(5, 8, 8, 1, 1500))  # fp32: always fused
    q, k, v = step
    q.requires_grad_(True)
    assert not policy.use_matmul_path(q, k, v)  # training keeps the measured 384-key limit
    huge = SDPADispatchPolicy(max_scores=1000)
    assert not huge.use_matmul_path(*_qkv(1, 8, 8, 1, 1500, torch.bfloat16))  # the score-memory cap holds
