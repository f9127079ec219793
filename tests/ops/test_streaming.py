"""Any split of a sequence into calls gives the outputs and final state of one call."""
import random

import pytest
import torch
from support.ops import rel_err, state_rel_err

from ttt_omni.ops import ttt_linear, ttt_mlp

SCANS = {"linear": ttt_linear, "mlp": ttt_mlp}


def _stream(scan, args, state, cuts, backend):
    xq, xk, xv, lr, ts, lw, lb = args
    outs = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        out, state = scan(xq[:, :, a:b], xk[:, :, a:b], xv[:, :, a:b], lr[:, :, a:b], ts, lw, lb, state,
                          backend=backend)
        outs.append(out)
    return torch.cat(outs, dim=2), state


def _cuts(T, lengths):
    cuts, t = [0], 0
    for n in lengths:
        if t >= T:
            break
        t = min(T, t + n)
        cuts.append(t)
    if cuts[-1] < T:
        cuts.append(T)
    return cuts


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("lengths", [[1, 7, 63, 64, 65, 200], [200, 1, 1, 63], [65, 64, 63, 7, 1]])
def test_fixed_splits(make_inputs, kind, lengths):
    T = 330
    args, state = make_inputs(kind, H=2, T=T, F=8, K=64, seed=sum(lengths))
    one_out, one_state = SCANS[kind](*args, state)
    out, st = _stream(SCANS[kind], args, state, _cuts(T, lengths), "chunked")
    assert rel_err(out, one_out) <= 1e-10
    assert state_rel_err(st, one_state) <= 1e-10


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("seed", range(6))
def test_random_splits(make_inputs, kind, seed):
    rng = random.Random(seed)
    K = rng.choice([4, 16, 64])
    T = rng.randint(1, 4 * K + 9)
    args, state = make_inputs(kind, H=rng.randint(1, 3), T=T, K=K, seed=100 + seed)
    cuts = sorted({0, T, *(rng.randint(1, T) for _ in range(rng.randint(0, 8)))})
    one_out, one_state = SCANS[kind](*args, state)
    out, st = _stream(SCANS[kind], args, state, cuts, "chunked")
    assert rel_err(out, one_out) <= 1e-10
    assert state_rel_err(st, one_state) <= 1e-10


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("backend", ["chunked", "naive"])
def test_token_by_token(make_inputs, kind, backend):
    T, K = 21, 8
    args, state = make_inputs(kind, T=T, K=K, seed=5)
    one_out, one_state = SCANS[kind](*args, state, backend="chunked")
    out, st = _stream(SCANS[kind], args, state, list(range(T + 1)), backend)
    assert rel_err(out, one_out) <= 1e-10
    assert state_rel_err(st, one_state) <= 1e-10
