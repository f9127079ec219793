"""Performance suite (GPU): TTT backends vs causal SDPA attention at the Llama-3.1-8B layer geometry, and the 8B
hybrid model. Batch 1, hidden 4096, 32 heads x 128, mini-batch 64, bf16 activations, float32 TTT state.

    python bench/performance.py                 # everything; JSON to leaderboards/performance.json, the table to
                                                # leaderboards/performance.md
    python bench/performance.py --check         # kernels vs float64 chunked at 8B geometry + quick timings

Sections:
  prefill   the scan op alone ("core": ttt_linear/ttt_mlp on q/k/v/lr; attention: SDPA on q/k/v) and the whole
            layer ("layer": TTTLinear/TTTMLP with q/k/v/o projections; attention with q/k/v/o projections,
            GQA 32/8 as in the 8B model) at 1k..256k tokens. naive runs only while its projected time fits
            --naive-budget; longer lengths are recorded as skipped.
  decode    per-token latency of one layer at a context: the TTT step (state prefilled to that context) vs
            attention over a KV cache of that length; 64 consecutive steps (one mini-batch) per timing.
  model     the 8B hybrid (top 8 layers TTT-Linear, random bf16 weights): prefill and decode tokens/s, full
            attention below (hybrid) and sliding-window attention below (bounded).
  floor     projection FLOPs at the bf16 GEMM rate measured here (8192^3 matmul).
Timing: CUDA events, warm-up first, median of repeats (fewer repeats for long runs). Peak memory is
max_memory_allocated during the timed call minus what was allocated before it (inputs and weights excluded).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.functional import scaled_dot_product_attention as sdpa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ttt_omni.hf_compat import cache_kwargs  # noqa: E402
from ttt_omni.ops import TTTState, ttt_linear, ttt_mlp  # noqa: E402
from ttt_omni.ops.chunked import ttt_chunked  # noqa: E402

HIDDEN, HEADS, KV_HEADS, F, K = 4096, 32, 8, 128, 64
DEV = "cuda"
SCANS = {"ttt_linear": ttt_linear, "ttt_mlp": ttt_mlp}


def time_ms(fn, repeats: int = 5, budget_s: float = 6.0) -> tuple[float, float]:
    """(median ms, peak MB beyond what was allocated before). One untimed warm-up; fewer repeats if slow."""
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    once = time.perf_counter() - t0
    repeats = max(1, min(repeats, int(budget_s / max(once, 1e-6))))
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), (torch.cuda.max_memory_allocated() - base) / 2**20


def op_inputs(kind: str, T: int, seed: int = 0, dtype=torch.bfloat16):
    """Random scan inputs on a trained layer's scale (as tests/ops/conftest.py) at the 8B head geometry."""
    g = torch.Generator(device=DEV).manual_seed(seed)

    def r(*shape, scale=1.0, dt=torch.float32):
        return (torch.randn(*shape, generator=g, device=DEV) * scale).to(dt)

    q, k, v = (r(1, HEADS, T, F, scale=0.5, dt=dtype) for _ in range(3))
    lr = torch.rand(1, HEADS, T, generator=g, device=DEV) / F * 4
    ts = 1.0 / torch.arange(1, K + 1, device=DEV, dtype=torch.float32)
    lnw, lnb = 1 + r(HEADS, F, scale=0.1), r(HEADS, F, scale=0.1)
    F1 = F if kind == "ttt_linear" else 4 * F
    W1, b1 = r(1, HEADS, F, F1, scale=F ** -0.5), torch.zeros(1, HEADS, 1, F1, device=DEV)
    if kind == "ttt_linear":
        return (q, k, v, lr, ts, lnw, lnb), TTTState.fresh(W1, b1)
    W2, b2 = r(1, HEADS, F1, F, scale=F1 ** -0.5), torch.zeros(1, HEADS, 1, F, device=DEV)
    return (q, k, v, lr, ts, lnw, lnb), TTTState.fresh(W1, b1, W2, b2)


