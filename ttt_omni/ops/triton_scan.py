"""The "triton" backend: chunked.ttt_chunked's contract, with the scan and the decode step as fused kernels.

A call is cut like chunked's pieces: a partial mini-batch at the start (the state is mid-mini-batch) and at the end
(the call stops mid-mini-batch) go through chunked.ttt_chunked, the whole mini-batches between them through one
scan kernel launch, and a single token (decode) through the decode kernel, so any split gives the one-pass result.

Falls back to ttt_chunked (same results) when
  * autograd is recording and any input requires grad: training uses the chunked path's autograd and its
    gradient checkpointing (`checkpoint_every`); the kernels are forward only;
  * the state is float64 (a test precision; the kernels compute in float32);
  * a shape the kernels do not take: head dim F and F1 powers of two >= 16, and for the scan a mini-batch size K
    that is a power of two >= 16 (tl.dot's minimum).
Kernels need CUDA tensors, or CPU tensors under TRITON_INTERPRET=1 (set before triton is imported; the tests do).
TTT_OMNI_TRITON_PRECISION = ieee | tf32x3 | tf32 picks tl.dot's operand precision (`ops.triton_precision`).
"""
from __future__ import annotations

import os

import torch
from torch import Tensor

from . import triton_kernels as kern
from .chunked import ttt_chunked
from .precision import triton_precision
from .state import TTTState

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _pow2(n: int) -> bool:
    return n >= 16 and n & (n - 1) == 0


def _tokens(x: Tensor) -> Tensor:
    """[B,H,T,F] with unit stride along F (the layer's transposed views qualify as they are)."""
    return x if x.stride(-1) == 1 else x.contiguous()


def _qkv(xq: Tensor, xk: Tensor, xv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    q, k, v = _tokens(xq), _tokens(xk), _tokens(xv)
    if not (q.stride() == k.stride() == v.stride()):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    return q, k, v


def _empty(shape, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Every buffer a kernel writes comes from here (the tests poison it with NaN)."""
    return torch.empty(shape, dtype=dtype, device=device)


def _f32(t: Tensor) -> Tensor:
    """A float32 contiguous copy the kernels may overwrite (the caller's state is never modified)."""
    return _empty(t.shape, torch.float32, t.device).copy_(t.detach())


def _view(t: Tensor) -> Tensor:
    """float32 contiguous, without a copy where it already is."""
    return t.detach().to(torch.float32).contiguous()


def _scan(q, k, v, lr, ts, lnw, lnb, state: TTTState, out: Tensor) -> TTTState:
    """Whole mini-batches from a boundary; writes out [B,H,n*K,F] and returns the boundary state after them."""
    B, H, T, F = q.shape
    K = ts.shape[0]
    q, k, v = _qkv(q, k, v)
    params = tuple(_f32(p) for p in state.params())
    common = (T // K, H, *q.stride()[:3], *out.stride()[:3], *lr.stride())
    if state.kind == "linear":
        kern.linear_scan[(B * H,)](q, k, v, lr, ts, lnw, lnb, *params, out, *common, F=F, K=K,
                                   PREC=triton_precision(), num_warps=8, num_stages=1)
    else:
        F1 = params[0].shape[-1]
        kern.mlp_scan[(B * H,)](q, k, v, lr, ts, lnw, lnb, *params, out, *common, F=F, F1=F1, K=K,
                                BF1=min(F1, 32), PREC=triton_precision(), num_warps=8, num_stages=1)
    return TTTState.from_parts(params, tuple(torch.zeros_like(p) for p in params), state.seen + T)


def _decode(q, k, v, lr, ts, lnw, lnb, state: TTTState) -> tuple[Tensor, TTTState]:
    """One token: the accumulators absorb it; at the mini-batch's last position the weights update."""
    B, H, _, F = q.shape
    K = ts.shape[0]
    pos = state.seen % K
    first, closes = pos == 0, pos == K - 1
    q, k, v = _qkv(q, k, v)
    params = tuple(_view(p) for p in state.params())
    grads = params if first else tuple(_view(g) for g in state.grads())  # FIRST: the kernel reads no grads
    new_params = tuple(_empty(p.shape, p.dtype, p.device) for p in params) if closes else params
    new_grads = tuple(_empty(p.shape, p.dtype, p.device) for p in params)
    out = _empty((B, H, 1, F), q.dtype, q.device)
    args = (q, k, v, lr, ts, lnw, lnb, *params, *grads, out, *new_params, *new_grads, H, pos,
            q.stride(0), q.stride(1), lr.stride(0), lr.stride(1))
    if state.kind == "linear":
        kern.linear_decode[(B * H,)](*args, F=F, BR=min(F, 32), FIRST=first, CLOSES=closes, num_warps=4)
    else:
        F1 = params[0].shape[-1]
        kern.mlp_decode[(B * H,)](*args, F=F, F1=F1, BF1=min(F1, 32), FIRST=first, CLOSES=closes, num_warps=4)
    return out, TTTState.from_parts(new_params, new_grads, state.seen + 1)


def _needs_autograd(tensors) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def ttt_triton(xq: Tensor, xk: Tensor, xv: Tensor, lr: Tensor, token_scale: Tensor, ln_weight: Tensor,
               ln_bias: Tensor, state: TTTState, checkpoint_every: int | None = None) -> tuple[Tensor, TTTState]:
    """Same contract as chunked.ttt_chunked; out is in xq's dtype. checkpoint_every matters only on fall-back."""
    B, H, T, F = xq.shape
    K = token_scale.shape[0]
    inputs = (xq, xk, xv, lr, token_scale, ln_weight, ln_bias)
    shapes_ok = _pow2(F) and _pow2(state.W1.shape[-1])
    if (_needs_autograd((*inputs, *state.tensors().values())) or state.W1.dtype != torch.float32 or not shapes_ok
            or (T > 1 and not _pow2(K))):
        return ttt_chunked(*inputs, state, checkpoint_every=checkpoint_every)
    if not (xq.is_cuda or _INTERPRET):
        raise ValueError(f"the triton TTT backend needs CUDA tensors (got {xq.device}); "
                         "on the CPU use backend='chunked' (or TRITON_INTERPRET=1 for the kernel tests)")
    ts, lnw, lnb = (_view(t) for t in (token_scale, ln_weight, ln_bias))
    lr = lr.detach()
    if T == 1:
        return _decode(xq, xk, xv, lr, ts, lnw, lnb, state)

    out = _empty((B, H, T, F), xq.dtype, xq.device)
    pos = state.seen % K
    head = min((K - pos) % K, T)
    full = (T - head) // K * K
    cuts = [(0, head, "chunked"), (head, head + full, "scan"), (head + full, T, "chunked")]
    for a, b, how in cuts:
        if a == b:
            continue
        piece = (xq[:, :, a:b], xk[:, :, a:b], xv[:, :, a:b], lr[:, :, a:b])
        if how == "scan":
            state = _scan(*piece, ts, lnw, lnb, state, out[:, :, a:b])
        else:
            o, state = ttt_chunked(*piece, ts, lnw, lnb, state)
            out[:, :, a:b] = o
    return out, state
