"""Triton kernels for the TTT scan: one program per (batch, head), float32 state and accumulation.

The math is chunked.py's dual form (see there); the names follow it. Inputs q/k/v are read in their own dtype and
upcast on load, so a bf16 layer feeds the kernels without a float32 copy. `PREC` is tl.dot's input_precision:
"ieee" (exact fp32 FMA), "tf32x3" (fp32-level accuracy on tensor cores) or "tf32".

Prefill (`linear_scan`, `mlp_scan`) runs whole mini-batches from a mini-batch boundary. TTT-Linear keeps W [F,F]
and b in registers across the whole scan. TTT-MLP's W1 [F,4F] + W2 [4F,F] (512 KiB at F=128) cannot stay on chip,
so its state lives in the output state tensors (in L2: 16 MiB for 32 heads) and every mini-batch streams F1 in
tiles of BF1 twice: once to build z2 = gelu(k W1 + b1) W2 (the LN gradient needs all of z2), once for the
gradients, the query path and the update. Splitting F1 across programs would need a grid-wide reduction per
mini-batch; one program per head keeps the scan free of inter-program synchronisation.

Decode (`linear_decode`, `mlp_decode`) is one token at position POS of its mini-batch: it adds the token's
gradient to the accumulators and, when it CLOSES the mini-batch, writes the new weights and zero accumulators.
"""
from __future__ import annotations

import triton
import triton.language as tl

# Literals inside the kernels: inner.LN_EPS = 1e-6, GELU's sqrt(2 / pi) = 0.7978845608028654 (globals must be
# tl.constexpr, which the interpreter does not multiply with tensors).


@triton.jit
def _tanh(x):
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


@triton.jit
def _gelu(x):
    return 0.5 * x * (1.0 + _tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


@triton.jit
def _gelu_grad(x):
    t = _tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x)


@triton.jit
def _ln(z, w, b, F: tl.constexpr, AXIS: tl.constexpr):
    """Layer norm along AXIS (1 for [n,F] rows, 0 for a [F] vector); w, b broadcast against z."""
    zc = z - tl.sum(z, AXIS, keep_dims=True) / F
    rstd = 1.0 / tl.sqrt(tl.sum(zc * zc, AXIS, keep_dims=True) / F + 1e-6)
    return zc * rstd * w + b


@triton.jit
def _ln_l2_grad(z, target, w, b, F: tl.constexpr, AXIS: tl.constexpr):
    """d/dz of 1/2 ||LN(z) - target||^2 along AXIS (chunked.ln_l2_grad)."""
    zc = z - tl.sum(z, AXIS, keep_dims=True) / F
    rstd = 1.0 / tl.sqrt(tl.sum(zc * zc, AXIS, keep_dims=True) / F + 1e-6)
    xh = zc * rstd
    gx = (w * xh + b - target) * w
    return (F * gx - tl.sum(gx, AXIS, keep_dims=True) - xh * tl.sum(gx * xh, AXIS, keep_dims=True)) * rstd / F


@triton.jit
def _load_tokens(q_ptr, k_ptr, v_ptr, lr_ptr, off, lr_off, s_t, s_lr, rk, rf):
    """q, k, v [K,F] and lr [K] of one mini-batch, upcast to float32."""
    offs = off + rk[:, None] * s_t + rf[None, :]
    q = tl.load(q_ptr + offs).to(tl.float32)
    k = tl.load(k_ptr + offs).to(tl.float32)
    v = tl.load(v_ptr + offs).to(tl.float32)
    lr = tl.load(lr_ptr + lr_off + rk * s_lr).to(tl.float32)
    return q, k, v, lr, offs


