"""Decode memory and speed at long context: full attention vs the TTT hybrid vs the bounded-memory hybrid.

    python bench/model_memory.py                         # CPU: tiny preset, 1k/4k/16k/64k context
    python bench/model_memory.py --device cuda           # GPU: Llama-3.1-8B geometry, random bf16 weights

For each model and context length (each in its own subprocess, so the numbers are that run's alone): prefill the
context in chunks, then time `--decode-tokens` greedy decode steps. Reported per run:
  cache MiB     bytes held by the cache tensors after prefill (KV of the attention layers + TTT states)
  decode peak   CUDA: max_memory_allocated during decode (weights included);
                CPU: peak RSS of the process during decode (Linux VmHWM after a reset; includes the interpreter)
  tok/s         decode tokens per second (after 2 untimed warm-up steps)
Models: "full" (every layer attention, i.e. plain Llama), "hybrid" (top layers TTT, full attention below),
"bounded" (the hybrid with sliding-window attention of --window tokens below).
Prints a table and writes JSON (default bench/out/model_memory-<device>.json).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ttt_omni.hf_compat import cache_kwargs  # noqa: E402

MODELS = ("full", "hybrid", "bounded")
WARMUP_STEPS = 2  # untimed decode steps first (lazy init, allocator warm-up)


def build_model(preset: str, kind: str, window: int, device: str, dtype: torch.dtype):
    from ttt_omni.models import TTTLlamaForCausalLM
    from ttt_omni.models.presets import preset_config

    overrides = {"full": {"ttt_layers": []}, "hybrid": {}, "bounded": {"attention_window": window}}[kind]
    config = preset_config(preset, **overrides)
    torch.manual_seed(0)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build directly in the target dtype (the TTT inner weights stay float32)
    try:
        with torch.device(device):
            model = TTTLlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default_dtype)
    return model.eval()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _cpu_peak_reset() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _cpu_peak_bytes() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(preset: str, kind: str, context: int, window: int, chunk: int, decode_tokens: int, device: str,
            dtype: str) -> dict:
    model = build_model(preset, kind, window, device, getattr(torch, dtype))
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (1, context), generator=torch.Generator().manual_seed(0)).to(device)
    cache = model.make_cache()
    with torch.inference_mode():
        for start in range(0, context, chunk):
            model(ids[:, start:start + chunk], **cache_kwargs(cache), logits_to_keep=1)
        cache_bytes = cache.nbytes()
        token = ids[:, -1:]
        for _ in range(WARMUP_STEPS):
            token = model(token, **cache_kwargs(cache)).logits[:, -1:].argmax(-1)
        _sync(device)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        else:
            _cpu_peak_reset()
        t0 = time.perf_counter()
        for _ in range(decode_tokens):
            token = model(token, **cache_kwargs(cache)).logits[:, -1:].argmax(-1)
        _sync(device)
        seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else _cpu_peak_bytes()
    return {"model": kind, "context": context, "cache_bytes": cache_bytes["total"], "kv_bytes": cache_bytes["kv"],
            "ttt_bytes": cache_bytes["ttt"], "decode_peak_bytes": peak, "decode_tokens": decode_tokens,
            "decode_seconds": seconds, "tokens_per_s": decode_tokens / seconds}


def run_one(args, kind: str, context: int) -> dict:
    """Runs `measure` in a fresh interpreter so that peak memory belongs to this run only."""
    cmd = [sys.executable, __file__, "--_child", kind, str(context), "--preset", args.preset, "--window",
           str(args.window), "--chunk", str(args.chunk), "--decode-tokens", str(args.decode_tokens),
           "--device", args.device, "--dtype", args.dtype]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"model": kind, "context": context, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mib(n) -> str:
    return f"{n / 2**20:10.2f}" if isinstance(n, (int, float)) else f"{'-':>10}"


def print_table(rows: list[dict]) -> None:
    print(f"{'model':8} {'context':>8} {'cache MiB':>10} {'KV MiB':>10} {'TTT MiB':>10} {'decode peak MiB':>16} "
          f"{'tok/s':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['model']:8} {r['context']:>8} error: {r['error']}")
            continue
        print(f"{r['model']:8} {r['context']:>8} {_mib(r['cache_bytes'])} {_mib(r['kv_bytes'])} "
              f"{_mib(r['ttt_bytes'])} {_mib(r['decode_peak_bytes']):>16} {r['tokens_per_s']:9.1f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--preset", default=None, help="model preset (default: tiny on CPU, llama-3.1-8b on CUDA)")
    parser.add_argument("--dtype", default=None, help="float32 / bfloat16 (default: float32 on CPU, bfloat16 on CUDA)")
    parser.add_argument("--contexts", default="1024,4096,16384,65536", help="comma-separated context lengths")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {MODELS}")
    parser.add_argument("--window", type=int, default=1024, help="attention window of the bounded-memory model")
    parser.add_argument("--chunk", type=int, default=2048, help="prefill chunk length")
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--out", default=None, help="JSON path (default bench/out/model_memory-<device>.json)")
    parser.add_argument("--_child", nargs=2, metavar=("MODEL", "CONTEXT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.preset = args.preset or ("llama-3.1-8b" if cuda else "tiny")
    args.dtype = args.dtype or ("bfloat16" if cuda else "float32")
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device")
    if args._child:
        kind, context = args._child
        print(json.dumps(measure(args.preset, kind, int(context), args.window, args.chunk, args.decode_tokens,
                                 args.device, args.dtype)))
        return 0

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; expected a subset of {MODELS}")
    contexts = [int(c) for c in args.contexts.split(",")]
    rows = [run_one(args, kind, context) for context in contexts for kind in models]
    print_table(rows)
    out = Path(args.out) if args.out else ROOT / "bench" / "out" / f"model_memory-{args.device.split(':')[0]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"preset": args.preset, "device": args.device, "dtype": args.dtype, "window": args.window,
            "chunk": args.chunk, "torch": torch.__version__, "machine": platform.platform(),
            "gpu": torch.cuda.get_device_name() if cuda else None}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
