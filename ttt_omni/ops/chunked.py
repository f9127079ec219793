"""The dual form of the TTT scan over mini-batches, vectorised over batch and heads.

Within a piece of n tokens of one mini-batch (positions p..p+n-1, start weights W0, accumulated gradients G from
the tokens of this mini-batch already absorbed), with gradients g_j taken at W0 and eta[i, j] = token_scale[i] * lr_j
for j <= i, the primal-form output of token i

    q_i (W0 - s_i (G + sum_{j<=i} lr_j x_j^T g_j)) + (b0 - s_i (G_b + sum_{j<=i} lr_j g_j))

becomes matrix products: q W0 + b0 - s * (q G + G_b) - (eta * (q x^T + 1)) g. The scan over mini-batches
is sequential (each starts from the last one's weights); everything inside a mini-batch is batched. Pieces are cut
at mini-batch boundaries, so a call may start or end mid-mini-batch: the state carries G and the position.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from .inner import _GELU_C, LN_EPS, gelu, head_layer_norm
from .state import TTTState


def ln_l2_grad(z: Tensor, target: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """d/dz of 1/2 ||LN(z) - target||^2 with per-head affine LN; z [B,H,n,F], weight/bias [H,F]."""
    F = z.shape[-1]
    mu = z.mean(-1, keepdim=True)
    std = torch.sqrt(z.var(-1, keepdim=True, unbiased=False) + LN_EPS)
    x_hat = (z - mu) / std
    w, b = weight[:, None, :], bias[:, None, :]
    grad_x_hat = (w * x_hat + b - target) * w
    return (F * grad_x_hat - grad_x_hat.sum(-1, keepdim=True)
            - x_hat * (grad_x_hat * x_hat).sum(-1, keepdim=True)) / (F * std)


def gelu_grad(x: Tensor) -> Tensor:
    """Derivative of the tanh-approximated GELU."""
    t = torch.tanh(_GELU_C * (x + 0.044715 * x ** 3))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _GELU_C * (1.0 + 3 * 0.044715 * x * x)


def _dual_query(q: Tensor, x: Tensor, g: Tensor, W0: Tensor, b0: Tensor, GW: Tensor | None, Gb: Tensor | None,
                scale: Tensor, eta: Tensor) -> Tensor:
    """q_i theta_i for every token i of a piece, without materialising per-token weights."""
    z = q @ W0 + b0 - (eta * (q @ x.transpose(-1, -2) + 1.0)) @ g  # eta is lower-triangular
    if GW is not None:
        z = z - scale[:, None] * (q @ GW + Gb)
    return z


def _piece(params: tuple[Tensor, ...], grads: tuple[Tensor, ...] | None, q: Tensor, k: Tensor, v: Tensor,
           lr: Tensor, scale: Tensor, ln_weight: Tensor, ln_bias: Tensor, closes: bool):
    """One piece inside one mini-batch. grads None means a boundary (zero accumulators).

    Returns (out, params, grads) where grads is None again if the piece closed its mini-batch.
    """
    eta = torch.tril(scale[:, None] * lr[..., None, :])  # [B,H,n,n]
    target = v - k
    W1, b1 = params[0], params[1]
    GW1, Gb1 = (grads[0], grads[1]) if grads is not None else (None, None)
    z1 = k @ W1 + b1
    if len(params) == 2:
        g1 = ln_l2_grad(z1, target, ln_weight, ln_bias)
        z = _dual_query(q, k, g1, W1, b1, GW1, Gb1, scale, eta)
        sums = [(k, g1)]
    else:
        W2, b2 = params[2], params[3]
        GW2, Gb2 = (grads[2], grads[3]) if grads is not None else (None, None)
        x2 = gelu(z1)
        g2 = ln_l2_grad(x2 @ W2 + b2, target, ln_weight, ln_bias)
        g1 = (g2 @ W2.transpose(-1, -2)) * gelu_grad(z1)
        q2 = gelu(_dual_query(q, k, g1, W1, b1, GW1, Gb1, scale, eta))
        z = _dual_query(q2, x2, g2, W2, b2, GW2, Gb2, scale, eta)
        sums = [(k, g1), (x2, g2)]
    out = q + head_layer_norm(z, ln_weight, ln_bias)

    lr_col = lr[..., None]
    new_grads = []
    for idx, (x, g) in enumerate(sums):
        gW = x.transpose(-1, -2) @ (lr_col * g)
        gb = (lr_col * g).sum(-2, keepdim=True)
        if grads is not None:
            gW, gb = gW + grads[2 * idx], gb + grads[2 * idx + 1]
        new_grads += [gW, gb]
    if closes:
        last = scale[-1]
        return out, tuple(p - last * g for p, g in zip(params, new_grads)), None
    return out, params, tuple(new_grads)


def _pieces(seen: int, T: int, K: int) -> list[tuple[int, int]]:
    """(start, length) pieces of a call, cut at mini-batch boundaries given `seen` absorbed tokens."""
    out, t, pos = [], 0, seen % K
    while t < T:
        n = min(K - pos, T - t)
        out.append((t, n))
        t, pos = t + n, (pos + n) % K
    return out


def ttt_chunked(xq: Tensor, xk: Tensor, xv: Tensor, lr: Tensor, token_scale: Tensor, ln_weight: Tensor,
                ln_bias: Tensor, state: TTTState, checkpoint_every: int | None = None) -> tuple[Tensor, TTTState]:
    """Same contract as naive.ttt_naive. checkpoint_every=k recomputes groups of k pieces in backward."""
    dtype = state.W1.dtype
    xq, xk, xv, lr, token_scale, ln_weight, ln_bias = (
        t.to(dtype) for t in (xq, xk, xv, lr, token_scale, ln_weight, ln_bias))
    K, T = token_scale.shape[0], xq.shape[2]
    pieces = _pieces(state.seen, T, K)
    at_boundary = state.seen % K == 0
    params = state.params()
    grads = None if at_boundary else state.grads()
    n_params = len(params)

    def run_group(group: list[tuple[int, int]], pos0: int, *flat: Tensor):
        p, g = flat[:n_params], (flat[n_params:] or None)
        outs, pos = [], pos0
        for s, n in group:
            o, p, g = _piece(p, g, xq[:, :, s:s + n], xk[:, :, s:s + n], xv[:, :, s:s + n], lr[:, :, s:s + n],
                             token_scale[pos:pos + n], ln_weight, ln_bias, closes=pos + n == K)
            outs.append(o)
            pos = (pos + n) % K
        return (torch.cat(outs, dim=2), *p, *(g or ()))

    use_checkpoint = bool(checkpoint_every) and torch.is_grad_enabled()
    step = checkpoint_every if use_checkpoint else max(len(pieces), 1)
    outs, pos = [], state.seen % K
    for start in range(0, len(pieces), step):
        group = pieces[start:start + step]
        flat = (*params, *(grads or ()))
        if use_checkpoint:
            res = checkpoint(run_group, group, pos, *flat, use_reentrant=False)
        else:
            res = run_group(group, pos, *flat)
        outs.append(res[0])
        params = tuple(res[1:1 + n_params])
        grads = tuple(res[1 + n_params:]) or None
        pos = (pos + sum(n for _, n in group)) % K

    if grads is None:
        grads = tuple(torch.zeros_like(p) for p in params)
    out = torch.cat(outs, dim=2) if outs else xq.clone()
    return out, TTTState.from_parts(params, grads, state.seen + T)
