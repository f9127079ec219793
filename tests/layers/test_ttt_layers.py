"""TTTLinear / TTTMLP modules: exact streaming, float32 inner state, gradients, clear errors."""
import pytest
import torch
from torch.func import functional_call

from ttt_omni.layers import TTTLinear, TTTMLP, keep_float32

LAYERS = {"linear": TTTLinear, "mlp": TTTMLP}


def _layer(kind, **kw):
    torch.manual_seed(0)
    layer = LAYERS[kind](hidden_size=kw.pop("hidden", 32), num_heads=kw.pop("heads", 4), **kw)
    with torch.no_grad():  # non-trivial values for every learnable inner parameter
        for name, p in layer.inner.named_parameters():
            p.add_(0.05 * torch.randn_like(p))
    return layer


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("use_gate", [False, True])
def test_layer_streaming_equals_one_pass(kind, use_gate):
    layer = _layer(kind, mini_batch_size=64, use_gate=use_gate).double()
    x = torch.randn(2, 400, 32, dtype=torch.float64)
    full, full_state = layer(x)
    outs, state, t = [], None, 0
    for n in [1, 7, 63, 64, 65, 200]:
        out, state = layer(x[:, t:t + n], state)
        outs.append(out)
        t += n
    assert t == 400
    assert torch.allclose(torch.cat(outs, 1), full, rtol=0, atol=1e-12)
    assert state.seen == full_state.seen == 400
    for a, b in zip(state.tensors().values(), full_state.tensors().values()):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_layer_streaming_float32_token_by_token(kind):
    layer = _layer(kind, mini_batch_size=8)
    x = torch.randn(1, 30, 32)
    full, _ = layer(x)
    state, outs = None, []
    for t in range(30):
        out, state = layer(x[:, t:t + 1], state)
        outs.append(out)
    assert (torch.cat(outs, 1) - full).abs().max() <= 1e-5 * full.abs().max()


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_inner_params_stay_float32_under_bf16_and_autocast(kind):
    layer = _layer(kind, mini_batch_size=8).to(torch.bfloat16)
    assert layer.q_proj.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in layer.inner.parameters())
    x = torch.randn(2, 13, 32, dtype=torch.bfloat16)
    out, state = layer(x)
    assert out.dtype == torch.bfloat16
    assert all(t.dtype == torch.float32 for t in state.tensors().values())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = layer(x.float(), state)
    assert all(t.dtype == torch.float32 for t in state.tensors().values())
    layer.half()
    assert all(p.dtype == torch.float32 for p in layer.inner.parameters())


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_state_dict_round_trip_keeps_float32(kind):
    src = _layer(kind, mini_batch_size=8).to(torch.bfloat16)
    sd = {k: v.to(torch.bfloat16) for k, v in src.state_dict().items()}  # a checkpoint saved all in bf16
    dst = LAYERS[kind](32, 4, mini_batch_size=8).to(torch.bfloat16)
    dst.load_state_dict(sd)
    assert all(p.dtype == torch.float32 for p in dst.inner.parameters())
    assert torch.equal(dst.inner.W1, sd["inner.W1"].float())


