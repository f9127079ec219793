"""Distil SmolLM2's memory beside the window (`smollm2-ttt-mem`), resumable: run the same command again after any
interruption and it continues (ttt_omni.distill.memory).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/distill_memory.py WORK [--out DIR --delta DIR] [--steps N]
"""
from __future__ import annotations

import argparse
import signal
import sys

from ttt_omni.distill import TransferSettings
from ttt_omni.distill.memory import MemoryDistillConfig, distill_memory
from ttt_omni.smollm2 import MEMORY_LAYERS, MEMORY_SINKS, MEMORY_WINDOW, smollm2_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("work", help="work directory (shards, checkpoints, report); keep it to resume")
    p.add_argument("--cache", default=None, help="where SmolLM2 is built (default: $TTT_OMNI_CACHE or ~/.cache/ttt-omni)")
    p.add_argument("--out", default=None, help="write the trained hybrid here")
    p.add_argument("--delta", default=None, help="with --out: write its delta over SmolLM2 here (checkpoints/)")
    p.add_argument("--seq-len", type=int, default=4096)
    p.add_argument("--train-sequences", type=int, default=8)
    p.add_argument("--validation-sequences", type=int, default=1)
    p.add_argument("--steps", type=int, default=200, help="transfer steps (all branches on every step)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--end-to-end-steps", type=int, default=0,
                   help="then train branches + gates end to end (LM + KL to full-attention SmolLM2), this many steps")
    p.add_argument("--end-to-end-context", type=int, default=4096)
    args = p.parse_args(argv)
    if args.delta and not args.out:
        print("distill_memory: error: --delta needs --out", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still records the seconds it spent
    from evalsuite.models import cache_dir  # the same cache the smollm2 model specs use
    src = smollm2_dir(args.cache or cache_dir())
    config = MemoryDistillConfig(layers=MEMORY_LAYERS, window=MEMORY_WINDOW, sinks=MEMORY_SINKS, seq_len=args.seq_len,
                                 train_sequences=args.train_sequences, validation_sequences=args.validation_sequences,
                                 end_to_end_steps=args.end_to_end_steps,
                                 end_to_end_context=args.end_to_end_context,
                                 transfer=TransferSettings(schedule="joint", steps=args.steps, lr=args.lr, warmup=5,
                                                           save_every=5, validate_every=25))
    report = distill_memory(src, args.work, config, out=args.out, delta=args.delta)
    print({k: report[k] for k in ("gates", "seconds")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