def rel(a, b) -> float:
    a, b = a.double(), b.double()
    if torch.isnan(a).any():
        return float("nan")
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def state_rel(s, ref) -> float:
    return max(rel(s.tensors()[n], t) for n, t in ref.tensors().items() if t.abs().max() > 0)


def check(lengths=(397, 8192), precisions=("ieee", "tf32x3", "tf32")) -> list[dict]:
    """Triton vs chunked in float64 at the 8B geometry: prefill from a boundary and from mid-mini-batch, then
    70 decode steps (across a mini-batch end). ||out - ref|| / ||ref|| (NaN never passes)."""
    from ttt_omni.ops.triton_scan import ttt_triton
    rows = []
    for kind in SCANS:
        for T in lengths:
            args, state = op_inputs(kind, T + 70, seed=T, dtype=torch.float32)
            a64 = tuple(a.double() for a in args)
            s64 = TTTState.from_parts(tuple(p.double() for p in state.params()),
                                      tuple(x.double() for x in state.grads()), 0)
            pre = lambda a, lo, hi: tuple(x[:, :, lo:hi] for x in a[:4]) + a[4:]  # noqa: E731
            ref_out, ref_state = ttt_chunked(*pre(a64, 0, T), s64)
            ref_dec = []
            st = ref_state
            for t in range(T, T + 70):
                o, st = ttt_chunked(*pre(a64, t, t + 1), st)
                ref_dec.append(o)
            ref_dec, ref_end = torch.cat(ref_dec, 2), st
            for prec in precisions:
                os.environ["TTT_OMNI_TRITON_PRECISION"] = prec
                try:
                    rows.append(_check_one(ttt_triton, args, state, pre, T, ref_out, ref_state, ref_dec, ref_end))
                except Exception as e:  # a precision the installed triton cannot compile: record, go on
                    rows.append({"error": f"{type(e).__name__}: {str(e)[:300]}"})
                rows[-1].update(kind=kind, T=T, precision=prec)
                print(rows[-1], flush=True)
    os.environ.pop("TTT_OMNI_TRITON_PRECISION", None)
    return rows


def _check_one(ttt_triton, args, state, pre, T, ref_out, ref_state, ref_dec, ref_end) -> dict:
    out, s1 = ttt_triton(*pre(args, 0, 17), state)  # a partial piece, then the rest
    out2, s1 = ttt_triton(*pre(args, 17, T), s1)
    dec, st = [], s1
    for t in range(T, T + 70):
        o, st = ttt_triton(*pre(args, t, t + 1), st)
        dec.append(o)
    return {"prefill_out": rel(torch.cat([out, out2], 2), ref_out), "prefill_state": state_rel(s1, ref_state),
            "decode_out": rel(torch.cat(dec, 2), ref_dec), "decode_state": state_rel(st, ref_end)}


class Attention(nn.Module):
    """The attention the TTT layer replaces: q/k/v/o projections, GQA 32/8, causal SDPA (FlashAttention)."""

    def __init__(self):
        super().__init__()
        self.q = nn.Linear(HIDDEN, HEADS * F, bias=False)
        self.kv = nn.Linear(HIDDEN, 2 * KV_HEADS * F, bias=False)
        self.o = nn.Linear(HEADS * F, HIDDEN, bias=False)

    def forward(self, x, cache=None):
        B, T, _ = x.shape
        q = self.q(x).view(B, T, HEADS, F).transpose(1, 2)
        k, v = self.kv(x).view(B, T, 2, KV_HEADS, F).permute(2, 0, 3, 1, 4)
        if cache is not None:  # decode: attend over the cache plus this token (not appended: timing only)
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        out = sdpa(q, k, v, is_causal=cache is None, enable_gqa=True)
        return self.o(out.transpose(1, 2).reshape(B, T, HEADS * F))