def test_half_inner_params_refused_with_a_fix():
    layer = _layer("linear", mini_batch_size=8)
    layer.inner.W1.data = layer.inner.W1.data.bfloat16()  # what a naive loader with assign=True would do
    with pytest.raises(TypeError, match=r"W1 \(torch.bfloat16\).*keep_float32"):
        layer(torch.randn(1, 4, 32))
    keep_float32(layer)
    layer(torch.randn(1, 4, 32))


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_gradcheck_input_and_learnable_inner_params(kind):
    layer = _layer(kind, hidden=8, heads=2, mini_batch_size=4, use_gate=True).double()
    names = [n for n, _ in layer.named_parameters() if n.startswith("inner.")]
    assert {"inner.W1", "inner.b1", "inner.ttt_norm_weight", "inner.ttt_norm_bias", "inner.lr_weight",
            "inner.lr_bias", "inner.token_idx_bias"} <= set(names)
    params = dict(layer.named_parameters())
    x = torch.randn(1, 6, 8, dtype=torch.float64, requires_grad=True)
    leaves = [params[n].detach().clone().requires_grad_() for n in names]

    def f(x, *inner):
        out, state = functional_call(layer, {**params, **dict(zip(names, inner))}, (x,))
        return out, state.W1

    assert torch.autograd.gradcheck(f, (x, *leaves), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_layer_bad_input():
    layer = _layer("linear", mini_batch_size=8)
    with pytest.raises(ValueError, match=r"hidden_states must be \[batch, seq, 32\]"):
        layer(torch.randn(4, 32))
    _, mlp_state = _layer("mlp", mini_batch_size=8)(torch.randn(1, 3, 32))
    with pytest.raises(ValueError, match="TTT-mlp state but this is a TTT-linear"):
        layer(torch.randn(1, 3, 32), mlp_state)
    _, state = layer(torch.randn(2, 3, 32))
    with pytest.raises(ValueError, match=r"expected \[batch=1"):
        layer(torch.randn(1, 3, 32), state)
    with pytest.raises(ValueError, match="head_dim must be a positive even number"):
        TTTLinear(30, 10)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_restart_rows_start_a_new_conversation_only_in_those_rows(kind):
    layer = _layer(kind, mini_batch_size=8).double()
    x = torch.randn(3, 24, 32, dtype=torch.float64)
    _, carried = layer(x[:, :16])
    rows = torch.tensor([True, False, True])
    out, state = layer(x[:, 16:], carried, restart_rows=rows)
    fresh_out, fresh_state = layer(x[:, 16:])
    cont_out, cont_state = layer(x[:, 16:], carried)
    for r, restarted in enumerate(rows.tolist()):
        ref_out, ref_state = (fresh_out, fresh_state) if restarted else (cont_out, cont_state)
        assert torch.allclose(out[r], ref_out[r], rtol=0, atol=1e-12)
        assert torch.allclose(state.W1[r], ref_state.W1[r], rtol=0, atol=1e-12)
    _, mid = layer(x[:, :5])
    with pytest.raises(ValueError, match="mini-batch boundary"):
        layer(x[:, 5:8], mid, restart_rows=rows)
    with pytest.raises(ValueError, match="bool tensor of shape"):
        layer(x[:, 16:], carried, restart_rows=torch.ones(2, dtype=torch.bool))


GRAD_MODES = {"grad": torch.enable_grad, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("backend", ["naive", "chunked"])
@pytest.mark.parametrize("mode", sorted(GRAD_MODES))
@pytest.mark.parametrize("carried", [False, True], ids=["fresh", "carried"])
def test_every_backend_with_and_without_grad(kind, backend, mode, carried, monkeypatch):
    """Same outputs and state as chunked with autograd, whatever the grad mode, from a fresh or a carried state
    (naive under no_grad once failed: its inner gradient took an expanded view of a parameter as a leaf)."""
    layer = _layer(kind, mini_batch_size=8).double()
    x = torch.randn(1, 21, 32, dtype=torch.float64)
    ref_prefix, ref_state = layer(x[:, :11])
    ref_out, ref_state = layer(x[:, 11:], ref_state) if carried else (ref_prefix, ref_state)
    monkeypatch.setenv("TTT_OMNI_BACKEND", backend)
    with GRAD_MODES[mode]():
        state = layer(x[:, :11])[1] if carried else None
        out, new_state = layer(x[:, 11:] if carried else x[:, :11], state)
    assert torch.allclose(out, ref_out.detach(), rtol=0, atol=1e-10)
    for a, b in zip(new_state.tensors().values(), ref_state.tensors().values()):
        assert torch.allclose(a, b.detach(), rtol=0, atol=1e-10)
    assert out.requires_grad == (mode == "grad")
