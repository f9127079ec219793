"""Greedy decode cost per token on the CPU (or a GPU) for evalsuite model specs at several context lengths.

    python bench/decode.py                                                   # smollm2 vs the bounded TTT model, 1k
    python bench/decode.py --models smollm2,smollm2-ttt@window=1024,sinks=4 --contexts 1k,4k,8k,16k,32k
    python bench/decode.py --path generate                                   # through HF generate() (evaluation)

Each (model, context) runs in its own interpreter, so its peak RSS is its own. The context (the eval books,
tokenized) is prefilled in chunks of --chunk tokens, then --decode-tokens greedy steps are timed one by one after
--warmup untimed ones, then --profile-steps more run under torch.profiler for the per-layer breakdown.

Paths: `loop` feeds one token at a time to the model with its cache and takes the argmax of the last logits (what the
chat path, OmniSpeechTTT.stream_reply, and the retrieval reader do); `generate` continues the prefilled cache through
transformers' generate() (what the generation tasks do), timing each step by a logits processor.

Reported per run: decode ms/token (median, p90), CPU ms/token (process time: above the wall time when several
threads work), cache bytes after prefill (attention KV / TTT states), peak RSS during prefill and during decode
(VmHWM, reset after loading), and per decode step the profiler's time inside the TTT layers, inside the attention
layers (projections included) and the rest (MLPs, norms, the LM head, Python). The machine's memory read bandwidth
(best of several reads of a 256 MiB tensor, same thread count) gives the weight-read bound: the parameter bytes
(tied embeddings counted once) over that bandwidth, the least time a decode step that reads every weight can take.
Prints a table and writes JSON (default bench/out/decode-<device>.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_MODELS = "smollm2,smollm2-ttt@window=1024,sinks=4"
PATHS = ("loop", "generate")


def parse_context(text: str) -> int:
    """'4k' -> 4096, '1000' -> 1000."""
    text = text.strip().lower()
    value = int(text[:-1]) * 1024 if text.endswith("k") else int(text)
    if value < 2:
        raise ValueError(f"context {text!r}: expected a whole number of tokens >= 2 (or Nk)")
    return value


def memory_bandwidth(mib: int = 256, repeats: int = 5) -> float:
    """Bytes per second of reading a large float32 tensor (sum: one pass, little arithmetic); the best of `repeats`."""
    x = torch.ones(mib * 2**20 // 4)
    x.sum()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t0)
    return x.numel() * 4 / best


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's parameters, each storage once (tied input/output embeddings are read once per step)."""
    seen, total = set(), 0
    for p in model.parameters():
        key = p.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += p.untyped_storage().nbytes()
    return total


def _rss_reset() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _rss_peak() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _cache_bytes(cache) -> dict[str, int]:
    if hasattr(cache, "nbytes") and callable(cache.nbytes):
        return cache.nbytes()
    kv = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values)
             if t is not None)
    return {"kv": kv, "ttt": 0, "total": kv}


def context_ids(tokenizer, n: int) -> torch.Tensor:
    """The first `n` tokens of the eval books, one after the other (repeated if they are too short)."""
    from ttt_omni.data_manifest import books

    ids: list[int] = []
    for book in books("eval"):
        ids += tokenizer(book.read()[: 8 * n], add_special_tokens=False)["input_ids"]
        if len(ids) >= n:
            break
    while len(ids) < n:
        ids += ids
    return torch.tensor([ids[:n]])


class LayerLabels:
    """Forward hooks that wrap each decoder layer's attention module (TTT or attention), MLP and the LM head in
    torch.profiler record_function ranges, so the profile splits a step into TTT / attention / the rest."""

    def __init__(self, model):
        from torch.autograd.profiler import record_function

        self.handles, self._open = [], []
        layers = model.model.layers
        labels = [(layer.self_attn, "bench::ttt" if hasattr(layer.self_attn, "ttt") else "bench::attention")
                  for layer in layers] + [(layer.mlp, "bench::mlp") for layer in layers]
        labels.append((model.get_output_embeddings(), "bench::lm_head"))
        for module, label in labels:
            def pre(_m, _a, label=label):
                rf = record_function(label)
                rf.__enter__()
                self._open.append(rf)

            def post(_m, _a, _o):
                self._open.pop().__exit__(None, None, None)

            self.handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def breakdown(profile, steps: int) -> dict[str, float]:
    """ms per decode step inside each label, and the step's total, from a profile of `steps` steps."""
    totals = {e.key: e.cpu_time_total / 1000 / steps for e in profile.key_averages() if e.key.startswith("bench::")}
    out = {name: totals.get(f"bench::{name}", 0.0) for name in ("ttt", "attention", "mlp", "lm_head", "step")}
    out["rest"] = out["step"] - out["ttt"] - out["attention"]
    return out