def ttt_layer(kind: str):
    from ttt_omni.layers import TTTLinear, TTTMLP
    cls = TTTLinear if kind == "ttt_linear" else TTTMLP
    layer = cls(HIDDEN, HEADS, mini_batch_size=K).to(DEV, torch.bfloat16).eval()
    layer.inner.float()  # the inner parameters stay float32
    return layer


def with_backend(name: str, fn):
    """name: a backend, or "triton_tf32" (triton with plain tf32 dots instead of the default precision)."""
    def run():
        os.environ["TTT_OMNI_BACKEND"] = name.split("_")[0]
        if name == "triton_tf32":
            os.environ["TTT_OMNI_TRITON_PRECISION"] = "tf32"
        try:
            return fn()
        finally:
            os.environ.pop("TTT_OMNI_BACKEND", None)
            os.environ.pop("TTT_OMNI_TRITON_PRECISION", None)
    return run


def prefill_rows(lengths, naive_budget: float, progress) -> list[dict]:
    rows, naive_s_per_token = [], {}
    for T in lengths:
        x = torch.randn(1, T, HIDDEN, device=DEV, dtype=torch.bfloat16)
        for kind in ("ttt_linear", "ttt_mlp"):
            args, state = op_inputs(kind, T)
            layer = ttt_layer(kind)
            for backend in ("naive", "chunked", "triton", "triton_tf32"):
                progress(f"prefill {kind} {backend} {T}")
                row = {"impl": f"{kind}/{backend}", "tokens": T}
                if backend == "naive" and naive_s_per_token.get(kind, 0) * T > naive_budget:
                    row["skipped"] = f"projected {naive_s_per_token[kind] * T:.0f} s > budget {naive_budget:.0f} s"
                    rows.append(row)
                    continue
                with torch.no_grad():  # not inference_mode: naive takes its inner gradients with autograd
                    core = with_backend(backend, lambda: SCANS[kind](*args, state))
                    row["core_ms"], row["core_peak_mb"] = time_ms(core, repeats=1 if backend == "naive" else 5)
                    if backend == "naive":
                        naive_s_per_token[kind] = row["core_ms"] / 1e3 / T
                    else:
                        row["layer_ms"], row["layer_peak_mb"] = time_ms(with_backend(backend, lambda: layer(x)))
                rows.append(row)
            del layer
        progress(f"prefill attention {T}")
        attn = Attention().to(DEV, torch.bfloat16)
        q = torch.randn(1, HEADS, T, F, device=DEV, dtype=torch.bfloat16)
        kv = torch.randn(2, 1, KV_HEADS, T, F, device=DEV, dtype=torch.bfloat16)
        with torch.inference_mode():
            c_ms, c_mb = time_ms(lambda: sdpa(q, kv[0], kv[1], is_causal=True, enable_gqa=True))
            l_ms, l_mb = time_ms(lambda: attn(x))
        rows.append({"impl": "attention/sdpa", "tokens": T, "core_ms": c_ms, "core_peak_mb": c_mb,
                     "layer_ms": l_ms, "layer_peak_mb": l_mb})
        del x, q, kv, attn
        torch.cuda.empty_cache()
    return rows


