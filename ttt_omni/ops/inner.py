"""The inner model's forward pieces, shared by every backend: per-head layer norm and tanh-GELU."""
from __future__ import annotations

import math

import torch
from torch import Tensor

LN_EPS = 1e-6
_GELU_C = math.sqrt(2.0 / math.pi)


def head_layer_norm(z: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Layer norm over the last dim with per-head affine. z [B,H,...,F]; weight, bias [H,F]."""
    mu = z.mean(-1, keepdim=True)
    var = z.var(-1, keepdim=True, unbiased=False)
    x_hat = (z - mu) / torch.sqrt(var + LN_EPS)
    shape = (weight.shape[0],) + (1,) * (z.dim() - 3) + (weight.shape[1],)
    return x_hat * weight.reshape(shape) + bias.reshape(shape)


def gelu(x: Tensor) -> Tensor:
    """GELU, tanh approximation (the reference TTT-MLP's)."""
    return 0.5 * x * (1.0 + torch.tanh(_GELU_C * (x + 0.044715 * x ** 3)))


def inner_forward(params: tuple[Tensor, ...], x: Tensor) -> Tensor:
    """f(x) for TTT-Linear (W1, b1) or TTT-MLP (W1, b1, W2, b2); x [B,H,n,F], weights [B,H,...]."""
    z = x @ params[0] + params[1]
    if len(params) == 2:
        return z
    return gelu(z) @ params[2] + params[3]