@triton.jit
def linear_scan(q_ptr, k_ptr, v_ptr, lr_ptr, ts_ptr, lnw_ptr, lnb_ptr, w_ptr, b_ptr, out_ptr, n_mb, H,
                s_b, s_h, s_t, o_b, o_h, o_t, l_b, l_h, l_t,
                F: tl.constexpr, K: tl.constexpr, PREC: tl.constexpr):
    """n_mb whole mini-batches; W [B*H,F,F] and b [B*H,F] are read, then overwritten with the final weights."""
    pid = tl.program_id(0)
    bi, h = pid // H, pid % H
    rf = tl.arange(0, F)
    rk = tl.arange(0, K)
    w_offs = pid * F * F + rf[:, None] * F + rf[None, :]
    W = tl.load(w_ptr + w_offs)
    bias = tl.load(b_ptr + pid * F + rf)
    lnw = tl.load(lnw_ptr + h * F + rf)[None, :]
    lnb = tl.load(lnb_ptr + h * F + rf)[None, :]
    ts = tl.load(ts_ptr + rk)
    s_last = tl.load(ts_ptr + K - 1)
    tril = rk[:, None] >= rk[None, :]
    for n in range(n_mb):
        q, k, v, lr, offs = _load_tokens(q_ptr, k_ptr, v_ptr, lr_ptr, bi * s_b + h * s_h + n * K * s_t,
                                         bi * l_b + h * l_h + n * K * l_t, s_t, l_t, rk, rf)
        z1 = tl.dot(k, W, input_precision=PREC) + bias[None, :]
        g = _ln_l2_grad(z1, v - k, lnw, lnb, F, 1)
        eta = tl.where(tril, ts[:, None] * lr[None, :], 0.0)
        m = eta * (tl.dot(q, tl.trans(k), input_precision=PREC) + 1.0)
        zq = tl.dot(q, W, input_precision=PREC) + bias[None, :] - tl.dot(m, g, input_precision=PREC)
        out = q + _ln(zq, lnw, lnb, F, 1)
        tl.store(out_ptr + bi * o_b + h * o_h + n * K * o_t + rk[:, None] * o_t + rf[None, :],
                 out.to(out_ptr.dtype.element_ty))
        lg = lr[:, None] * g
        W = W - s_last * tl.dot(tl.trans(k), lg, input_precision=PREC)
        bias = bias - s_last * tl.sum(lg, 0)
    tl.store(w_ptr + w_offs, W)
    tl.store(b_ptr + pid * F + rf, bias)


@triton.jit
def mlp_scan(q_ptr, k_ptr, v_ptr, lr_ptr, ts_ptr, lnw_ptr, lnb_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, out_ptr,
             n_mb, H, s_b, s_h, s_t, o_b, o_h, o_t, l_b, l_h, l_t,
             F: tl.constexpr, F1: tl.constexpr, K: tl.constexpr, BF1: tl.constexpr, PREC: tl.constexpr):
    """n_mb whole mini-batches; W1 [B*H,F,F1], b1 [B*H,F1], W2 [B*H,F1,F], b2 [B*H,F] are updated in place."""
    pid = tl.program_id(0)
    bi, h = pid // H, pid % H
    rf = tl.arange(0, F)
    rk = tl.arange(0, K)
    rj = tl.arange(0, BF1)
    w1_base = w1_ptr + pid * F * F1
    w2_base = w2_ptr + pid * F1 * F
    b1_base = b1_ptr + pid * F1
    lnw = tl.load(lnw_ptr + h * F + rf)[None, :]
    lnb = tl.load(lnb_ptr + h * F + rf)[None, :]
    ts = tl.load(ts_ptr + rk)
    s_last = tl.load(ts_ptr + K - 1)
    tril = rk[:, None] >= rk[None, :]
    b2 = tl.load(b2_ptr + pid * F + rf)
    for n in range(n_mb):
        q, k, v, lr, offs = _load_tokens(q_ptr, k_ptr, v_ptr, lr_ptr, bi * s_b + h * s_h + n * K * s_t,
                                         bi * l_b + h * l_h + n * K * l_t, s_t, l_t, rk, rf)
        z2 = tl.zeros((K, F), tl.float32)
        for j in range(0, F1, BF1):
            w1 = tl.load(w1_base + rf[:, None] * F1 + (j + rj)[None, :])
            x2 = _gelu(tl.dot(k, w1, input_precision=PREC) + tl.load(b1_base + j + rj)[None, :])
            z2 += tl.dot(x2, tl.load(w2_base + (j + rj)[:, None] * F + rf[None, :]), input_precision=PREC)
        g2 = _ln_l2_grad(z2 + b2[None, :], v - k, lnw, lnb, F, 1)
        eta = tl.where(tril, ts[:, None] * lr[None, :], 0.0)
        m1 = eta * (tl.dot(q, tl.trans(k), input_precision=PREC) + 1.0)
        lg2 = lr[:, None] * g2
        zq2 = tl.zeros((K, F), tl.float32)
        a2 = tl.zeros((K, K), tl.float32)
        tl.debug_barrier()  # every thread has read this mini-batch's start weights before any tile is overwritten
        for j in range(0, F1, BF1):
            w1_offs = rf[:, None] * F1 + (j + rj)[None, :]
            w2_offs = (j + rj)[:, None] * F + rf[None, :]
            w1 = tl.load(w1_base + w1_offs)
            b1 = tl.load(b1_base + j + rj)
            w2 = tl.load(w2_base + w2_offs)
            z1 = tl.dot(k, w1, input_precision=PREC) + b1[None, :]
            x2 = _gelu(z1)
            g1 = tl.dot(g2, tl.trans(w2), input_precision=PREC) * _gelu_grad(z1)
            xq2 = _gelu(tl.dot(q, w1, input_precision=PREC) + b1[None, :] - tl.dot(m1, g1, input_precision=PREC))
            zq2 += tl.dot(xq2, w2, input_precision=PREC)
            a2 += tl.dot(xq2, tl.trans(x2), input_precision=PREC)
            lg1 = lr[:, None] * g1
            tl.store(w1_base + w1_offs, w1 - s_last * tl.dot(tl.trans(k), lg1, input_precision=PREC))
            tl.store(b1_base + j + rj, b1 - s_last * tl.sum(lg1, 0))
            tl.store(w2_base + w2_offs, w2 - s_last * tl.dot(tl.trans(x2), lg2, input_precision=PREC))
        zq2 += b2[None, :] - tl.dot(eta * (a2 + 1.0), g2, input_precision=PREC)
        out = q + _ln(zq2, lnw, lnb, F, 1)
        tl.store(out_ptr + bi * o_b + h * o_h + n * K * o_t + rk[:, None] * o_t + rf[None, :],
                 out.to(out_ptr.dtype.element_ty))
        b2 = b2 - s_last * tl.sum(lg2, 0)
        tl.debug_barrier()  # the updated weights are visible to every thread before the next mini-batch reads them
    tl.store(b2_ptr + pid * F + rf, b2)


