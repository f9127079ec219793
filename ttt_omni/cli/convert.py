"""`ttt-omni convert SRC OUT`: a Llama or LLaMA-Omni checkpoint directory -> its TTT hybrid (detected by the
source's config: a LLaMA-Omni directory keeps its speech encoder, projector and generator)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ttt_omni.convert import REPORT_NAME, convert_checkpoint
from ttt_omni.speech.omni_checkpoint import convert_omni_checkpoint, is_omni_checkpoint


def parse_layers(text: str) -> list[int]:
    """"24-31" or "20,22,24-27" -> sorted layer indices."""
    layers: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            layers.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ttt-layers {text!r}: expected indices like '24-31' or '20,22,24-27'")
    return sorted(layers)


def register(subparsers) -> None:
    p = subparsers.add_parser("convert", help="Llama(-Omni) checkpoint directory -> TTT-Llama hybrid checkpoint",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="transformers checkpoint directory (config.json + safetensors)")
    p.add_argument("output", help="new directory for the hybrid checkpoint")
    p.add_argument("--ttt-layers", type=parse_layers, default=None,
                   help="layers that get a TTT layer (default: the top 8)")
    p.add_argument("--ttt-type", choices=["linear", "mlp"], default="linear")
    p.add_argument("--ttt-mode", choices=["replace", "beside"], default="replace",
                   help="replace: TTT takes the attention's place; beside: the attention stays and a TTT branch "
                        "runs beside it, y = attn(x) + g * ttt(x), gate g starting at 0")
    p.add_argument("--mini-batch-size", type=int, default=64)
    p.add_argument("--ttt-base-lr", type=float, default=1.0)
    p.add_argument("--attention-window", type=int, default=None,
                   help="sliding-window attention in the kept layers (bounded-memory mode)")
    p.add_argument("--attention-sinks", type=int, default=0,
                   help="with --attention-window: the first N tokens stay visible besides the window (StreamingLLM)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inner models' random initial weights")
    p.add_argument("--init-std", type=float, default=0.02, help="std of the inner models' initial weights")
    p.add_argument("--speech-encoder", default=None,
                   help="LLaMA-Omni sources: Whisper encoder (.pt such as large-v3.pt, or a Whisper directory) when "
                        "the checkpoint's `speech_encoder` path does not resolve")
    p.set_defaults(func=run)


def run(args) -> int:
    options = dict(ttt_layers=args.ttt_layers, ttt_type=args.ttt_type, mini_batch_size=args.mini_batch_size,
                   ttt_base_lr=args.ttt_base_lr, attention_window=args.attention_window,
                   attention_sinks=args.attention_sinks, seed=args.seed,
                   init_std=args.init_std)
    if args.ttt_mode != "replace":
        options["ttt_mode"] = args.ttt_mode
    if is_omni_checkpoint(args.source):
        report = convert_omni_checkpoint(args.source, args.output, speech_encoder=args.speech_encoder, **options)
        print(report.summary() + " (LLaMA-Omni: speech encoder, projector and generator kept)")
    elif args.speech_encoder is not None:
        print(f"ttt-omni: error: --speech-encoder is only for LLaMA-Omni checkpoints; {args.source} is not one",
              file=sys.stderr)
        return 2
    else:
        print(convert_checkpoint(args.source, args.output, **options).summary())
    print(f"report: {Path(args.output) / REPORT_NAME}")
    return 0
