"""The triton backend's kernels held to the chunked (float64) and naive ops: under TRITON_INTERPRET=1 on the CPU,
or compiled on a GPU with TTT_OMNI_TEST_DEVICE=cuda.

Run by test_triton.py in a fresh process with those variables set before anything imports triton (TRITON_INTERPRET
has no effect once triton is loaded, and other tests load it through torch). Every buffer a kernel writes is
poisoned with NaN first.
"""
import os

import pytest

DEVICE = os.environ.get("TTT_OMNI_TEST_DEVICE", "cpu")
if os.environ.get("TRITON_INTERPRET") != "1" and DEVICE != "cuda":
    pytest.skip("needs TRITON_INTERPRET=1 from process start (or TTT_OMNI_TEST_DEVICE=cuda); tests/ops/test_triton.py "
                "runs this file so", allow_module_level=True)
pytest.importorskip("triton")

import torch  # noqa: E402
from support.ops import make_inputs as _make  # noqa: E402

import ttt_omni.ops as ops  # noqa: E402
from ttt_omni.ops import TTTState, ttt_linear, ttt_mlp  # noqa: E402
from ttt_omni.ops import triton_scan  # noqa: E402
from ttt_omni.ops.chunked import ttt_chunked  # noqa: E402
from ttt_omni.ops.naive import ttt_naive  # noqa: E402

B, H, F, K = 2, 2, 16, 16
TOL = 2e-5  # float32 kernels vs float64 references


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    def nan_empty(shape, dtype, device):
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    monkeypatch.setattr(triton_scan, "_empty", nan_empty)


def assert_close(got, ref, tol=TOL, what="out"):
    assert not torch.isnan(got).any(), f"{what}: NaN (an element was never written)"
    assert torch.isfinite(got).all(), f"{what}: Inf"
    err = ((got.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-30)).item()
    assert err <= tol, f"{what}: relative error {err:.2e} > {tol:.0e}"


def assert_state_close(got: TTTState, ref: TTTState, tol=TOL):
    assert got.seen == ref.seen
    g, r = got.tensors(), ref.tensors()
    assert g.keys() == r.keys()
    for name in r:
        assert g[name].dtype == torch.float32, name
        if r[name].abs().max() == 0:  # accumulators at a boundary
            assert not torch.isnan(g[name]).any() and g[name].abs().max() == 0, name
        else:
            assert_close(g[name], r[name], tol, what=name)


def inputs(kind, T, seed, seen=0):
    """float32 inputs for the kernels, float64 copies for the references; `seen` > 0 starts mid-mini-batch
    (the state comes from a chunked prefill of `seen` tokens, so its accumulators are real)."""
    args64, state64 = _make(kind, B=B, H=H, T=seen + T, F=F, K=K, dtype=torch.float64, seed=seed)
    if seen:
        pre = [a[:, :, :seen] for a in args64[:4]]
        _, state64 = ttt_chunked(*pre, *args64[4:], state64)
        args64 = tuple(a[:, :, seen:] for a in args64[:4]) + args64[4:]
    args64, state64 = tuple(a.to(DEVICE) for a in args64), state64.to(DEVICE)
    args32 = tuple(a.float() for a in args64)
    state32 = TTTState.from_parts(tuple(p.float() for p in state64.params()),
                                  tuple(g.float() for g in state64.grads()), state64.seen)
    return args32, state32, args64, state64


def make(kind, **kw):
    args, state = _make(kind, **kw)
    return tuple(a.to(DEVICE) for a in args), state.to(DEVICE)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.parametrize("seen", [0, 5])
