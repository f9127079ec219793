"""The definition of a TTT layer, token by token in primal form. Slow on purpose: it is the reference.

For each token t at position i inside its mini-batch (mini-batch start weights theta_0):
    loss_t(theta) = 1/2 * || LN(f_theta(k_t)) - (v_t - k_t) ||^2     (per head; LN has learnable gamma/beta)
    G_t = sum over tokens j <= t of this mini-batch of  lr_j * grad loss_j(theta_0)
    theta_t = theta_0 - token_scale[i] * G_t
    out_t = q_t + LN(f_{theta_t}(q_t))
At the last position of a mini-batch theta_0 <- theta_t and G restarts at zero. Gradients come from autograd on the
definition, so the closed-form backward of the fast paths is checked against an independent derivation.
The 1/2 matches the reference implementation's gradient (y - target).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .inner import head_layer_norm, inner_forward
from .state import TTTState


def _token_grads(params: tuple[Tensor, ...], k: Tensor, v: Tensor, ln_weight: Tensor, ln_bias: Tensor,
                 create_graph: bool) -> tuple[Tensor, ...]:
    """Gradient of one token's reconstruction loss w.r.t. every inner parameter, per (batch, head). Without
    `create_graph` nothing outside needs the graph, so the weights become fresh leaves (a view of a parameter made
    under no_grad claims requires_grad but is no leaf autograd can differentiate)."""
    with torch.enable_grad():
        leaves = tuple(p if create_graph and p.requires_grad else p.detach().requires_grad_() for p in params)
        pred = head_layer_norm(inner_forward(leaves, k), ln_weight, ln_bias)
        loss = 0.5 * ((pred - (v - k)) ** 2).sum()  # summing over (batch, head) keeps their gradients apart
        return torch.autograd.grad(loss, leaves, create_graph=create_graph)


def ttt_naive(xq: Tensor, xk: Tensor, xv: Tensor, lr: Tensor, token_scale: Tensor, ln_weight: Tensor,
              ln_bias: Tensor, state: TTTState) -> tuple[Tensor, TTTState]:
    """Outputs [B,H,T,F] (in xq's dtype) and the final state. Computes in the state's dtype."""
    if torch.is_inference_mode_enabled():
        # autograd (the definition's inner gradient) cannot record inference tensors: run on ordinary copies.
        with torch.inference_mode(False):
            plain = [t.clone() for t in (xq, xk, xv, lr, token_scale, ln_weight, ln_bias)]
            return ttt_naive(*plain, state.clone())
    dtype = state.W1.dtype
    xq, xk, xv, lr, token_scale, ln_weight, ln_bias = (
        t.to(dtype) for t in (xq, xk, xv, lr, token_scale, ln_weight, ln_bias))
    K = token_scale.shape[0]
    create_graph = torch.is_grad_enabled()
    params, grads, seen = state.params(), state.grads(), state.seen
    outs = []
    for t in range(xq.shape[2]):
        i = seen % K
        q, k, v = xq[:, :, t:t + 1], xk[:, :, t:t + 1], xv[:, :, t:t + 1]
        step = _token_grads(params, k, v, ln_weight, ln_bias, create_graph)
        grads = tuple(g + lr[:, :, t, None, None] * s for g, s in zip(grads, step))
        current = tuple(p - token_scale[i] * g for p, g in zip(params, grads))
        outs.append(q + head_layer_norm(inner_forward(current, q), ln_weight, ln_bias))
        seen += 1
        if i == K - 1:
            params, grads = current, tuple(torch.zeros_like(g) for g in grads)
    out = torch.cat(outs, dim=2) if outs else xq.clone()
    return out, TTTState.from_parts(params, grads, seen)