def decode_rows(contexts, progress, steps: int = K) -> list[dict]:
    rows = []
    for L in contexts:
        for kind in ("ttt_linear", "ttt_mlp"):
            progress(f"decode {kind} {L}")
            args, state = op_inputs(kind, L + steps)
            with torch.inference_mode():
                _, state = SCANS[kind](*(a[:, :, :L] for a in args[:4]), *args[4:], state, backend="triton")
                toks = [tuple(a[:, :, t:t + 1] for a in args[:4]) + args[4:] for t in range(L, L + steps)]
                layer = ttt_layer(kind)
                xs = torch.randn(steps, 1, 1, HIDDEN, device=DEV, dtype=torch.bfloat16)
                row = {"impl": kind, "context": L}
                for name, call in (("op_ms", lambda t, s: SCANS[kind](*t, s, backend="triton")),
                                   ("kernel_ms", lambda t, s: _direct(t, s))):
                    def steps_fn(call=call):
                        s = state
                        for t in toks:
                            _, s = call(t, s)
                    row[name] = time_ms(steps_fn)[0] / steps
                _, layer_state = with_backend("triton", lambda: layer(torch.randn(1, L, HIDDEN, device=DEV,
                                                                               dtype=torch.bfloat16)))()

                def layer_steps():
                    s = layer_state
                    for x in xs:
                        _, s = layer(x, s)
                row["layer_ms"] = time_ms(with_backend("triton", layer_steps))[0] / steps
            rows.append(row)
            del layer, args, toks
        progress(f"decode attention {L}")
        attn = Attention().to(DEV, torch.bfloat16)
        kv = torch.randn(2, 1, KV_HEADS, L, F, device=DEV, dtype=torch.bfloat16)
        q = torch.randn(1, HEADS, 1, F, device=DEV, dtype=torch.bfloat16)
        xs = torch.randn(steps, 1, 1, HIDDEN, device=DEV, dtype=torch.bfloat16)
        with torch.inference_mode():
            core = time_ms(lambda: [sdpa(q, kv[0], kv[1], enable_gqa=True) for _ in range(steps)])[0] / steps
            layer = time_ms(lambda: [attn(x, (kv[0], kv[1])) for x in xs])[0] / steps
        rows.append({"impl": "attention", "context": L, "op_ms": core, "layer_ms": layer,
                     "kv_cache_mb": kv.numel() * 2 / 2**20})
        del kv, attn
        torch.cuda.empty_cache()
    return rows


def _direct(tok, state):
    from ttt_omni.ops.triton_scan import ttt_triton
    return ttt_triton(*tok, state)


def model_rows(contexts, window: int, progress, decode_tokens: int = 32) -> list[dict]:
    from model_memory import build_model
    rows = []
    for kind in ("hybrid", "bounded"):
        progress(f"model {kind}: build")
        model = build_model("llama-3.1-8b", kind, window, DEV, torch.bfloat16)
        vocab = model.config.vocab_size
        with torch.inference_mode():
            model(torch.randint(0, vocab, (1, 1024), device=DEV), use_cache=True, logits_to_keep=1)  # warm-up
            for L in contexts:
                progress(f"model {kind} {L}")
                ids = torch.randint(0, vocab, (1, L), device=DEV)
                cache = model.make_cache()
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                for start in range(0, L, 8192):  # in chunks, as a long prompt would be fed
                    model(ids[:, start:start + 8192], **cache_kwargs(cache), logits_to_keep=1)
                torch.cuda.synchronize()
                prefill_s = time.perf_counter() - t0
                token = ids[:, -1:]
                for _ in range(2):
                    token = model(token, **cache_kwargs(cache)).logits[:, -1:].argmax(-1)
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(decode_tokens):
                    token = model(token, **cache_kwargs(cache)).logits[:, -1:].argmax(-1)
                torch.cuda.synchronize()
                decode_s = time.perf_counter() - t0
                rows.append({"model": kind, "context": L, "prefill_tok_s": L / prefill_s,
                             "decode_tok_s": decode_tokens / decode_s, "peak_gb": torch.cuda.max_memory_allocated() / 2**30,
                             "cache_mb": cache.nbytes()["total"] / 2**20})
                del cache, ids
                torch.cuda.empty_cache()
        del model
        torch.cuda.empty_cache()
    return rows


def gemm_tflops() -> float:
    a, b = (torch.randn(8192, 8192, device=DEV, dtype=torch.bfloat16) for _ in range(2))
    ms, _ = time_ms(lambda: a @ b, repeats=20)
    return 2 * 8192 ** 3 / ms / 1e9


