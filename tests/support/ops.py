"""Random TTT op inputs and the relative errors the op tests hold backends to."""
import torch

from ttt_omni.ops import TTTState


def make_inputs(kind, B=2, H=3, T=37, F=8, K=16, dtype=torch.float64, seed=0, requires_grad=False):
    """Random op inputs on the scale a trained layer sees (unit-ish q/k/v, lr gate in (0, 1/F])."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype).requires_grad_(requires_grad)

    xq, xk, xv = r(B, H, T, F, scale=0.5), r(B, H, T, F, scale=0.5), r(B, H, T, F, scale=0.5)
    lr = (torch.rand(B, H, T, generator=g, dtype=torch.float64) / F * 4).to(dtype).requires_grad_(requires_grad)
    token_scale = (1.0 / torch.arange(1, K + 1, dtype=torch.float64)
                   + 0.05 * torch.rand(K, generator=g, dtype=torch.float64)).to(dtype).requires_grad_(requires_grad)
    ln_w, ln_b = (1 + r(H, F, scale=0.1)).detach().requires_grad_(requires_grad), r(H, F, scale=0.1)
    F1 = F if kind == "linear" else 4 * F
    sdtype = torch.float64 if dtype == torch.float64 else torch.float32
    W1 = (torch.randn(B, H, F, F1, generator=g, dtype=torch.float64) * 0.3).to(sdtype).requires_grad_(requires_grad)
    b1 = (torch.randn(B, H, 1, F1, generator=g, dtype=torch.float64) * 0.1).to(sdtype).requires_grad_(requires_grad)
    if kind == "linear":
        state = TTTState.fresh(W1, b1)
    else:
        W2 = (torch.randn(B, H, F1, F, generator=g, dtype=torch.float64) * 0.3).to(sdtype).requires_grad_(requires_grad)
        b2 = (torch.randn(B, H, 1, F, generator=g, dtype=torch.float64) * 0.1).to(sdtype).requires_grad_(requires_grad)
        state = TTTState.fresh(W1, b1, W2, b2)
    return (xq, xk, xv, lr, token_scale, ln_w, ln_b), state


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def state_rel_err(s1, s2):
    assert s1.seen == s2.seen
    t1, t2 = s1.tensors(), s2.tensors()
    assert t1.keys() == t2.keys()
    return max(rel_err(t1[k], t2[k]) if t2[k].abs().max() > 0 else t1[k].abs().max().item() for k in t1)
