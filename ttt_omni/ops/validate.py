"""Input and state checks shared by every backend: a bad call fails with a ValueError naming the argument."""
from __future__ import annotations

import torch
from torch import Tensor

from .state import STATE_DTYPES, TTTState


class NonFiniteError(ValueError):
    """NaN/Inf reached a TTT op, in its state or in its inputs."""


class NonFiniteStateError(NonFiniteError):
    """A TTT state holds NaN/Inf: the inner model diverged (or was fed a corrupt state)."""


class NonFiniteInputError(NonFiniteError):
    """A TTT op's inputs hold NaN/Inf: the weights or activations before it are not finite."""


def check_inputs(xq: Tensor, xk: Tensor, xv: Tensor, lr: Tensor, token_scale: Tensor,
                 ln_weight: Tensor, ln_bias: Tensor) -> tuple[int, int, int, int]:
    """Returns (B, H, T, F) after checking every argument's rank and shape."""
    for name, x in (("xq", xq), ("xk", xk), ("xv", xv)):
        if not isinstance(x, Tensor) or x.dim() != 4:
            raise ValueError(f"{name} must be a 4-d tensor [batch, heads, seq, head_dim], got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be floating point, got {x.dtype}")
    if xk.shape != xq.shape or xv.shape != xq.shape:
        raise ValueError(f"xq, xk, xv must have the same shape [batch, heads, seq, head_dim]; got "
                         f"xq {tuple(xq.shape)}, xk {tuple(xk.shape)}, xv {tuple(xv.shape)}")
    B, H, T, F = xq.shape
    if lr.shape != (B, H, T):
        raise ValueError(f"lr must have shape [batch, heads, seq] = {(B, H, T)}, got {tuple(lr.shape)}")
    if token_scale.dim() != 1 or token_scale.shape[0] < 1:
        raise ValueError(f"token_scale must be 1-d [mini_batch_size], got {tuple(token_scale.shape)}")
    for name, p in (("ln_weight", ln_weight), ("ln_bias", ln_bias)):
        if p.shape != (H, F):
            raise ValueError(f"{name} must have shape [heads, head_dim] = {(H, F)}, got {tuple(p.shape)}")
    return B, H, T, F


def check_state(state: TTTState, kind: str, batch: int, heads: int, head_dim: int, name: str = "state") -> None:
    """Raises ValueError naming the field when a state does not fit the op's type or the inputs."""
    if not isinstance(state, TTTState):
        raise ValueError(f"{name} must be a TTTState, got {type(state).__name__}")
    if state.kind != kind:
        raise ValueError(f"{name} is a TTT-{state.kind} state but this is a TTT-{kind} op/layer")
    if state.seen < 0:
        raise ValueError(f"{name}.seen must be >= 0, got {state.seen}")
    tensors = state.tensors()
    for field_name, t in tensors.items():
        if t.dtype not in STATE_DTYPES:
            raise ValueError(
                f"{name}.{field_name} is {t.dtype}; the TTT inner state must be float32 (float64 allowed for tests). "
                "Do not cast the state; keep the layer's `inner` parameters float32.")
        if t.dim() != 4 or t.shape[0] != batch or t.shape[1] != heads:
            raise ValueError(f"{name}.{field_name} has shape {tuple(t.shape)}; expected [batch={batch}, heads={heads}, ...]")
    f1 = state.W1.shape[-1]
    expected = {"W1": (head_dim, f1), "b1": (1, f1)}
    if kind == "mlp":
        expected.update({"W2": (f1, head_dim), "b2": (1, head_dim)})
    for field_name, tail in expected.items():
        for prefix in ("", "grad_"):
            t = getattr(state, prefix + field_name)
            if tuple(t.shape[2:]) != tail:
                raise ValueError(f"{name}.{prefix}{field_name} has shape {tuple(t.shape)}; expected trailing dims "
                                 f"{tail} for head_dim={head_dim}")


def check_finite(state: TTTState, inputs: dict[str, Tensor]) -> None:
    """Raises NonFiniteStateError / NonFiniteInputError naming the tensors that hold NaN/Inf. The common all-finite
    case is one fused norm over every tensor and one read (NaN/Inf make a norm non-finite; a norm that overflows
    on finite values only sends it to the exact per-tensor check); the culprits are named only on failure."""
    state_tensors = state.tensors()
    tensors = [t for t in (*state_tensors.values(), *inputs.values()) if t.numel()]
    if not tensors or bool(torch.stack(torch._foreach_norm(tensors)).isfinite().all()):
        return
    bad_state = [k for k, t in state_tensors.items() if not torch.isfinite(t).all()]
    if bad_state:
        raise NonFiniteStateError(f"state contains NaN/Inf in {bad_state}; a TTT state must be finite")
    bad = [k for k, t in inputs.items() if not torch.isfinite(t).all()]
    if bad:
        raise NonFiniteInputError(f"inputs {bad} contain NaN/Inf: the weights or activations before the TTT op are "
                                  "not finite")
