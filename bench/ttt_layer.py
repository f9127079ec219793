"""Prefill throughput and peak memory: TTTLinear / TTTMLP (chunked backend) vs a causal SDPA attention layer.

    python bench/ttt_layer.py                      # CPU: small width, 1k/4k/16k
    python bench/ttt_layer.py --device cuda        # GPU: hidden 4096, 32 heads, 1k..64k

Each (layer, length) runs in its own subprocess so that peak memory is that run's alone: on CUDA
max_memory_allocated, on CPU the rise of the process's peak RSS over its RSS before the first forward.
Prints a table and writes JSON (default bench/out/ttt_layer.json).
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class CausalAttention(nn.Module):
    """The attention layer TTT replaces: q/k/v/o projections and causal SDPA (FlashAttention on GPU)."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden, bias=False)
        self.o_proj = nn.Linear(hidden, hidden, bias=False)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, D))


def build(layer: str, hidden: int, heads: int, mini_batch: int):
    from ttt_omni.layers import TTTLinear, TTTMLP
    if layer == "attention":
        return CausalAttention(hidden, heads)
    cls = TTTLinear if layer == "ttt_linear" else TTTMLP
    return cls(hidden, heads, mini_batch_size=mini_batch)


def measure(layer: str, length: int, hidden: int, heads: int, mini_batch: int, device: str, dtype: str,
            repeats: int) -> dict:
    torch.manual_seed(0)
    dt = getattr(torch, dtype)
    module = build(layer, hidden, heads, mini_batch).to(device=device, dtype=dt).eval()
    x = torch.randn(1, length, hidden, device=device, dtype=dt)

    def run():
        with torch.no_grad():
            module(x)
        if device == "cuda":
            torch.cuda.synchronize()

    base = 0 if device == "cuda" else _rss_bytes()  # CPU: before the warm-up, whose peak is the same run's
    run()  # warm-up (kernel selection, allocator)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) - base
    best = min(times)
    return {"layer": layer, "length": length, "ms": best * 1e3, "tokens_per_s": length / best,
            "peak_mem_mb": max(peak, 0) / 2**20}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--lengths", default=None, help="comma-separated token counts")
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--heads", type=int, default=None)
    p.add_argument("--mini-batch", type=int, default=64)
    p.add_argument("--dtype", default=None, help="float32 on CPU, bfloat16 on GPU by default")
    p.add_argument("--layers", default="ttt_linear,ttt_mlp,attention")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "ttt_layer.json"))
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child mode: layer:length
    a = p.parse_args(argv)
    gpu = a.device == "cuda"
    hidden = a.hidden or (4096 if gpu else 256)
    heads = a.heads or (32 if gpu else 4)
    dtype = a.dtype or ("bfloat16" if gpu else "float32")
    lengths = [int(n) for n in (a.lengths or ("1024,4096,16384,65536" if gpu else "1024,4096,16384")).split(",")]

    if a.one:
        layer, length = a.one.split(":")
        print(json.dumps(measure(layer, int(length), hidden, heads, a.mini_batch, a.device, dtype, a.repeats)))
        return 0

    rows = []
    for length in lengths:
        for layer in a.layers.split(","):
            cmd = [sys.executable, __file__, "--one", f"{layer}:{length}", "--device", a.device, "--hidden",
                   str(hidden), "--heads", str(heads), "--mini-batch", str(a.mini_batch), "--dtype", dtype,
                   "--repeats", str(a.repeats)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                err = (proc.stderr.strip().splitlines() or ["?"])[-1]
                rows.append({"layer": layer, "length": length, "error": err})
            else:
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{r['layer']:>11} {r['length']:>7}  " + (f"{r['ms']:10.1f} ms {r['tokens_per_s']:12.0f} tok/s "
                  f"{r['peak_mem_mb']:9.1f} MB" if "ms" in r else r["error"]), flush=True)

    device_name = torch.cuda.get_device_name() if gpu else platform.processor() or platform.machine()
    result = {"device": device_name, "hidden": hidden, "heads": heads, "mini_batch": a.mini_batch,
              "dtype": dtype, "torch": torch.__version__, "rows": rows}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nprefill, batch 1, hidden {hidden}, {heads} heads, mini-batch {a.mini_batch}, {dtype}, {device_name}")
    print(f"| layer | tokens | ms | tokens/s | peak MB | vs attention |\n|---|---|---|---|---|---|")
    attn = {r["length"]: r for r in rows if r["layer"] == "attention" and "ms" in r}
    for r in rows:
        if "ms" not in r:
            print(f"| {r['layer']} | {r['length']} | failed: {r['error']} | | | |")
            continue
        ratio = f"{r['ms'] / attn[r['length']]['ms']:.2f}x" if r["length"] in attn else ""
        print(f"| {r['layer']} | {r['length']} | {r['ms']:.1f} | {r['tokens_per_s']:.0f} | {r['peak_mem_mb']:.1f} | {ratio} |")
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