def measure(spec: str, context: int, chunk: int, decode_tokens: int, warmup: int, profile_steps: int, path: str,
            device: str) -> dict:
    from torch.profiler import ProfilerActivity, profile, record_function
    from transformers import LogitsProcessor, LogitsProcessorList

    from evalsuite.models import load_model
    from ttt_omni.hf_compat import cache_kwargs

    loaded = load_model(spec, device=device)
    model, dev = loaded.model, loaded.device
    ids = context_ids(loaded.tokenizer, context).to(dev)
    cache = model.make_cache() if hasattr(model, "make_cache") else None
    if cache is None:
        from transformers import DynamicCache
        cache = DynamicCache(config=model.config)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    _rss_reset()
    with torch.inference_mode():
        t0 = time.perf_counter()
        # all but the last context token: the first decode step feeds it
        for s in range(0, context - 1, chunk):
            model(ids[:, s:min(s + chunk, context - 1)], logits_to_keep=1, **cache_kwargs(cache))
        sync()
        prefill_s = time.perf_counter() - t0
    prefill_peak = _rss_peak()
    cache_bytes = _cache_bytes(cache)
    _rss_reset()
    stamps = [time.perf_counter()]  # then one at the end of each decode step: step i takes stamps[i+1] - stamps[i]
    cpu: list[float] = []

    def stamp() -> None:
        sync()
        stamps.append(time.perf_counter())
        if len(stamps) in (warmup + 1, warmup + decode_tokens + 1):
            cpu.append(time.process_time())

    prof = None
    with torch.inference_mode():
        if path == "loop":
            token = ids[:, -1:]
            for _ in range(warmup + decode_tokens):
                token = model(token, logits_to_keep=1, **cache_kwargs(cache)).logits[:, -1:].argmax(-1)
                stamp()
            labels = LayerLabels(model)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(profile_steps):
                    with record_function("bench::step"):
                        token = model(token, logits_to_keep=1, **cache_kwargs(cache)).logits[:, -1:].argmax(-1)
            labels.remove()
        else:
            class Stamp(LogitsProcessor):
                def __call__(self, input_ids, scores):
                    stamp()
                    return scores

            n = warmup + decode_tokens
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                           do_sample=False, logits_processor=LogitsProcessorList([Stamp()]),
                           pad_token_id=loaded.tokenizer.pad_token_id, **cache_kwargs(cache))
    decode_peak = _rss_peak()
    times = [stamps[i + 1] - stamps[i] for i in range(warmup, warmup + decode_tokens)]
    times_ms = sorted(1000 * t for t in times)
    n = len(times_ms)
    wbytes = weight_bytes(model)
    row = {
        "model": spec, "context": context, "path": path, "decode_tokens": n,
        "ms_median": statistics.median(times_ms), "ms_p90": times_ms[min(n - 1, int(0.9 * n))],
        "cpu_ms_per_token": 1000 * (cpu[1] - cpu[0]) / n,
        "kv_bytes": cache_bytes["kv"], "ttt_bytes": cache_bytes["ttt"], "prefill_s": prefill_s,
        "prefill_tokens_per_s": (context - 1) / prefill_s,
        "prefill_peak_rss": prefill_peak, "decode_peak_rss": decode_peak, "weight_bytes": wbytes,
        "threads": torch.get_num_threads(),
    }
    if prof is not None:
        row["breakdown_ms"] = breakdown(prof, profile_steps)
    return row


