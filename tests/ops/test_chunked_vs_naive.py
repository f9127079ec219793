"""The chunked dual form computes exactly the token-by-token definition."""
import pytest
import torch
from support.ops import rel_err, state_rel_err

from ttt_omni.ops import ttt_linear, ttt_mlp

SCANS = {"linear": ttt_linear, "mlp": ttt_mlp}


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("heads", [1, 3])
@pytest.mark.parametrize("K,T", [(4, 16), (4, 18), (16, 32), (16, 37), (64, 128), (64, 100), (64, 5)])
def test_chunked_equals_naive_float64(make_inputs, kind, heads, K, T):
    args, state = make_inputs(kind, H=heads, T=T, K=K, seed=K * 1000 + T + heads)
    out_n, st_n = SCANS[kind](*args, state, backend="naive")
    out_c, st_c = SCANS[kind](*args, state, backend="chunked")
    assert out_c.dtype == torch.float64
    assert rel_err(out_c, out_n) <= 1e-10
    assert state_rel_err(st_c, st_n) <= 1e-10
    assert st_c.seen == T


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("K,T", [(16, 48), (16, 41), (64, 130)])
def test_chunked_float32_close_to_float64_definition(make_inputs, kind, K, T):
    args64, state64 = make_inputs(kind, T=T, K=K, seed=7 + T)
    args32, state32 = make_inputs(kind, T=T, K=K, seed=7 + T, dtype=torch.float32)
    out_n, st_n = SCANS[kind](*args64, state64, backend="naive")
    out_c, st_c = SCANS[kind](*args32, state32, backend="chunked")
    assert out_c.dtype == torch.float32 and st_c.W1.dtype == torch.float32
    assert rel_err(out_c.double(), out_n) <= 1e-5
    assert state_rel_err(st_c.to("cpu")._map(torch.Tensor.double), st_n) <= 1e-5


def test_empty_sequence_returns_state_unchanged(make_inputs):
    args, state = make_inputs("linear", T=0)
    out, new = ttt_linear(*args, state)
    assert out.shape[2] == 0 and new.seen == 0
    assert torch.equal(new.W1, state.W1)
