"""The TTT inner state: the inner model's weights plus the partial mini-batch in flight.

Tokens inside a mini-batch all take their gradient at the weights of the mini-batch start (the dual form's
semantics). A sequence may stop in the middle of a mini-batch; the state then carries the accumulated
(learning-rate weighted) gradients of the tokens seen so far in it, and the mini-batch completes in a later call
exactly as if it had been processed in one. `seen` counts absorbed tokens, so the position inside the current
mini-batch is `seen % mini_batch_size`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

STATE_DTYPES = (torch.float32, torch.float64)
_PARAMS = ("W1", "b1", "W2", "b2")


@dataclass
class TTTState:
    """Per (batch, head) inner model. TTT-Linear: f(x) = x W1 + b1. TTT-MLP: f(x) = gelu(x W1 + b1) W2 + b2.

    Shapes: W1 [B,H,F,F1], b1 [B,H,1,F1], W2 [B,H,F1,F], b2 [B,H,1,F]; the grad_* accumulators match.
    """

    W1: Tensor
    b1: Tensor
    grad_W1: Tensor
    grad_b1: Tensor
    W2: Tensor | None = None
    b2: Tensor | None = None
    grad_W2: Tensor | None = None
    grad_b2: Tensor | None = None
    seen: int = 0

    @classmethod
    def fresh(cls, W1: Tensor, b1: Tensor, W2: Tensor | None = None, b2: Tensor | None = None) -> "TTTState":
        """A state at a mini-batch boundary with zero accumulators."""
        zeros = torch.zeros_like
        if W2 is None:
            return cls(W1, b1, zeros(W1), zeros(b1))
        return cls(W1, b1, zeros(W1), zeros(b1), W2, b2, zeros(W2), zeros(b2))

    @property
    def kind(self) -> str:
        return "linear" if self.W2 is None else "mlp"

    @property
    def batch_size(self) -> int:
        return self.W1.shape[0]

    def params(self) -> tuple[Tensor, ...]:
        return (self.W1, self.b1) if self.W2 is None else (self.W1, self.b1, self.W2, self.b2)

    def grads(self) -> tuple[Tensor, ...]:
        return (self.grad_W1, self.grad_b1) if self.W2 is None else (
            self.grad_W1, self.grad_b1, self.grad_W2, self.grad_b2)

    @classmethod
    def from_parts(cls, params: tuple[Tensor, ...], grads: tuple[Tensor, ...], seen: int) -> "TTTState":
        if len(params) == 2:
            return cls(params[0], params[1], grads[0], grads[1], seen=seen)
        return cls(params[0], params[1], grads[0], grads[1], params[2], params[3], grads[2], grads[3], seen=seen)

    def tensors(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "seen" and getattr(self, f.name) is not None}

    def _map(self, fn) -> "TTTState":
        return replace(self, **{k: fn(v) for k, v in self.tensors().items()})

    def clone(self) -> "TTTState":
        return self._map(torch.clone)

    def detach(self) -> "TTTState":
        return self._map(torch.Tensor.detach)

    def to(self, device) -> "TTTState":
        """Moves to a device. The dtype never changes: the state stays float32."""
        return self._map(lambda t: t.to(device=device))

    def index_select(self, batch_indices: Tensor) -> "TTTState":
        """Reorders or selects batch rows (beam search, dropping finished sequences)."""
        return self._map(lambda t: t.index_select(0, batch_indices.to(t.device)))

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def to_dict(self) -> dict[str, Tensor]:
        """Flat tensors for safetensors / torch.save (copies: a cache's decode steps update its state in place);
        `seen` is stored as a 0-d int64 tensor."""
        out = {k: v.detach().clone(memory_format=torch.contiguous_format) for k, v in self.tensors().items()}
        out["seen"] = torch.tensor(self.seen, dtype=torch.int64)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Tensor]) -> "TTTState":
        required = ("W1", "b1", "grad_W1", "grad_b1", "seen")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"TTT state dict is missing {missing}; expected keys {required} (+ W2, b2, grad_W2, grad_b2 for TTT-MLP)")
        kwargs = {k: data[k] for k in ("W1", "b1", "grad_W1", "grad_b1", "W2", "b2", "grad_W2", "grad_b2") if k in data}
        state = cls(**kwargs, seen=int(data["seen"]))
        for name, t in state.tensors().items():
            if t.dtype not in STATE_DTYPES:
                raise ValueError(f"TTT state tensor {name} is {t.dtype}; the inner state must be float32")
        return state