def run_one(args, spec: str, context: int) -> dict:
    """`measure` in a fresh interpreter, so that its peak RSS belongs to this run only."""
    cmd = [sys.executable, __file__, "--_child", spec, str(context), "--chunk", str(args.chunk), "--decode-tokens",
           str(args.decode_tokens), "--warmup", str(args.warmup), "--profile-steps", str(args.profile_steps),
           "--path", args.path, "--device", args.device]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"model": spec, "context": context, "path": args.path,
                "error": (proc.stderr.strip().splitlines() or ["exit status %d" % proc.returncode])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _k(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def print_table(rows: list[dict], bandwidth: float) -> list[str]:
    lines = ["| model | context | ms/token median | p90 | CPU ms/token | weight-read bound ms | x bound | "
             "TTT / attention / rest ms | KV MB | TTT MB | prefill peak RSS MB | decode peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| `{r['model']}` | {_k(r['context'])} | error: {r['error']} |")
            continue
        bound = 1000 * r["weight_bytes"] / bandwidth
        b = r.get("breakdown_ms")
        split = f"{b['ttt']:.1f} / {b['attention']:.1f} / {b['rest']:.1f}" if b else "-"
        lines.append(f"| `{r['model']}` | {_k(r['context'])} | {r['ms_median']:.1f} | {r['ms_p90']:.1f} | "
                     f"{r['cpu_ms_per_token']:.1f} | {bound:.1f} | {r['ms_median'] / bound:.2f} | {split} | "
                     f"{r['kv_bytes'] / 1e6:.1f} | {r['ttt_bytes'] / 1e6:.1f} | {r['prefill_peak_rss'] / 1e6:.0f} | "
                     f"{r['decode_peak_rss'] / 1e6:.0f} |")
    print("\n".join(lines))
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated evalsuite model specs; separate "
                        "specs with options (spec@window=N,sinks=N) by ';' (default: %(default)s)")
    parser.add_argument("--contexts", default="1k", help="comma-separated context lengths, tokens or Nk "
                        "(default 1k; 1k,4k,8k,16k,32k for the table)")
    parser.add_argument("--chunk", type=int, default=1024, help="prefill chunk (tokens)")
    parser.add_argument("--decode-tokens", type=int, default=32, help="timed decode steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed decode steps first")
    parser.add_argument("--profile-steps", type=int, default=4, help="steps under the profiler (loop path)")
    parser.add_argument("--path", default="loop", choices=PATHS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="JSON path (default bench/out/decode-<device>.json)")
    parser.add_argument("--table", default=None, help="also put the table into this markdown file, in its own "
                        "marked section (leaderboards/performance.md: beside the GPU tables)")
    parser.add_argument("--_child", nargs=2, metavar=("SPEC", "CONTEXT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("chunk", "decode_tokens", "profile_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args._child:
        spec, context = args._child
        print(json.dumps(measure(spec, int(context), args.chunk, args.decode_tokens, args.warmup,
                                 args.profile_steps, args.path, args.device)))
        return 0
    try:
        contexts = [parse_context(c) for c in args.contexts.split(",") if c.strip()]
    except ValueError as e:
        parser.error(f"--contexts: {e}")
    specs = split_specs(args.models)
    if not specs or not contexts:
        parser.error("--models and --contexts must each name at least one")
    bandwidth = memory_bandwidth()
    rows = [run_one(args, spec, context) for context in contexts for spec in specs]
    lines = print_table(rows, bandwidth)
    out = Path(args.out) if args.out else ROOT / "bench" / "out" / f"decode-{args.device.split(':')[0]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"device": args.device, "path": args.path, "chunk": args.chunk, "decode_tokens": args.decode_tokens,
            "warmup": args.warmup, "profile_steps": args.profile_steps, "threads": torch.get_num_threads(),
            "read_bandwidth_bytes_per_s": bandwidth, "torch": torch.__version__, "machine": platform.platform(),
            "cpu": _cpu_name(), "cores": os.cpu_count(), "load_avg": os.getloadavg()}
    for r in rows:
        if "weight_bytes" in r:
            r["weight_read_bound_ms"] = 1000 * r["weight_bytes"] / bandwidth
    out.write_text(json.dumps({"meta": meta, "rows": rows, "table": lines}, indent=2))
    print(f"read bandwidth {bandwidth / 1e9:.1f} GB/s ({torch.get_num_threads()} threads); wrote {out}")
    if args.table:
        write_section(Path(args.table), section(meta, lines, argv if argv is not None else sys.argv[1:]))
        print(f"wrote its section of {args.table}")
    return 1 if any("error" in r for r in rows) else 0


SECTION_START, SECTION_END = "<!-- bench/decode.py: start -->", "<!-- bench/decode.py: end -->"


def section(meta: dict, lines: list[str], argv: list[str]) -> str:
    """The markdown section: what machine, how it was run, the table."""
    command = "python bench/decode.py " + " ".join(f"'{a}'" if "," in a or ";" in a else a for a in argv)
    return "\n".join([
        SECTION_START, f"## Decode on the CPU ({meta['cpu']}, {meta['cores']} cores, {meta['threads']} thread(s))", "",
        f"Generated by `{command}` (torch {meta['torch']}; load average {meta['load_avg'][0]:.1f} when it ran). "
        f"Batch 1, float32, greedy, {meta['path']} path; the context is the eval books, prefilled in chunks of "
        f"{meta['chunk']}; {meta['decode_tokens']} timed steps after {meta['warmup']}. Measured read bandwidth "
        f"{meta['read_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s; the bound is the weight bytes over it. TTT / attention "
        f"/ rest: the profiler's ms per step inside the TTT layers, the attention layers (projections included) and "
        f"everything else (MLPs, norms, LM head, Python), under the profiler's own overhead.", "",
        *lines, SECTION_END])


def write_section(path: Path, text: str) -> None:
    """Replaces this benchmark's marked section of `path` (appends it when absent); the rest stays as it was."""
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    if SECTION_START in old and SECTION_END in old:
        head, rest = old.split(SECTION_START, 1)
        new = head + text + rest.split(SECTION_END, 1)[1]
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + text + "\n"
    path.write_text(new, encoding="utf-8")


def split_specs(text: str) -> list[str]:
    """Specs separated by ',' — except that a spec's own options (after '@') also use ','; so an item that holds
    '=' and no ':' or '@' continues the spec before it. A ';' always separates."""
    specs: list[str] = []
    for part in text.replace(";", "\n").splitlines():
        for item in (i.strip() for i in part.split(",")):
            if not item:
                continue
            if specs and "=" in item and "@" not in item and ":" not in item and "@" in specs[-1]:
                specs[-1] += "," + item
            else:
                specs.append(item)
    return specs


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
