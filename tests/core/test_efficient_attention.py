"""Efficient attention backends: parity with eager, their own contracts, bad settings, models."""

import pytest
import torch

from polyformer.core import TransformerConfig, build_encoder, create_attention_backend, create_model, eager_attention
from polyformer.core.backends.block_sparse import block_sparse_mask
from polyformer.core.backends.chunked import chunked_attention
from polyformer.core.backends.local import local_attention, local_mask

B, H, DH = 2, 3, 8


def _qkv(tq, tk, requires_grad=True, dtype=torch.float32):
    return tuple(torch.randn(B, H, t, DH, dtype=dtype, requires_grad=requires_grad) for t in (tq, tk, tk))


def _padding(tk, lengths):
    return (torch.arange(tk)[None, :] < torch.tensor(lengths)[:, None])[:, None, None, :]  # (B, 1, 1, Tk)


MASKS = {
    "none": lambda tq, tk: None,
    "padding": lambda tq, tk: _padding(tk, [tk, 3]),
    "fully_masked_row": lambda tq, tk: _padding(tk, [tk, 0]),
    "per_query_bool": lambda tq, tk: torch.rand(B, 1, tq, tk) > 0.4,
    "float_bias": lambda tq, tk: torch.randn(1, H, tq, tk),
    "2d_bool": lambda tq, tk: torch.rand(tq, tk) > 0.3,
}
SHAPES = [(7, 7), (3, 10), (10, 4), (13, 13)]


def _combine(mask, pattern):
    """User mask restricted to a dense boolean pattern (what eager must be given)."""
    if mask is None:
        return pattern
    if mask.dtype == torch.bool:
        return mask & pattern
    return mask.masked_fill(~pattern, float("-inf"))


def _assert_same(out, ref, inputs, atol=1e-5):
    grad = torch.randn_like(ref)
    got = torch.autograd.grad(out, inputs, grad)
    want = torch.autograd.grad(ref, inputs, grad)
    assert not torch.isnan(out).any()
    torch.testing.assert_close(out, ref, atol=atol, rtol=1e-5)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=atol, rtol=1e-5)


@pytest.mark.parametrize("mask_kind", sorted(MASKS))
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_chunked_matches_eager_outputs_and_gradients(shape, causal, mask_kind):
    tq, tk = shape
    q, k, v = _qkv(tq, tk)
    mask = MASKS[mask_kind](tq, tk)
    inputs = [q, k, v]
    if mask is not None and mask.is_floating_point():
        mask.requires_grad_(True)
        inputs.append(mask)
    ref = eager_attention(q, k, v, mask, causal)
    out = chunked_attention(q, k, v, mask, causal, block=3, query_block=2)
    _assert_same(out, ref, inputs)


def test_chunked_fully_masked_rows_are_zero_and_backend_by_name():
    q, k, v = _qkv(4, 6)
    mask = _padding(6, [6, 0])
    out = create_attention_backend("chunked:2", num_heads=H, head_dim=DH)(q, k, v, mask)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    out.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()


def test_chunked_dropout_backward_matches_finite_differences():
    q, k, v = _qkv(5, 6, dtype=torch.float64)

    def run(q, k, v):
        torch.manual_seed(3)  # the same dropout draw on every call
        return chunked_attention(q, k, v, None, True, None, 0.3, block=2, query_block=2)

    assert torch.autograd.gradcheck(run, (q, k, v))
    assert not torch.equal(run(q, k, v), chunked_attention(q, k, v, None, True, block=2, query_block=2))


def test_chunked_keeps_only_linear_state_for_backward():
    q, k, v = _qkv(64, 64)
    out = chunked_attention(q, k, v, None, False, block=8, query_block=8)
    saved = [t for t in out.grad_fn.saved_tensors if t is not None]
    assert max(t.numel() for t in saved) <= B * H * 64 * DH  # no (Tq, Tk) score matrix is kept


@pytest.mark.parametrize("mask_kind", ["none", "padding", "per_query_bool", "float_bias", "fully_masked_row"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("window,block", [(1, None), (2, 1), (3, 2), (5, None), (6, 4)])
@pytest.mark.parametrize("shape", [(13, 13), (3, 10), (10, 4)])
def test_local_matches_eager_with_band_mask(shape, window, block, causal, mask_kind):
    tq, tk = shape
    q, k, v = _qkv(tq, tk)
    mask = MASKS[mask_kind](tq, tk)
    ref = eager_attention(q, k, v, _combine(mask, local_mask(tq, tk, window, causal)), causal)
    out = local_attention(q, k, v, window, mask, causal, block=block)
    _assert_same(out, ref, [q, k, v])


@pytest.mark.parametrize("causal", [False, True])
def test_local_with_wide_window_equals_full_attention(causal):
    q, k, v = _qkv(20, 20)
    out = create_attention_backend("local:20", num_heads=H, head_dim=DH)(q, k, v, None, causal)
    _assert_same(out, eager_attention(q, k, v, None, causal), [q, k, v])


def test_local_mask_is_a_band():
    assert torch.equal(
        local_mask(4, 4, 2, True).int(), torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]])
    )
    assert torch.equal(local_mask(3, 3, 2, False).int(), torch.tensor([[1, 1, 0], [1, 1, 1], [0, 1, 1]]))