@triton.jit
def _load_token(q_ptr, k_ptr, v_ptr, lr_ptr, ts_ptr, pid, H, POS, s_b, s_h, l_b, l_h, rf):
    bi, h = pid // H, pid % H
    off = bi * s_b + h * s_h + rf
    q = tl.load(q_ptr + off).to(tl.float32)
    k = tl.load(k_ptr + off).to(tl.float32)
    v = tl.load(v_ptr + off).to(tl.float32)
    lr = tl.load(lr_ptr + bi * l_b + h * l_h).to(tl.float32)
    return q, k, v, lr, tl.load(ts_ptr + POS), h


@triton.jit
def linear_decode(q_ptr, k_ptr, v_ptr, lr_ptr, ts_ptr, lnw_ptr, lnb_ptr, w_ptr, b_ptr, gw_ptr, gb_ptr,
                  out_ptr, w_out_ptr, b_out_ptr, gw_out_ptr, gb_out_ptr, H, POS, s_b, s_h, l_b, l_h,
                  F: tl.constexpr, BR: tl.constexpr, FIRST: tl.constexpr, CLOSES: tl.constexpr):
    """One token. FIRST: the accumulators are zero (mini-batch start). CLOSES: write W, b and zero accumulators;
    otherwise only the accumulators are written (W, b are unchanged)."""
    pid = tl.program_id(0)
    rf = tl.arange(0, F)
    rr = tl.arange(0, BR)
    q, k, v, lr, s, h = _load_token(q_ptr, k_ptr, v_ptr, lr_ptr, ts_ptr, pid, H, POS, s_b, s_h, l_b, l_h, rf)
    lnw = tl.load(lnw_ptr + h * F + rf)
    lnb = tl.load(lnb_ptr + h * F + rf)
    bias = tl.load(b_ptr + pid * F + rf)
    z = bias
    for r in range(0, F, BR):
        kr = tl.load(k_ptr + (pid // H) * s_b + h * s_h + r + rr).to(tl.float32)
        z += tl.sum(kr[:, None] * tl.load(w_ptr + pid * F * F + (r + rr)[:, None] * F + rf[None, :]), 0)
    g = lr * _ln_l2_grad(z, v - k, lnw, lnb, F, 0)
    gb = g if FIRST else tl.load(gb_ptr + pid * F + rf) + g
    zq = bias - s * gb
    for r in range(0, F, BR):
        offs = pid * F * F + (r + rr)[:, None] * F + rf[None, :]
        kr = tl.load(k_ptr + (pid // H) * s_b + h * s_h + r + rr).to(tl.float32)
        qr = tl.load(q_ptr + (pid // H) * s_b + h * s_h + r + rr).to(tl.float32)
        gw = kr[:, None] * g[None, :]
        if not FIRST:
            gw += tl.load(gw_ptr + offs)
        w = tl.load(w_ptr + offs) - s * gw
        zq += tl.sum(qr[:, None] * w, 0)
        if CLOSES:
            tl.store(w_out_ptr + offs, w)
            tl.store(gw_out_ptr + offs, tl.zeros_like(w))
        else:
            tl.store(gw_out_ptr + offs, gw)
    if CLOSES:
        tl.store(b_out_ptr + pid * F + rf, bias - s * gb)
        tl.store(gb_out_ptr + pid * F + rf, tl.zeros_like(gb))
    else:
        tl.store(gb_out_ptr + pid * F + rf, gb)
    tl.store(out_ptr + pid * F + rf, (q + _ln(zq, lnw, lnb, F, 0)).to(out_ptr.dtype.element_ty))


@triton.jit
def mlp_decode(q_ptr, k_ptr, v_ptr, lr_ptr, ts_ptr, lnw_ptr, lnb_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr,
               gw1_ptr, gb1_ptr, gw2_ptr, gb2_ptr, out_ptr, w1_out, b1_out, w2_out, b2_out,
               gw1_out, gb1_out, gw2_out, gb2_out, H, POS, s_b, s_h, l_b, l_h,
               F: tl.constexpr, F1: tl.constexpr, BF1: tl.constexpr, FIRST: tl.constexpr, CLOSES: tl.constexpr):
    """One token, F1 streamed in tiles of BF1 (pass 1: z2; pass 2: gradients, query path, writes). FIRST and
    CLOSES as in linear_decode."""
    pid = tl.program_id(0)
    rf = tl.arange(0, F)
    rj = tl.arange(0, BF1)
    q, k, v, lr, s, h = _load_token(q_ptr, k_ptr, v_ptr, lr_ptr, ts_ptr, pid, H, POS, s_b, s_h, l_b, l_h, rf)
    lnw = tl.load(lnw_ptr + h * F + rf)
    lnb = tl.load(lnb_ptr + h * F + rf)
    w1_offs = pid * F * F1 + rf[:, None] * F1 + rj[None, :]  # [F, BF1] tile at column 0
    w2_offs = pid * F1 * F + rj[:, None] * F + rf[None, :]  # [BF1, F] tile at row 0
    b2 = tl.load(b2_ptr + pid * F + rf)
    z2 = b2
    for j in range(0, F1, BF1):
        x2 = _gelu(tl.sum(k[:, None] * tl.load(w1_ptr + w1_offs + j), 0) + tl.load(b1_ptr + pid * F1 + j + rj))
        z2 += tl.sum(x2[:, None] * tl.load(w2_ptr + w2_offs + j * F), 0)
    g2 = lr * _ln_l2_grad(z2, v - k, lnw, lnb, F, 0)
    gb2 = g2 if FIRST else tl.load(gb2_ptr + pid * F + rf) + g2
    zq2 = b2 - s * gb2
    for j in range(0, F1, BF1):
        w1 = tl.load(w1_ptr + w1_offs + j)
        b1 = tl.load(b1_ptr + pid * F1 + j + rj)
        w2 = tl.load(w2_ptr + w2_offs + j * F)
        z1 = tl.sum(k[:, None] * w1, 0) + b1
        x2 = _gelu(z1)
        g1 = tl.sum(w2 * g2[None, :], 1) * _gelu_grad(z1)
        gw1 = k[:, None] * g1[None, :]
        gb1 = g1
        gw2 = x2[:, None] * g2[None, :]
        if not FIRST:
            gw1 += tl.load(gw1_ptr + w1_offs + j)
            gb1 += tl.load(gb1_ptr + pid * F1 + j + rj)
            gw2 += tl.load(gw2_ptr + w2_offs + j * F)
        w1 = w1 - s * gw1
        b1 = b1 - s * gb1
        w2 = w2 - s * gw2
        xq2 = _gelu(tl.sum(q[:, None] * w1, 0) + b1)
        zq2 += tl.sum(xq2[:, None] * w2, 0)
        if CLOSES:
            tl.store(w1_out + w1_offs + j, w1)
            tl.store(b1_out + pid * F1 + j + rj, b1)
            tl.store(w2_out + w2_offs + j * F, w2)
            tl.store(gw1_out + w1_offs + j, tl.zeros_like(w1))
            tl.store(gb1_out + pid * F1 + j + rj, tl.zeros_like(b1))
            tl.store(gw2_out + w2_offs + j * F, tl.zeros_like(w2))
        else:
            tl.store(gw1_out + w1_offs + j, gw1)
            tl.store(gb1_out + pid * F1 + j + rj, gb1)
            tl.store(gw2_out + w2_offs + j * F, gw2)
    if CLOSES:
        tl.store(b2_out + pid * F + rf, b2 - s * gb2)
        tl.store(gb2_out + pid * F + rf, tl.zeros_like(gb2))
    else:
        tl.store(gb2_out + pid * F + rf, gb2)
    tl.store(out_ptr + pid * F + rf, (q + _ln(zq2, lnw, lnb, F, 0)).to(out_ptr.dtype.element_ty))