def test_prefill_vs_chunked(kind, seen):
    T = 3 * K + 7  # head piece (when seen > 0), several whole mini-batches for the scan kernel, a tail
    args32, state32, args64, state64 = inputs(kind, T, seed=seen + 1, seen=seen)
    out, state = triton_scan.ttt_triton(*args32, state32)
    ref_out, ref_state = ttt_chunked(*args64, state64)
    assert_close(out, ref_out)
    assert_state_close(state, ref_state)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_scan_vs_naive(kind):
    args32, state32, args64, state64 = inputs(kind, 2 * K, seed=11)
    out, state = triton_scan.ttt_triton(*args32, state32)
    ref_out, ref_state = ttt_naive(*args64, state64)
    assert_close(out, ref_out)
    assert_state_close(state, ref_state)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_decode_steps_vs_chunked(kind):
    """T=1 calls across a mini-batch's end: mid-mini-batch, the closing position, the first of the next."""
    args32, state32, args64, state64 = inputs(kind, 6, seed=21, seen=K - 3)
    for t in range(6):
        piece32 = tuple(a[:, :, t:t + 1] for a in args32[:4]) + args32[4:]
        piece64 = tuple(a[:, :, t:t + 1] for a in args64[:4]) + args64[4:]
        out, state32 = triton_scan.ttt_triton(*piece32, state32)
        ref, state64 = ttt_chunked(*piece64, state64)
        assert_close(out, ref, what=f"out at step {t}")
        assert_state_close(state32, state64)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_streaming_splits(kind):
    """Ragged prefill pieces and decode steps through the dispatch give the one-pass result."""
    T = 4 * K + 3
    args32, state32, args64, state64 = inputs(kind, T, seed=31)
    scan = ttt_linear if kind == "linear" else ttt_mlp
    cuts = [0, 5, 6, 7, 40, 2 * K + 9, 2 * K + 10, T]
    outs, state = [], state32
    for a, b in zip(cuts[:-1], cuts[1:]):
        piece = tuple(x[:, :, a:b] for x in args32[:4]) + args32[4:]
        out, state = scan(*piece, state, backend="triton")
        outs.append(out)
    one_out, one_state = scan(*args32, state32, backend="triton")
    ref_out, ref_state = ttt_chunked(*args64, state64)
    assert_close(torch.cat(outs, dim=2), ref_out)
    assert_state_close(state, ref_state)
    assert_close(one_out, ref_out)
    assert_state_close(one_state, ref_state)


def test_bf16_inputs_and_strided_views():
    """The layer's q/k/v are bf16 transposed views [B,T,H,F] -> [B,H,T,F]; the kernels read them in place."""
    args32, state32, _, _ = inputs("linear", 2 * K, seed=41)
    views = tuple(a.transpose(1, 2).contiguous().transpose(1, 2).bfloat16() for a in args32[:3])
    assert views[0].stride(-1) == 1 and not views[0].is_contiguous()
    out, state = triton_scan.ttt_triton(*views, *args32[3:], state32)
    ref_out, ref_state = ttt_chunked(*views, *args32[3:], state32)
    assert out.dtype == torch.bfloat16
    assert_close(out, ref_out, tol=1e-2)
    assert_state_close(state, ref_state, tol=1e-5)


def test_autograd_falls_back_to_chunked():
    args, state = _make("linear", B=1, H=2, T=K + 3, F=F, K=K, dtype=torch.float32, requires_grad=True)
    args = tuple(a.detach().to(DEVICE).requires_grad_() for a in args)
    state = state.to(DEVICE)
    out, _ = triton_scan.ttt_triton(*args, state)
    ref, _ = ttt_chunked(*args, state)
    assert torch.equal(out, ref)
    (grad,) = torch.autograd.grad(out.sum(), args[0])
    (ref_grad,) = torch.autograd.grad(ref.sum(), args[0])
    assert torch.equal(grad, ref_grad)


def test_unsupported_shape_falls_back_to_chunked():
    args, state = make("linear", B=1, H=1, T=20, F=8, K=4, dtype=torch.float32)  # F, K below the kernels' 16
    out, new_state = triton_scan.ttt_triton(*args, state)
    ref, ref_state = ttt_chunked(*args, state)
    assert torch.equal(out, ref) and torch.equal(new_state.W1, ref_state.W1)


def test_dispatch(monkeypatch):
    args, state = make("linear", B=1, H=1, T=3, F=F, K=K, dtype=torch.float32)
    monkeypatch.delenv("TTT_OMNI_BACKEND", raising=False)
    assert ops._select(None, torch.device("cpu"))[0] == "chunked"
    assert ops._select(None, torch.device("cuda"))[0] == "triton"
    monkeypatch.setenv("TTT_OMNI_BACKEND", "triton")
    assert_close(ttt_linear(*args, state)[0], ttt_chunked(*args, state)[0])
    monkeypatch.setattr(ops, "triton_import_error", lambda: "ModuleNotFoundError: No module named 'triton'")
    with pytest.raises(RuntimeError, match="'triton' was forced"):
        ttt_linear(*args, state)
    monkeypatch.delenv("TTT_OMNI_BACKEND")
    assert ops._select(None, torch.device("cuda"))[0] == "chunked"