PATTERNS = {
    "strided": "block_sparse:strided,block=3,window=1,stride=3",
    "strided_no_window": "block_sparse:pattern=strided,block=4,window=0,stride=2",
    "bigbird": "block_sparse:bigbird,block=3,window=1,globals=1,random=2,seed=5",
    "bigbird_two_globals": "block_sparse:bigbird,block=2,window=0,globals=2,random=1",
}


@pytest.mark.parametrize("mask_kind", ["none", "padding", "per_query_bool", "float_bias"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@pytest.mark.parametrize("shape", [(17, 17), (5, 19), (20, 7)])
def test_block_sparse_matches_eager_with_dense_mask(shape, pattern, causal, mask_kind):
    tq, tk = shape
    q, k, v = _qkv(tq, tk)
    mask = MASKS[mask_kind](tq, tk)
    backend = create_attention_backend(PATTERNS[pattern], num_heads=H, head_dim=DH)
    dense = backend.dense_mask(tq, tk, is_causal=causal)
    assert dense.shape == (tq, tk) and dense.any(dim=-1).sum() > 0
    ref = eager_attention(q, k, v, _combine(mask, dense), causal)
    _assert_same(backend(q, k, v, mask, causal), ref, [q, k, v])


def test_block_sparse_masks_are_sparse_and_shaped_as_the_papers():
    strided = block_sparse_mask(16, 16, "strided", block=2, window=0, stride=4)
    assert strided[0, 0] and strided[0, 8] and not strided[0, 2]  # |i - j| = 4 blocks: strided column
    bigbird = block_sparse_mask(64, 64, "bigbird", block=4, window=1, globals=1, random=1)
    assert bigbird[:4].all() and bigbird[:, :4].all()  # the global block row and column
    assert bigbird.float().mean() < 0.5
    causal = block_sparse_mask(16, 16, "bigbird", block=4, is_causal=True)
    assert not torch.triu(causal, diagonal=1).any()


def test_block_sparse_and_local_cached_rows_equal_full_rows():
    """Queries continuing cached keys (Tq < Tk) see the same pattern as in a full pass."""
    q, k, v = _qkv(24, 24, requires_grad=False)
    for spec in ("block_sparse:bigbird,block=4,random=2", "block_sparse:strided,block=4,stride=2", "local:5"):
        backend = create_attention_backend(spec, num_heads=H, head_dim=DH)
        full = backend(q, k, v, None, True)
        torch.testing.assert_close(backend(q[:, :, 19:], k, v, None, True), full[:, :, 19:], atol=1e-6, rtol=1e-5)


def test_linformer_contract():
    backend = create_attention_backend("linformer:k=4", num_heads=H, head_dim=DH, max_len=16)
    q, k, v = _qkv(9, 9)
    with pytest.raises(ValueError, match="cannot be causal"):
        backend(q, k, v, None, True)
    with pytest.raises(ValueError, match="key-padding"):
        backend(q, k, v, torch.rand(B, 1, 9, 9) > 0.5)
    with pytest.raises(ValueError, match="max_len=16"):
        backend(*_qkv(4, 17))
    mask = _padding(9, [9, 5])
    out = backend(q, k, v, mask)
    k2, v2 = k.detach().clone(), v.detach().clone()
    k2[1, :, 5:], v2[1, :, 5:] = 100.0, -100.0  # padded keys must not matter
    torch.testing.assert_close(backend(q, k2, v2, mask), out)
    assert torch.equal(backend(q, k, v, _padding(9, [9, 0]))[1], torch.zeros(H, 9, DH))
    out.sum().backward()
    assert backend.proj_k.grad is not None and backend.proj_k.grad[:, :, 9:].abs().sum() == 0  # slice of max_len


@pytest.mark.parametrize(
    "share,shape_k,has_v", [("layer", (1, 4, 16), True), ("head", (H, 4, 16), True), ("kv", (1, 4, 16), False)]
)
def test_linformer_sharing(share, shape_k, has_v):
    backend = create_attention_backend(f"linformer:k=4,share={share}", num_heads=H, head_dim=DH, max_len=16)
    assert tuple(backend.proj_k.shape) == shape_k and (backend.proj_v is not None) == has_v
    assert backend(*_qkv(5, 12)).shape == (B, H, 5, DH)


def test_linformer_needs_max_len():
    with pytest.raises(ValueError, match="max_len"):
        create_attention_backend("linformer", num_heads=H, head_dim=DH)


def test_performer_step_by_step_equals_full_causal():
    backend = create_attention_backend("performer:features=32,chunk=4", num_heads=H, head_dim=DH)
    q, k, v = _qkv(19, 19, requires_grad=False)
    full = backend(q, k, v, None, True)
    state, outs = backend.init_state(B), []
    for t in range(19):
        out, state = backend.step(q[:, :, t : t + 1], k[:, :, t : t + 1], v[:, :, t : t + 1], state)
        outs.append(out)
        assert state.kv.shape == (B, H, 32, DH + 1)  # constant size
    torch.testing.assert_close(torch.cat(outs, dim=2), full, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(backend(q[:, :, 15:], k, v, None, True), full[:, :, 15:], atol=1e-5, rtol=1e-4)


def test_performer_error_falls_with_more_features():
    q, k, v = (0.5 * t for t in _qkv(64, 64, requires_grad=False))
    v = v * 2
    errors = {}
    for causal in (False, True):
        ref = eager_attention(q, k, v, None, causal)
        for m in (16, 256):
            draws = []
            for seed in range(4):
                torch.manual_seed(seed)
                out = create_attention_backend(f"performer:{m}", num_heads=H, head_dim=DH)(q, k, v, None, causal)
                draws.append(float((out - ref).norm() / ref.norm()))
            errors[(causal, m)] = sum(draws) / len(draws)
    assert errors[(False, 256)] < errors[(False, 16)] and errors[(True, 256)] < errors[(True, 16)]
    assert errors[(False, 256)] < 0.2


def test_performer_masks_redraw_and_dropout():
    backend = create_attention_backend("performer:features=16,redraw=2", num_heads=H, head_dim=DH)
    q, k, v = _qkv(6, 9, requires_grad=False)
    mask = _padding(9, [9, 4])
    torch.testing.assert_close(
        backend(q, k, v, mask)[1:], backend(q[1:], k[1:, :, :4], v[1:, :, :4]), atol=1e-6, rtol=1e-5
    )
    assert torch.equal(backend(q, k, v, _padding(9, [9, 0]))[1], torch.zeros(H, 6, DH))
    with pytest.raises(ValueError, match="key-padding"):
        backend(q, k, v, torch.randn(1, 1, 6, 9))
    with pytest.raises(ValueError, match="dropout"):
        backend(q, k, v, None, False, None, 0.1)
    before = backend.features.clone()
    backend.eval()
    for _ in range(3):
        backend(q, k, v)
    assert torch.equal(backend.features, before)
    backend.train()
    for _ in range(3):
        backend(q, k, v)
    assert not torch.equal(backend.features, before)


@pytest.mark.parametrize(
    "spec,message",
    [
        ("local:0", "window"),
        ("local:window=abc", "not a valid int"),
        ("local:width=3", "no option"),
        ("chunked:block=0", "block"),
        ("linformer:k=0", "k >= 1"),
        ("linformer:share=everything", "share"),
        ("performer:features=0", "features"),
        ("performer:redraw=-1", "redraw"),
        ("block_sparse:diagonal", "pattern"),
        ("block_sparse:block=0", "block"),
        ("block_sparse:random=-2", "random"),
        ("nonexistent", "unknown attention backend"),
    ],
)
def test_bad_settings_are_clear_value_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        create_attention_backend(spec, num_heads=H, head_dim=DH, max_len=32)


CAUSAL_SPECS = ["chunked:4", "local:3", "performer:16", "block_sparse:bigbird,block=4", "block_sparse:strided,block=4"]


@pytest.mark.parametrize("spec", CAUSAL_SPECS)
def test_every_causal_backend_runs_in_an_encoder_decoder_model(spec):
    model = create_model("transformer_tiny", backend=spec)
    src, tgt = torch.randint(3, 64, (2, 11)), torch.randint(3, 64, (2, 9))
    src[1, 8:] = 0  # padding in the source
    logits = model(src, tgt)
    logits.sum().backward()
    assert torch.isfinite(logits).all()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("spec", CAUSAL_SPECS)
def test_cached_decoding_equals_full_forward(spec):
    model = create_model("decoder_lm_tiny", backend=spec).eval()
    ids = torch.randint(3, 64, (2, 12))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache()
        steps = [model.step(ids[:, :5], cache)] + [model.step(ids[:, t : t + 1], cache) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("spec", ["linformer:k=8", "linformer:k=8,share=head", *CAUSAL_SPECS])
def test_every_backend_runs_in_an_encoder_with_padding(spec):
    config = TransformerConfig(
        d_model=32, num_heads=4, encoder_layers=2, d_ff=64, dropout=0.0, norm_first=True, max_len=20, backend=spec
    )
    encoder = build_encoder(config.block_spec(), config.encoder_layers)
    x = torch.randn(2, 20, 32, requires_grad=True)
    out = encoder(x, mask=_padding(20, [20, 13])).last_hidden_state
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()


def test_linformer_is_eager_attention_over_projected_keys_in_float64():
    backend = create_attention_backend("linformer:k=4", num_heads=H, head_dim=DH, max_len=16)
    q, k, v = (t.detach().double() for t in _qkv(9, 9))
    expected = eager_attention(q, backend.project(k, "k"), backend.project(v, "v"))
    torch.testing.assert_close(backend(q, k, v), expected, atol=1e-12, rtol=1e-12)
