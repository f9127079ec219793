"""TTT-Linear and TTT-MLP layers: drop-in replacements for Llama self-attention.

x -> q/k/v projections -> RoPE with positions restarting every mini-batch -> TTT scan (ops) -> post-norm
-> optional GELU gate -> o_proj. The inner model's parameters (initial weights, its layer norm, the learning-rate
gate and token-scale offsets) live in the `inner` submodule, which stays float32 whatever the model's dtype.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ttt_omni import ops
from ttt_omni.ops import TTTState
from ttt_omni.ops.inner import head_layer_norm, inner_forward
from ttt_omni.ops.state import STATE_DTYPES

HALF_DTYPES = (torch.float16, torch.bfloat16)


class TTTInnerParams(nn.Module):
    """Parameters of the inner model, pinned to float32: a cast to half precision leaves them float32."""

    def __init__(self, kind: str, num_heads: int, head_dim: int, hidden_size: int, mini_batch_size: int):
        super().__init__()
        H, F = num_heads, head_dim
        F1 = F if kind == "linear" else 4 * F
        self.W1 = nn.Parameter(torch.empty(H, F, F1, dtype=torch.float32))
        self.b1 = nn.Parameter(torch.zeros(H, 1, F1, dtype=torch.float32))
        if kind == "mlp":
            self.W2 = nn.Parameter(torch.empty(H, F1, F, dtype=torch.float32))
            self.b2 = nn.Parameter(torch.zeros(H, 1, F, dtype=torch.float32))
        self.ttt_norm_weight = nn.Parameter(torch.ones(H, F, dtype=torch.float32))
        self.ttt_norm_bias = nn.Parameter(torch.zeros(H, F, dtype=torch.float32))
        self.lr_weight = nn.Parameter(torch.empty(H, hidden_size, dtype=torch.float32))
        self.lr_bias = nn.Parameter(torch.zeros(H, dtype=torch.float32))
        self.token_idx_bias = nn.Parameter(torch.zeros(mini_batch_size, dtype=torch.float32))
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02) -> None:
        with torch.no_grad():
            for name in ("W1", "W2", "lr_weight"):
                if hasattr(self, name):
                    nn.init.normal_(getattr(self, name), std=std)
            for name in ("b1", "b2", "ttt_norm_bias", "lr_bias", "token_idx_bias"):
                if hasattr(self, name):
                    getattr(self, name).zero_()
            self.ttt_norm_weight.fill_(1.0)

    def forward(self) -> dict[str, Tensor]:
        """The parameters by name. Layers read them through this call so that wrappers which gather parameters
        around a module's forward (FSDP2) see the access."""
        return {n: p for n, p in self._parameters.items() if p is not None}

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        keep_float32(self)
        return self

    def check_dtype(self) -> None:
        bad = [f"{n} ({p.dtype})" for n, p in self._parameters.items() if p is not None and p.dtype not in STATE_DTYPES]
        if bad:
            raise TypeError(
                f"TTT inner parameters must be float32 but {', '.join(bad)} are not. Something assigned half-precision "
                "tensors to them; call ttt_omni.layers.keep_float32(model) after loading, or load with the model's "
                "from_pretrained, which keeps them float32.")


def keep_float32(module: nn.Module) -> nn.Module:
    """Restores every TTT inner parameter below `module` to float32 (no-op when they already are)."""
    for inner in (m for m in module.modules() if isinstance(m, TTTInnerParams)):
        for p in inner.parameters(recurse=False):
            if p.dtype in HALF_DTYPES:
                p.data = p.data.float()
                if p.grad is not None:
                    p.grad = p.grad.float()
    return module


