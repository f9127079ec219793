"""One decode token through the TTT scan (the dual form of chunked.py with a piece of one token, without its
per-piece masks, concatenations and re-packing): a few small products per inner layer.

For a token at position i of its mini-batch, with W0 the mini-batch's start weights and G the accumulated gradients
of the tokens before it: G += lr x^T g (g taken at W0), out = q + LN(q (W0 - s_i G) + (b0 - s_i G_b)); at the
mini-batch's last position W0 <- W0 - s_i G and G restarts at zero. With `inplace` the accumulators are updated
where they lie (the caller gives up the state it passed: the model's cache does), so a decode step allocates no
new state; the start weights are replaced once per mini-batch, never written (they may be the layer's parameters).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .chunked import gelu_grad
from .inner import LN_EPS, gelu
from .state import TTTState


def _normalize(z: Tensor) -> tuple[Tensor, Tensor]:
    """(z - mean) / std over the last dim and 1 / std, in one kernel."""
    x_hat, _, rstd = torch.native_layer_norm(z, z.shape[-1:], None, None, LN_EPS)
    return x_hat, rstd


def _layer_norm(z: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """inner.head_layer_norm for z [B,H,1,F]."""
    return torch.addcmul(bias[:, None], _normalize(z)[0], weight[:, None])


def _ln_l2_grad(z: Tensor, target: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """chunked.ln_l2_grad with the normalisation in one kernel."""
    F = z.shape[-1]
    x_hat, rstd = _normalize(z)
    w = weight[:, None]
    grad_x_hat = (torch.addcmul(bias[:, None], w, x_hat) - target) * w
    return (F * grad_x_hat - grad_x_hat.sum(-1, keepdim=True)
            - x_hat * (grad_x_hat * x_hat).sum(-1, keepdim=True)) * (rstd / F)


def _accumulate(acc: tuple[Tensor, Tensor] | None, x: Tensor, lg: Tensor, inplace: bool) -> tuple[Tensor, Tensor]:
    """(GW + x^T lg, Gb + lg); acc None means zero accumulators (the token opens its mini-batch)."""
    xt = x.transpose(-1, -2)
    if acc is None:
        return xt * lg, lg
    if inplace:
        return acc[0].addcmul_(xt, lg), acc[1].add_(lg)
    return acc[0] + xt * lg, acc[1] + lg


def ttt_step(xq: Tensor, xk: Tensor, xv: Tensor, lr: Tensor, token_scale: Tensor, ln_weight: Tensor, ln_bias: Tensor,
             state: TTTState, inplace: bool = False) -> tuple[Tensor, TTTState]:
    """Same contract as chunked.ttt_chunked for one token (T == 1); `inplace` may update state's accumulators."""
    dtype = state.W1.dtype
    q, k, v, lr, token_scale, ln_weight, ln_bias = (
        t.to(dtype) for t in (xq, xk, xv, lr, token_scale, ln_weight, ln_bias))
    K = token_scale.shape[0]
    pos = state.seen % K
    s = token_scale[pos]
    lr = lr[..., None]  # [B,H,1,1]
    params, grads = state.params(), state.grads()
    opens = pos == 0
    W1, b1 = params[0], params[1]
    z1 = k @ W1 + b1
    if len(params) == 2:
        g1 = _ln_l2_grad(z1, v - k, ln_weight, ln_bias)
        acc = [_accumulate(None if opens else grads[0:2], k, lr * g1, inplace)]
        z = q @ W1 + b1 - s * (q @ acc[0][0] + acc[0][1])
    else:
        W2, b2 = params[2], params[3]
        x2 = gelu(z1)
        g2 = _ln_l2_grad(x2 @ W2 + b2, v - k, ln_weight, ln_bias)
        g1 = (g2 @ W2.transpose(-1, -2)) * gelu_grad(z1)
        acc = [_accumulate(None if opens else grads[0:2], k, lr * g1, inplace),
               _accumulate(None if opens else grads[2:4], x2, lr * g2, inplace)]
        h = gelu(q @ W1 + b1 - s * (q @ acc[0][0] + acc[0][1]))
        z = h @ W2 + b2 - s * (h @ acc[1][0] + acc[1][1])
    out = q + _layer_norm(z, ln_weight, ln_bias)
    new_grads = tuple(t for pair in acc for t in pair)
    if pos == K - 1:  # the token closes its mini-batch
        params = tuple(p - s * g for p, g in zip(params, new_grads))
        new_grads = tuple(g.zero_() for g in new_grads)  # ours: made by this token or handed over (`inplace`)
    return out, TTTState.from_parts(params, new_grads, state.seen + 1)
