"""Streaming unit generation: incremental decoder (this repo) vs re-running it over the whole reply at every chunk
(LLaMA-Omni's streaming). Prints a table and writes bench/out/unit_streaming-<device>.json.

    .venv/bin/python bench/unit_streaming.py [--real-geometry] [--lengths 64,128,256] [--chunk 8]

Default geometry is small (CPU-friendly); --real-geometry uses the released decoder, "(2,4096,32,11008)" with
lambda=25 on a 4096-wide LLM (use a GPU). Both ways give the same units; the table shows the decoder time per reply.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ttt_omni.models.presets import llama31_8b_config, tiny_config
from ttt_omni.speech.generator import SpeechGeneratorCTC, ctc_collapse


def rerun_all(gen: SpeechGeneratorCTC, reps: torch.Tensor, chunk: int) -> list[int]:
    """LLaMA-Omni-style: after every chunk, decode all states so far and keep the units past those already out."""
    units: list[int] = []
    for end in range(chunk, reps.shape[0] + chunk, chunk):
        units = ctc_collapse(gen.logits(reps[:end]).argmax(-1), gen.blank)
    return units


def incremental(gen: SpeechGeneratorCTC, reps: torch.Tensor, chunk: int) -> list[int]:
    stream = gen.stream()
    for start in range(0, reps.shape[0], chunk):
        stream.push(reps[start:start + chunk])
    return stream.units


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real-geometry", action="store_true")
    ap.add_argument("--lengths", default="64,128,256")
    ap.add_argument("--chunk", type=int, default=8)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    if args.real_geometry:
        llm, spec, lam = llama31_8b_config(), "(2,4096,32,11008)", 25
    else:
        llm, spec, lam = tiny_config(), "(2,256,4,512)", 25
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    gen = SpeechGeneratorCTC(llm, spec, lam, 1000).to(device, dtype).eval()
    rows = []
    with torch.no_grad():
        warm = torch.randn(2 * args.chunk, llm.hidden_size, device=device, dtype=dtype)
        incremental(gen, warm, args.chunk), rerun_all(gen, warm, args.chunk)
        for n in (int(x) for x in args.lengths.split(",")):
            reps = torch.randn(n, llm.hidden_size, device=device, dtype=dtype)
            row = {"reply_tokens": n, "chunk": args.chunk}
            for name, fn in (("incremental_s", incremental), ("rerun_all_s", rerun_all)):
                if device == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                units = fn(gen, reps, args.chunk)
                if device == "cuda":
                    torch.cuda.synchronize()
                row[name] = round(time.perf_counter() - t, 4)
                row[name.replace("_s", "_units")] = len(units)
            rows.append(row)
    print(f"device {device}, decoder {spec}, lambda {lam}")
    print(f"{'tokens':>7} {'incremental s':>14} {'re-run all s':>13} {'units':>6}")
    for r in rows:
        print(f"{r['reply_tokens']:>7} {r['incremental_s']:>14} {r['rerun_all_s']:>13} {r['incremental_units']:>6}")
    out = Path(__file__).parent / "out" / f"unit_streaming-{device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": device, "decoder": spec, "lambda": lam, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
