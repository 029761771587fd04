"""eager vs sdpa agreement, mask semantics, fully masked rows, spec parsing."""

import pytest
import torch

from polyformer.core import attention, causal_mask, eager_attention, list_attention_backends, parse_backend_spec

B, H, DH = 2, 3, 8


def _qkv(tq, tk, requires_grad=False):
    q = torch.randn(B, H, tq, DH, requires_grad=requires_grad)
    k = torch.randn(B, H, tk, DH, requires_grad=requires_grad)
    v = torch.randn(B, H, tk, DH, requires_grad=requires_grad)
    return q, k, v


def _padding_mask(tk, lengths):
    return (torch.arange(tk)[None, :] < torch.tensor(lengths)[:, None])[:, None, None, :]  # (B, 1, 1, Tk)


CASES = {
    "self": dict(tq=7, tk=7, mask=None, is_causal=False),
    "cross": dict(tq=5, tk=9, mask=None, is_causal=False),
    "causal": dict(tq=7, tk=7, mask=None, is_causal=True),
    "causal_continuation": dict(tq=3, tk=8, mask=None, is_causal=True),
    "padded": dict(tq=6, tk=9, mask=_padding_mask(9, [9, 4]), is_causal=False),
    "padded_causal": dict(tq=6, tk=6, mask=_padding_mask(6, [6, 3]), is_causal=True),
    "fully_masked": dict(tq=4, tk=5, mask=_padding_mask(5, [5, 0]), is_causal=False),
    "per_query_mask": dict(tq=4, tk=4, mask=torch.rand(B, 1, 4, 4) > 0.5, is_causal=False),
}


def test_registry_lists_public_names():
    names = list_attention_backends()
    assert "eager" in names and "sdpa" in names


@pytest.mark.parametrize("case", sorted(CASES))
def test_sdpa_matches_eager_forward_and_backward(case):
    spec = CASES[case]
    q, k, v = _qkv(spec["tq"], spec["tk"], requires_grad=True)
    outs, grads = [], []
    for backend in ("eager", "sdpa"):
        out = attention(q, k, v, mask=spec["mask"], is_causal=spec["is_causal"], backend=backend)
        assert torch.isfinite(out).all()
        (g_q, g_k, g_v) = torch.autograd.grad((out * torch.linspace(-1, 1, DH)).sum(), (q, k, v))
        outs.append(out)
        grads.append((g_q, g_k, g_v))
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)
    for a, b in zip(grads[1], grads[0]):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_fully_masked_rows_are_zero_not_nan():
    q, k, v = _qkv(4, 5)
    mask = torch.zeros(B, 1, 4, 5, dtype=torch.bool)
    for backend in ("eager", "sdpa"):
        out = attention(q, k, v, mask=mask, backend=backend)
        assert torch.equal(out, torch.zeros_like(out))


def test_eager_matches_softmax_formula_and_returns_weights():
    q, k, v = _qkv(3, 4)
    out, weights = eager_attention(q, k, v, return_weights=True)
    expected = torch.softmax(q @ k.transpose(-2, -1) / DH**0.5, dim=-1)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(out, expected @ v)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, 3))


def test_causal_is_end_aligned():
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]
    q, k, v = _qkv(8, 8)
    full = attention(q, k, v, is_causal=True, backend="eager")
    last = attention(q[:, :, -3:], k, v, is_causal=True, backend="sdpa")
    torch.testing.assert_close(last, full[:, :, -3:], atol=1e-5, rtol=1e-5)


def test_float_mask_is_additive_bias():
    q, k, v = _qkv(4, 4)
    bias = torch.randn(1, H, 4, 4)
    expected = torch.softmax(q @ k.transpose(-2, -1) / DH**0.5 + bias, dim=-1) @ v
    for backend in ("eager", "sdpa"):
        torch.testing.assert_close(attention(q, k, v, mask=bias, backend=backend), expected, atol=1e-5, rtol=1e-5)


def test_bad_inputs_raise_clear_errors():
    q, k, v = _qkv(4, 4)
    with pytest.raises(ValueError, match="unknown attention backend 'nope'"):
        attention(q, k, v, backend="nope")
    with pytest.raises(ValueError, match="4-D"):
        attention(q[0], k[0], v[0])
    with pytest.raises(ValueError, match="boolean"):
        attention(q, k, v, mask=torch.ones(4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="no positional option"):
        parse_backend_spec("sdpa:3")
    with pytest.raises(ValueError, match="has no option"):
        parse_backend_spec("eager:window=3")


# On a CPU sdpa in bf16 computes with eager up to 384 keys with gradients and 768 without: 600 and 800 cover both paths.
@pytest.mark.parametrize("tk", [9, 600, 800])
@pytest.mark.parametrize("case", ["self", "causal_continuation", "padded", "fully_masked"])
def test_bf16_backends_match_float32_reference(case, tk):
    spec = dict(CASES[case])
    tq = tk if spec["tq"] == spec["tk"] else spec["tq"]
    mask = _padding_mask(tk, [tk, {"padded": 4, "fully_masked": 0}[case]]) if spec["mask"] is not None else None
    q, k, v = _qkv(tq, tk)
    expected = eager_attention(q, k, v, mask, spec["is_causal"])
    q16, k16, v16 = (t.to(torch.bfloat16).requires_grad_(True) for t in (q, k, v))
    for backend in ("eager", "sdpa"):
        with torch.no_grad():
            out = attention(q16, k16, v16, mask=mask, is_causal=spec["is_causal"], backend=backend)
        torch.testing.assert_close(out.float(), expected, atol=3e-2, rtol=3e-2)
        out = attention(q16, k16, v16, mask=mask, is_causal=spec["is_causal"], backend=backend)
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), expected, atol=3e-2, rtol=3e-2)
        grads = torch.autograd.grad(out.float().sum(), (q16, k16, v16))
        assert all(torch.isfinite(g.float()).all() for g in grads)


def test_eager_keeps_float64_precision():
    q, k, v = (t.double() for t in _qkv(5, 6))
    expected = torch.softmax(q @ k.transpose(-2, -1) / DH**0.5, dim=-1) @ v
    torch.testing.assert_close(eager_attention(q, k, v), expected, atol=1e-12, rtol=1e-12)