def floors(lengths, tflops: float) -> dict:
    """Projection FLOPs of one layer at the measured GEMM rate (ms): TTT q/k/v/o 4 x (4096x4096); attention q/o
    (4096x4096) + k/v (4096x1024)."""
    ttt = {T: 2 * T * HIDDEN * 4 * HEADS * F / tflops / 1e9 for T in lengths}
    attn = {T: 2 * T * HIDDEN * (2 * HEADS * F + 2 * KV_HEADS * F) / tflops / 1e9 for T in lengths}
    return {"ttt_projection_ms": ttt, "attention_projection_ms": attn}


def _fmt(v, digits=1):
    return "-" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def _k(n: int) -> str:
    return f"{n // 1024}k"


def markdown(res: dict) -> str:
    lengths, contexts = res["lengths"], res["contexts"]
    head = lambda cols: "| | " + " | ".join(_k(c) for c in cols) + " |\n|---|" + "---|" * len(cols)  # noqa
    lines = [f"# Performance: TTT kernels vs attention\n",
             f"{res['device']}; torch {res['torch']}, triton {res['triton']}; batch 1, hidden 4096, 32 heads x 128, "
             f"mini-batch 64, bf16 activations, float32 TTT state; triton dots: {res['precision']}; measured bf16 "
             f"GEMM {res['gemm_tflops']:.0f} TFLOP/s. Generated by `python bench/performance.py` "
             f"(JSON: leaderboards/performance.json).\n"]
    pre = res["prefill"]
    for key, title in (("layer_ms", "Prefill, one layer with its q/k/v/o projections (ms)"),
                       ("core_ms", "Prefill, the scan / SDPA core alone (ms)"),
                       ("layer_peak_mb", "Prefill peak memory of one layer beyond its inputs (MB)")):
        lines.append(f"\n## {title}\n\n" + head(lengths))
        for impl in dict.fromkeys(r["impl"] for r in pre):
            by = {r["tokens"]: r for r in pre if r["impl"] == impl}
            cells = [("skipped" if "skipped" in by.get(T, {}) else _fmt(by.get(T, {}).get(key))) for T in lengths]
            lines.append(f"| {impl} | " + " | ".join(cells) + " |")
        if key != "layer_peak_mb":
            for name in ("ttt_projection_ms", "attention_projection_ms"):
                fl = res["floor"][name]
                lines.append(f"| floor: {name[:-3].replace('_', ' ')}s | "
                             + " | ".join(_fmt(fl[str(T)] if str(T) in fl else fl.get(T), 2) for T in lengths) + " |")
    lines.append("\n## Decode, one layer, per token (ms)\n\n" + head(contexts))
    for impl, key in (("ttt_linear", "kernel_ms"), ("ttt_linear", "op_ms"), ("ttt_linear", "layer_ms"),
                      ("ttt_mlp", "kernel_ms"), ("ttt_mlp", "op_ms"), ("ttt_mlp", "layer_ms"),
                      ("attention", "op_ms"), ("attention", "layer_ms")):
        by = {r["context"]: r for r in res["decode"] if r["impl"] == impl}
        what = {"kernel_ms": "decode step (triton_scan.ttt_triton)", "op_ms": "ops dispatch (checks included)",
                "layer_ms": "layer with projections"}[key]
        if impl == "attention":
            what = {"op_ms": "SDPA over the KV cache", "layer_ms": "layer with projections"}[key]
        lines.append(f"| {impl}: {what} | " + " | ".join(_fmt(by.get(L, {}).get(key), 3) for L in contexts) + " |")
    if res.get("model"):
        lines.append("\n## 8B-geometry hybrid model (random bf16 weights, top 8 layers TTT-Linear)\n")
        lines.append(f"bounded = sliding-window attention ({res['window']} tokens) in the 24 attention layers.\n")
        lines.append("| model | context | prefill tok/s | decode tok/s | peak GB | cache MB |\n|---|---|---|---|---|---|")
        for r in res["model"]:
            lines.append(f"| {r['model']} | {_k(r['context'])} | {r['prefill_tok_s']:.0f} | {r['decode_tok_s']:.1f} | "
                         f"{r['peak_gb']:.1f} | {r['cache_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="correctness vs float64 chunked + quick kernel timings")
    p.add_argument("--lengths", default="1024,4096,16384,65536,262144")
    p.add_argument("--contexts", default="1024,4096,16384,65536")
    p.add_argument("--model-contexts", default="4096,16384,65536")
    p.add_argument("--window", type=int, default=4096, help="attention window of the bounded model")
    p.add_argument("--naive-budget", type=float, default=20.0, help="seconds one naive run may take")
    p.add_argument("--skip", default="", help="comma-separated sections to skip: prefill,decode,model")
    p.add_argument("--out", default=str(ROOT / "leaderboards" / "performance.json"))
    p.add_argument("--table", default=str(ROOT / "leaderboards" / "performance.md"))
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        p.error("needs a CUDA GPU (the kernels' CPU tests are tests/ops/test_triton.py)")
    import triton
    from rich.progress import Progress
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__}
    if a.check:
        res["check"] = check()
        res["quick"] = quick()
        out = Path(a.out).with_name("performance-check.json")  # never over the full run's JSON
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
        return 0
    from ttt_omni.ops import triton_precision
    lengths = [int(n) for n in a.lengths.split(",")]
    contexts = [int(n) for n in a.contexts.split(",")]
    skip = set(a.skip.split(","))
    res.update(precision=triton_precision(), lengths=lengths, contexts=contexts, window=a.window)
    with Progress() as bar:
        task = bar.add_task("bench", total=None)
        progress = lambda what: bar.update(task, description=what)  # noqa: E731
        res["gemm_tflops"] = gemm_tflops()
        res["floor"] = floors(lengths, res["gemm_tflops"])
        res["prefill"] = res["decode"] = res["model"] = []
        sections = (("prefill", lambda: prefill_rows(lengths, a.naive_budget, progress)),
                    ("decode", lambda: decode_rows(contexts, progress)),
                    ("model", lambda: model_rows([int(n) for n in a.model_contexts.split(",")], a.window, progress)))
        for name, run in sections:
            if name not in skip:
                res[name] = run()
                write(res, a.out, a.table)  # after each section: a cut-off run keeps what it measured
    print(markdown(res))
    return 0


