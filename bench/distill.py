"""Attention-transfer throughput and peak memory: the two phases of `ttt-omni distill` on random weights.

    python bench/distill.py                      # CPU: SmolLM2-135M geometry, 2 x 2048-token sequences, 20 steps
    python bench/distill.py --device cuda        # GPU: Llama-3.1-8B geometry (bf16 teacher), 200 steps per layer

collect:  the teacher's forward up to the last replaced layer, capturing each replaced layer's attention input and
          output and writing them as shards (ActivationStore.collect): calibration tokens per second.
transfer: training the TTT layers on those shards (LayerTransfer: forward, backward, AdamW, the monitor, the
          checkpoints): tokens per second summed over the layers trained.
Each phase runs in its own subprocess, so its peak memory is its own (weights included): on CUDA
max_memory_allocated, on CPU the peak resident memory. Prints a table and writes JSON (default
bench/out/distill.json). Use torch.set_num_threads through --threads on a shared CPU.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GEOMETRIES = {
    # SmolLM2-135M (what docs/conversion.md distils on the CPU): 30 layers, hidden 576, GQA 9/3
    "smollm2": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, head_dim=64, max_position_embeddings=8192,
                    rope_parameters={"rope_type": "default", "rope_theta": 100000.0}, tie_word_embeddings=True),
    "llama-3.1-8b": None,  # ttt_omni.models.presets.llama31_8b_config
}


def geometry_config(geometry: str, ttt_layers: list[int]):
    from ttt_omni.models.presets import llama31_8b_config, tiny_config

    fields = GEOMETRIES[geometry]
    return llama31_8b_config(ttt_layers=ttt_layers) if fields is None else tiny_config(**fields, ttt_layers=ttt_layers)


def _peak_mb(device: str) -> float:
    """The process's peak: CUDA memory allocated, or resident memory on the CPU (weights included)."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase(a, work: Path) -> dict:
    from ttt_omni.distill import ActivationStore, LayerTransfer, StoreSettings, TransferSettings
    from ttt_omni.models import TTTLlamaForCausalLM
    from ttt_omni.models.modeling_ttt_llama import build_ttt_layer

    torch.manual_seed(0)
    layers = [int(i) for i in a.layers.split(",")]
    settings = StoreSettings(source="random", layers=layers, seq_len=a.seq_len, sequences_per_shard=1,
                             train_sequences=a.sequences, validation_sequences=1, attention_window=None,
                             attention_sinks=0, corpus=None, seed=0)
    store = ActivationStore(work / "activations", settings)
    if a.phase == "collect":
        config = geometry_config(a.geometry, [])
        with torch.device(a.device):
            teacher = TTTLlamaForCausalLM(config).to(getattr(torch, a.teacher_dtype)).eval().requires_grad_(False)
        ids = torch.randint(0, config.vocab_size, (a.sequences + 1, a.seq_len))
        started = time.perf_counter()
        store.collect(teacher, ids[:-1], ids[-1:])
        if a.device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        tokens = (a.sequences + 1) * a.seq_len
        return {"phase": "collect", "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
                "peak_mem_mb": _peak_mb(a.device), "layers": len(layers)}
    config = geometry_config(a.geometry, layers)
    ttt = {i: build_ttt_layer(config).to(a.device) for i in layers}
    s = TransferSettings(steps=a.steps, save_every=max(1, a.steps // 2), monitor_every=max(1, a.steps // 4),
                         validate_every=a.steps + 1, schedule="joint")
    started = time.perf_counter()
    LayerTransfer(ttt, store, work / "transfer", s).run()
    if a.device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    tokens = a.steps * a.seq_len * len(layers)
    return {"phase": "transfer", "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "peak_mem_mb": _peak_mb(a.device), "layers": len(layers)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--geometry", default=None, choices=sorted(GEOMETRIES),
                   help="smollm2 on CPU, llama-3.1-8b on GPU by default")
    p.add_argument("--layers", default=None, help="replaced layers (default: the top 6 of smollm2, top 8 of 8B)")
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--sequences", type=int, default=None, help="calibration sequences (default 2 CPU, 16 GPU)")
    p.add_argument("--steps", type=int, default=None, help="transfer steps (default 20 CPU, 200 GPU)")
    p.add_argument("--teacher-dtype", default=None, help="float32 on CPU, bfloat16 on GPU by default")
    p.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    p.add_argument("--out", default=str(ROOT / "bench" / "out" / "distill.json"))
    p.add_argument("--phase", default=None, help=argparse.SUPPRESS)  # child mode
    p.add_argument("--work", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    gpu = a.device == "cuda"
    a.geometry = a.geometry or ("llama-3.1-8b" if gpu else "smollm2")
    a.layers = a.layers or ("24,25,26,27,28,29,30,31" if a.geometry == "llama-3.1-8b" else "24,25,26,27,28,29")
    a.sequences = a.sequences or (16 if gpu else 2)
    a.steps = a.steps or (200 if gpu else 20)
    a.teacher_dtype = a.teacher_dtype or ("bfloat16" if gpu else "float32")
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.phase:
        print(json.dumps(phase(a, Path(a.work))))
        return 0

    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name in ("collect", "transfer"):
            cmd = [sys.executable, __file__, "--phase", name, "--work", work, "--device", a.device, "--geometry",
                   a.geometry, "--layers", a.layers, "--seq-len", str(a.seq_len), "--sequences", str(a.sequences),
                   "--steps", str(a.steps), "--teacher-dtype", a.teacher_dtype]
            cmd += ["--threads", str(a.threads)] if a.threads else []
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                rows.append({"phase": name, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]})
            else:
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{name:>9}  " + (f"{r['tokens_per_s']:10.0f} tok/s {r['peak_mem_mb']:10.1f} MB" if "seconds" in r
                                    else r["error"]), flush=True)
    device_name = torch.cuda.get_device_name() if gpu else platform.processor() or platform.machine()
    result = {"device": device_name, "geometry": a.geometry, "layers": a.layers, "seq_len": a.seq_len,
              "sequences": a.sequences, "steps": a.steps, "teacher_dtype": a.teacher_dtype,
              "threads": a.threads or torch.get_num_threads(), "torch": torch.__version__, "rows": rows}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\n{a.geometry} geometry (random weights), TTT layers {a.layers}, {a.seq_len}-token sequences, teacher "
          f"{a.teacher_dtype}, {result['threads']} threads, {device_name}")
    print("| phase | tokens | seconds | tokens/s | peak MB |\n|---|---|---|---|---|")
    for r in rows:
        if "seconds" not in r:
            print(f"| {r['phase']} | failed: {r['error']} | | | |")
            continue
        print(f"| {r['phase']} | {r['tokens']} | {r['seconds']:.1f} | {r['tokens_per_s']:.0f} | {r['peak_mem_mb']:.0f} |")
    print(f"\nJSON: {out}")
    return 0 if all("seconds" in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
