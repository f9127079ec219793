"""Backward through the chunked scan: gradcheck in float64, and checkpointing changes no gradient."""
import pytest
import torch
from support.ops import rel_err

from ttt_omni.ops import TTTState, ttt_linear, ttt_mlp

SCANS = {"linear": ttt_linear, "mlp": ttt_mlp}


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_gradcheck_op_inputs_and_initial_weights(make_inputs, kind):
    # T=7 with K=4 crosses a mini-batch boundary and ends mid-mini-batch.
    args, state = make_inputs(kind, B=1, H=2, T=7, F=4, K=4, requires_grad=True, seed=3)
    params = state.params()

    def f(*flat):
        op_args, p = flat[:7], flat[7:]
        st = TTTState.fresh(*p)
        out, new = SCANS[kind](*op_args, st, backend="chunked")
        return out, *new.params(), *new.grads()

    assert torch.autograd.gradcheck(f, (*args, *params), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_gradients_match_naive_autograd(make_inputs, kind):
    args, state = make_inputs(kind, B=2, H=2, T=19, F=4, K=8, requires_grad=True, seed=11)
    leaves = (*args, *state.params())
    grads = {}
    for backend in ("naive", "chunked"):
        out, new = SCANS[kind](*args, state, backend=backend)
        loss = (out ** 2).sum() + sum((p ** 2).sum() for p in new.params())
        grads[backend] = torch.autograd.grad(loss, leaves)
    for gn, gc in zip(grads["naive"], grads["chunked"]):
        assert rel_err(gc, gn) <= 1e-10


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("every", [1, 2, 3])
def test_checkpointing_gives_same_gradients(make_inputs, kind, every):
    args, state = make_inputs(kind, B=1, H=2, T=45, F=4, K=8, requires_grad=True, seed=every)
    leaves = (*args, *state.params())
    results = []
    for ckpt in (None, every):
        out, new = SCANS[kind](*args, state, checkpoint_every=ckpt)
        loss = (out.sin()).sum() + new.W1.sum()
        results.append((out.detach(), torch.autograd.grad(loss, leaves)))
    (o1, g1), (o2, g2) = results
    assert torch.equal(o1, o2)
    for a, b in zip(g1, g2):
        assert rel_err(b, a) <= 1e-12