def _rotate_half(x: Tensor) -> Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class TTTBase(nn.Module):
    kind: str = ""

    def __init__(self, hidden_size: int, num_heads: int, head_dim: int | None = None, mini_batch_size: int = 64,
                 base_lr: float = 1.0, rope_theta: float = 10000.0, use_gate: bool = False,
                 scan_checkpoint_every: int | None = None):
        super().__init__()
        head_dim = head_dim or hidden_size // num_heads
        if head_dim % 2 or head_dim < 2:
            raise ValueError(f"head_dim must be a positive even number for RoPE, got {head_dim}")
        if mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {mini_batch_size}")
        self.hidden_size, self.num_heads, self.head_dim = hidden_size, num_heads, head_dim
        self.mini_batch_size, self.base_lr, self.use_gate = mini_batch_size, base_lr, use_gate
        self.scan_checkpoint_every = scan_checkpoint_every
        width = num_heads * head_dim
        self.q_proj = nn.Linear(hidden_size, width, bias=False)
        self.k_proj = nn.Linear(hidden_size, width, bias=False)
        self.v_proj = nn.Linear(hidden_size, width, bias=False)
        self.o_proj = nn.Linear(width, hidden_size, bias=False)
        self.g_proj = nn.Linear(hidden_size, width, bias=False) if use_gate else None
        self.post_norm = nn.LayerNorm(width, eps=1e-6)
        self.inner = TTTInnerParams(self.kind, num_heads, head_dim, hidden_size, mini_batch_size)
        self.rope_theta = rope_theta
        self._rope_tables: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}

    def init_state(self, batch_size: int, params: dict[str, Tensor] | None = None) -> TTTState:
        """A fresh state from the learnable initial weights (differentiable w.r.t. them when grad is enabled; under
        no_grad a detached copy, not a view of the parameters that claims requires_grad)."""
        p = params if params is not None else self.inner()
        names = ("W1", "b1") if self.kind == "linear" else ("W1", "b1", "W2", "b2")
        grad = torch.is_grad_enabled()
        return TTTState.fresh(*((p[n] if grad else p[n].detach()).unsqueeze(0).expand(batch_size, -1, -1, -1)
                                for n in names))

    def _rope_table(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """cos, sin [mini_batch_size, head_dim] of every in-mini-batch position, in (at least) float32. Kept in a
        plain attribute (a buffer would be cast with the module to bf16); made once per device and dtype."""
        key = (device, dtype)
        if key not in self._rope_tables:
            with torch.inference_mode(False):  # a table made during inference must serve training later too
                self._rope_tables[key] = self._make_rope_table(device, dtype)
        return self._rope_tables[key]

    def _make_rope_table(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        F, K = self.head_dim, self.mini_batch_size
        with torch.no_grad():
            inv_freq = 1.0 / self.rope_theta ** (torch.arange(0, F, 2, device=device, dtype=dtype) / F)
            freqs = torch.arange(K, device=device)[:, None].to(dtype) * inv_freq[None, :]
            emb = torch.cat((freqs, freqs), dim=-1)
            return emb.cos(), emb.sin()

    def _rope(self, x: Tensor, positions: Tensor | slice) -> Tensor:
        """x [B,H,T,F] rotated at in-mini-batch `positions` (indices or a slice into 0..mini_batch_size-1)."""
        dtype = torch.promote_types(x.dtype, torch.float32)
        cos, sin = (t[positions] for t in self._rope_table(x.device, dtype))
        xf = x.to(dtype)
        return (xf * cos + _rotate_half(xf) * sin).to(x.dtype)

    def _scan_inputs(self, hidden_states: Tensor, start: int, p: dict[str, Tensor]):
        """q, k, v [B,H,T,F] with per-mini-batch RoPE, the lr gate [B,H,T] and token scales [K]."""
        B, T, _ = hidden_states.shape
        H, F, K = self.num_heads, self.head_dim, self.mini_batch_size

        def heads(x: Tensor) -> Tensor:
            return x.view(B, T, H, F).transpose(1, 2)

        pos = start % K
        positions = slice(pos, pos + T) if pos + T <= K else (start + torch.arange(T, device=hidden_states.device)) % K
        xq = self._rope(heads(self.q_proj(hidden_states)), positions)
        xk = self._rope(heads(self.k_proj(hidden_states)), positions)
        xv = heads(self.v_proj(hidden_states))
        with torch.autocast(device_type=hidden_states.device.type, enabled=False):
            gate = nn.functional.linear(hidden_states.to(p["lr_weight"].dtype), p["lr_weight"], p["lr_bias"])
            lr = self.base_lr * torch.sigmoid(gate.transpose(1, 2)) / F
            token_idx = 1.0 / torch.arange(1, K + 1, device=hidden_states.device, dtype=p["token_idx_bias"].dtype)
            token_scale = torch.clamp_min(token_idx + p["token_idx_bias"], 0.0)
        return xq, xk, xv, lr, token_scale

    @torch.no_grad()
    def reconstruction_loss(self, hidden_states: Tensor, state: TTTState, start: int) -> Tensor:
        """Mean inner loss 1/2 ||LN(f(k)) - (v - k)||^2 per token under `state`'s weights, without updating them
        (the monitor compares the window's start and end states). `start` is the first token's position."""
        p = self.inner()
        _, xk, xv, _, _ = self._scan_inputs(hidden_states, start, p)
        dtype = state.W1.dtype
        k, v = xk.to(dtype), xv.to(dtype)
        pred = head_layer_norm(inner_forward(state.params(), k), p["ttt_norm_weight"].to(dtype),
                               p["ttt_norm_bias"].to(dtype))
        return 0.5 * ((pred - (v - k)) ** 2).sum(-1).mean()

    def forward(self, hidden_states: Tensor, state: TTTState | None = None,
                restart_rows: Tensor | None = None, inplace: bool = False) -> tuple[Tensor, TTTState]:
        """`restart_rows` ([batch] bool): rows whose `state` is replaced by a fresh one (a new conversation starts);
        the state must then sit at a mini-batch boundary. `inplace`: the caller gives up `state` (a cache replacing
        it with the returned one), so a decode step may update its accumulators where they lie."""
        if hidden_states.dim() != 3 or hidden_states.shape[-1] != self.hidden_size:
            raise ValueError(f"hidden_states must be [batch, seq, {self.hidden_size}], got {tuple(hidden_states.shape)}")
        self.inner.check_dtype()
        B, T, _ = hidden_states.shape
        p = self.inner()
        if state is None:
            state = self.init_state(B, p)
        elif restart_rows is not None:
            state = restart(state, self.init_state(B, p), restart_rows, self.mini_batch_size)
        xq, xk, xv, lr, token_scale = self._scan_inputs(hidden_states, state.seen, p)
        scan = ops.ttt_linear if self.kind == "linear" else ops.ttt_mlp
        out, state = scan(xq, xk, xv, lr, token_scale, p["ttt_norm_weight"], p["ttt_norm_bias"], state,
                          checkpoint_every=self.scan_checkpoint_every, inplace=inplace)
        out = self.post_norm(out.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim))
        if self.g_proj is not None:
            out = nn.functional.gelu(self.g_proj(hidden_states), approximate="tanh") * out
        return self.o_proj(out), state


def restart(state: TTTState, fresh: TTTState, rows: Tensor, mini_batch_size: int) -> TTTState:
    """Row-wise: `fresh` where `rows`, else `state`. Rows share one position counter, so this is only defined
    at a mini-batch boundary, where every row's position restarts at 0 anyway."""
    if state.seen % mini_batch_size:
        raise ValueError(f"restart_rows needs a state at a mini-batch boundary; it has seen {state.seen} tokens "
                         f"(mini-batch {mini_batch_size})")
    if rows.shape != (state.batch_size,) or rows.dtype != torch.bool:
        raise ValueError(f"restart_rows must be a bool tensor of shape ({state.batch_size},), "
                         f"got {rows.dtype} {tuple(rows.shape)}")
    mask = rows.view(-1, 1, 1, 1).to(state.W1.device)
    old = state.tensors()
    parts = {k: torch.where(mask, f, old[k]) for k, f in fresh.tensors().items()}
    params = tuple(parts[k] for k in ("W1", "b1", "W2", "b2") if k in parts)
    grads = tuple(parts[k] for k in ("grad_W1", "grad_b1", "grad_W2", "grad_b2") if k in parts)
    return TTTState.from_parts(params, grads, seen=state.seen)


class TTTLinear(TTTBase):
    """TTT layer whose inner model is linear: f(x) = x W1 + b1."""
    kind = "linear"


class TTTMLP(TTTBase):
    """TTT layer whose inner model is a 2-layer MLP: f(x) = gelu(x W1 + b1) W2 + b2, hidden 4x head_dim."""
    kind = "mlp"
