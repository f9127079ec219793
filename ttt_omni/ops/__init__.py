"""TTT scans as pure tensor functions. `ttt_linear` / `ttt_mlp` validate, pick a backend and compute in the state's
float32 (autocast off): every backend gives the same results.

Arguments (B batch, H heads, T tokens, F head dim, K mini-batch size):
    xq, xk, xv   [B,H,T,F]   queries, keys, values (RoPE already applied)
    lr           [B,H,T]     per-token inner learning rate (base_lr * sigmoid(x w + b) / F)
    token_scale  [K]         per-position scale inside a mini-batch (1/i plus a learnable offset, >= 0)
    ln_weight, ln_bias [H,F] the inner model's layer norm
    state        TTTState    initial state; the returned one continues the sequence exactly
Returns (out [B,H,T,F] in xq's dtype, final TTTState). out_t = q_t + LN(f_t(q_t)).
Backends: "naive", "chunked", "triton" (fused GPU kernels, forward only: with autograd it runs chunked). The
default is the fastest correct one for the inputs' device: triton on CUDA when triton imports, else chunked.
TTT_OMNI_BACKEND=naive|chunked|triton (or backend=...) forces one. A chunked call of one token without autograd (a
decode step) runs step.ttt_step; `inplace=True` lets it update the state's accumulators where they lie (the caller
gives up `state`: the model's cache does).

NaN/Inf in the state or inputs raise NonFiniteStateError / NonFiniteInputError. On the CPU every call checks; on
other devices (where the check is a host synchronisation) a decode step checks only when its position is a multiple
of $TTT_OMNI_FINITE_CHECK_EVERY (default: every mini-batch) and calls of several tokens always check: a NaN that
entered the state since is still there (the accumulators and, at the mini-batch's end, the weights carry it).
"""
from __future__ import annotations

import functools
import os

import torch
from torch import Tensor

from .chunked import ttt_chunked
from .naive import ttt_naive
from .step import ttt_step
from .precision import triton_precision
from .state import TTTState
from .validate import check_finite, check_inputs, check_state



@functools.cache
def triton_import_error() -> str | None:
    """None when the triton backend can be used, else why not. Imported on first use, so that TRITON_INTERPRET
    set by a test before that still applies."""
    try:
        from . import triton_scan  # noqa: F401
    except ImportError as e:
        return f"{type(e).__name__}: {e}"
    return None


def ttt_triton(*args, **kwargs):
    from .triton_scan import ttt_triton as fn
    return fn(*args, **kwargs)


BACKENDS = {"naive": ttt_naive, "chunked": ttt_chunked, "triton": ttt_triton}

__all__ = ["TTTState", "ttt_linear", "ttt_mlp", "BACKENDS", "backend_name", "triton_import_error", "triton_precision"]


def backend_name(device: torch.device | str, backend: str | None = None) -> str:
    """The backend a scan on `device` runs: `backend`, else $TTT_OMNI_BACKEND, else triton on CUDA when triton
    imports, else chunked."""
    name = backend or os.environ.get("TTT_OMNI_BACKEND")
    if not name:
        name = "triton" if torch.device(device).type == "cuda" and triton_import_error() is None else "chunked"
    return name


def _select(backend: str | None, device: torch.device):
    name = backend_name(device, backend)
    if name not in BACKENDS:
        raise ValueError(f"unknown TTT backend {name!r} (from {'argument' if backend else 'TTT_OMNI_BACKEND'}); "
                         f"expected one of {sorted(BACKENDS)}")
    if name == "triton" and triton_import_error() is not None:
        raise RuntimeError(f"TTT backend 'triton' was forced but triton cannot be imported ({triton_import_error()}); "
                           "install triton (the `test` extra has it) or use TTT_OMNI_BACKEND=chunked")
    return name, BACKENDS[name]


def finite_check_every(device: torch.device, mini_batch_size: int) -> int:
    """Decode steps between finiteness checks on `device`: 1 on the CPU (no host synchronisation to save), else
    $TTT_OMNI_FINITE_CHECK_EVERY or the mini-batch size."""
    if device.type == "cpu":
        return int(os.environ.get("TTT_OMNI_FINITE_CHECK_EVERY", 1))
    return int(os.environ.get("TTT_OMNI_FINITE_CHECK_EVERY", mini_batch_size))


def _run(kind: str, xq, xk, xv, lr, token_scale, ln_weight, ln_bias, state, checkpoint_every, backend,
         inplace=False):
    B, H, T, F = check_inputs(xq, xk, xv, lr, token_scale, ln_weight, ln_bias)
    check_state(state, kind, B, H, F)
    if T != 1 or state.seen % max(1, finite_check_every(xq.device, token_scale.shape[0])) == 0:
        check_finite(state, dict(xq=xq, xk=xk, xv=xv, lr=lr, token_scale=token_scale, ln_weight=ln_weight,
                                 ln_bias=ln_bias))
    name, fn = _select(backend, xq.device)
    kwargs = {"checkpoint_every": checkpoint_every} if name != "naive" else {}
    if name == "chunked" and T == 1 and not torch.is_grad_enabled():
        fn, kwargs = ttt_step, {"inplace": inplace}
    with torch.autocast(device_type=xq.device.type, enabled=False):
        out, new_state = fn(xq, xk, xv, lr, token_scale, ln_weight, ln_bias, state, **kwargs)
    return out.to(xq.dtype), new_state


def ttt_linear(xq: Tensor, xk: Tensor, xv: Tensor, lr: Tensor, token_scale: Tensor, ln_weight: Tensor,
               ln_bias: Tensor, state: TTTState, *, checkpoint_every: int | None = None,
               backend: str | None = None, inplace: bool = False) -> tuple[Tensor, TTTState]:
    """TTT-Linear scan: inner model f(x) = x W1 + b1."""
    return _run("linear", xq, xk, xv, lr, token_scale, ln_weight, ln_bias, state, checkpoint_every, backend,
                inplace)


def ttt_mlp(xq: Tensor, xk: Tensor, xv: Tensor, lr: Tensor, token_scale: Tensor, ln_weight: Tensor,
            ln_bias: Tensor, state: TTTState, *, checkpoint_every: int | None = None,
            backend: str | None = None, inplace: bool = False) -> tuple[Tensor, TTTState]:
    """TTT-MLP scan: inner model f(x) = gelu(x W1 + b1) W2 + b2."""
    return _run("mlp", xq, xk, xv, lr, token_scale, ln_weight, ln_bias, state, checkpoint_every, backend,
                inplace)