def write(res: dict, out: str, table: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(res, indent=2))
    Path(table).parent.mkdir(parents=True, exist_ok=True)
    old = Path(table).read_text() if Path(table).is_file() else ""
    cpu = "<!-- bench/decode.py: start -->"  # bench/decode.py's CPU section stays beside the GPU tables
    Path(table).write_text(markdown(res) + ("\n" + cpu + old.split(cpu, 1)[1] if cpu in old else ""))


def quick() -> list[dict]:
    """Core triton prefill per precision at 4k and 64k (and chunked at 4k for scale)."""
    rows = []
    for kind in SCANS:
        for T in (4096, 65536):
            args, state = op_inputs(kind, T)
            with torch.inference_mode():
                for prec in ("ieee", "tf32x3", "tf32"):
                    os.environ["TTT_OMNI_TRITON_PRECISION"] = prec
                    ms, mb = time_ms(lambda: SCANS[kind](*args, state, backend="triton"))
                    rows.append({"kind": kind, "T": T, "impl": f"triton/{prec}", "ms": ms})
                    print(rows[-1], flush=True)
                os.environ.pop("TTT_OMNI_TRITON_PRECISION")
                if T == 4096:
                    rows.append({"kind": kind, "T": T, "impl": "chunked",
                                 "ms": time_ms(lambda: SCANS[kind](*args, state, backend="chunked"))[0]})
                    print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
