"""The decode step (ops.step.ttt_step: one token, no autograd) gives the one-pass chunked scan's outputs and state
token by token, across mini-batch boundaries, with and without updating the accumulators in place; in place it
writes only the accumulators it was handed, never the start weights, and the state it returns is the one to go on
with. Off the CPU the finiteness check runs every N decode steps, still naming what is not finite."""
import pytest
import torch
from support.ops import rel_err, state_rel_err

from ttt_omni import ops
from ttt_omni.ops import ttt_linear, ttt_mlp
from ttt_omni.ops.step import ttt_step
from ttt_omni.ops.validate import NonFiniteStateError

SCANS = {"linear": ttt_linear, "mlp": ttt_mlp}


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("prefill", [0, 5, 16])
def test_token_by_token_equals_one_pass(make_inputs, kind, inplace, prefill):
    args, state = make_inputs(kind, T=41, K=8, seed=prefill)
    one_out, one_state = ops.ttt_chunked(*args, state)
    xq, xk, xv, lr, ts, lw, lb = args
    start = [W.clone() for W in state.params()]
    with torch.no_grad():
        outs, st = [], state
        if prefill:
            out, st = SCANS[kind](xq[:, :, :prefill], xk[:, :, :prefill], xv[:, :, :prefill], lr[:, :, :prefill],
                                  ts, lw, lb, st)
            outs.append(out)
        for t in range(prefill, 41):
            out, st = ttt_step(xq[:, :, t:t + 1], xk[:, :, t:t + 1], xv[:, :, t:t + 1], lr[:, :, t:t + 1], ts, lw,
                               lb, st, inplace=inplace)
            outs.append(out)
    assert rel_err(torch.cat(outs, dim=2), one_out) <= 1e-10
    assert state_rel_err(st, one_state) <= 1e-10 and st.seen == 41
    assert all(torch.equal(a, b) for a, b in zip(start, state.params()))  # the start weights are never written


def test_one_token_without_autograd_runs_the_step_and_in_place_keeps_the_buffers(make_inputs, monkeypatch):
    args, state = make_inputs("linear", T=3, K=8)
    with torch.no_grad():
        _, st = ttt_linear(*(a[:, :, :2] if a.dim() >= 3 else a for a in args), state)
        calls = []
        monkeypatch.setattr(ops, "ttt_step", lambda *a, **k: calls.append(k) or ttt_step(*a, **k))
        _, after = ttt_linear(*(a[:, :, 2:3] if a.dim() >= 3 else a for a in args), st, inplace=True)
    assert calls == [{"inplace": True}]
    assert after.grad_W1 is st.grad_W1 and after.W1 is st.W1


def test_off_the_cpu_a_nan_is_caught_within_n_decode_steps(make_inputs, monkeypatch):
    """Simulated on the CPU with TTT_OMNI_FINITE_CHECK_EVERY=4 (what other devices do by default per mini-batch)."""
    monkeypatch.setenv("TTT_OMNI_FINITE_CHECK_EVERY", "4")
    args, state = make_inputs("linear", T=12, K=8)
    xq, xk, xv, lr, ts, lw, lb = args
    with torch.no_grad():
        _, st = ttt_linear(xq[:, :, :5], xk[:, :, :5], xv[:, :, :5], lr[:, :, :5], ts, lw, lb, state)
        st.grad_W1[0, 0, 0, 0] = float("nan")
        step = lambda t, s: ttt_linear(xq[:, :, t:t + 1], xk[:, :, t:t + 1], xv[:, :, t:t + 1], lr[:, :, t:t + 1],
                                       ts, lw, lb, s)[1]
        st = step(5, st)  # positions 5..7 go unchecked
        st = step(6, st)
        st = step(7, st)
        with pytest.raises(NonFiniteStateError, match=r"state contains NaN/Inf in \['W1'"):
            step(8, st)  # position 8: checked; the NaN reached the weights when the mini-batch closed
