"""`ttt-omni distill SRC OUT`: convert a pretrained Llama into its TTT hybrid and teach the TTT layers the job of the
attention they replace (attention transfer on the frozen model's activations, then optionally a short end-to-end
fine-tune of the TTT layers). Calibration text is the bundled train books unless --corpus is given. Everything is
resumable: run the same command again after an interruption (the work directory, default OUT.work, holds the
conversion, the activation shards and the checkpoints)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ttt_omni.delta import save_delta
from ttt_omni.distill import DistillConfig, TransferSettings, distill_checkpoint
from ttt_omni.distill.pipeline import DISTILL_REPORT_NAME

from .convert import parse_layers


def register(subparsers) -> None:
    p = subparsers.add_parser("distill", help="convert a Llama checkpoint to a TTT hybrid with attention transfer",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="transformers Llama checkpoint directory (config.json + safetensors + tokenizer)")
    p.add_argument("output", help="new directory for the distilled hybrid checkpoint")
    g = p.add_argument_group("conversion (as ttt-omni convert)")
    g.add_argument("--ttt-layers", type=parse_layers, default=None, help="layers to replace (default: the top 8)")
    g.add_argument("--ttt-type", choices=["linear", "mlp"], default="linear")
    g.add_argument("--mini-batch-size", type=int, default=64)
    g.add_argument("--ttt-base-lr", type=float, default=1.0)
    g.add_argument("--attention-window", type=int, default=None,
                   help="bounded-memory mode: sliding-window attention in the kept layers")
    g.add_argument("--attention-sinks", type=int, default=0, help="with --attention-window: first tokens kept")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("calibration data")
    g.add_argument("--corpus", default=None, help="a .txt file or a folder of .txt files (default: the train books)")
    g.add_argument("--seq-len", type=int, default=2048, help="tokens per calibration sequence")
    g.add_argument("--train-sequences", type=int, default=64)
    g.add_argument("--validation-sequences", type=int, default=4)
    g.add_argument("--sequences-per-shard", type=int, default=4)
    g.add_argument("--teacher-dtype", choices=["float32", "bfloat16"], default="float32")
    g = p.add_argument_group("attention transfer")
    g.add_argument("--steps", type=int, default=400, help="optimizer steps per TTT layer")
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--inner-lr", type=float, default=None, help="lr of the float32 inner parameters (default: --lr)")
    g.add_argument("--cosine-weight", type=float, default=0.0, help="weight of 1 - cosine beside the relative MSE")
    g.add_argument("--batch-sequences", type=int, default=1, help="sequences per step")
    g.add_argument("--schedule", choices=["layerwise", "joint"], default="layerwise",
                   help="one layer after the other, or all layers on every step")
    g = p.add_argument_group("end-to-end fine-tune of the TTT layers (the trainer; 0 steps = none)")
    g.add_argument("--finetune-steps", type=int, default=0)
    g.add_argument("--finetune-context", type=int, default=1024)
    g.add_argument("--finetune-batch-size", type=int, default=1)
    g.add_argument("--finetune-lr", type=float, default=1e-4)
    g.add_argument("--finetune-kl-weight", type=float, default=0.0,
                   help="> 0: add this x KL(source model || hybrid) of the next-token distributions to the LM loss")
    g.add_argument("--finetune-bf16", action="store_true", help="bf16 autocast (TTT inner state stays float32)")
    p.add_argument("--work-dir", default=None, help="resumable intermediate results (default: OUTPUT.work)")
    p.add_argument("--delta", default=None, metavar="DIR",
                   help="also write the TTT layers alone as a delta over SOURCE (what checkpoints/ ships)")
    p.set_defaults(func=run)


def run(args) -> int:
    transfer = TransferSettings(steps=args.steps, lr=args.lr, inner_lr=args.inner_lr, cosine_weight=args.cosine_weight,
                                batch_sequences=args.batch_sequences, schedule=args.schedule, seed=args.seed)
    config = DistillConfig(ttt_layers=args.ttt_layers, ttt_type=args.ttt_type, mini_batch_size=args.mini_batch_size,
                           ttt_base_lr=args.ttt_base_lr, attention_window=args.attention_window,
                           attention_sinks=args.attention_sinks, seed=args.seed, corpus=args.corpus,
                           seq_len=args.seq_len, train_sequences=args.train_sequences,
                           validation_sequences=args.validation_sequences,
                           sequences_per_shard=args.sequences_per_shard, teacher_dtype=args.teacher_dtype,
                           transfer=transfer, finetune_steps=args.finetune_steps,
                           finetune_context=args.finetune_context, finetune_batch_size=args.finetune_batch_size,
                           finetune_lr=args.finetune_lr, finetune_kl_weight=args.finetune_kl_weight,
                           finetune_bf16=args.finetune_bf16, work_dir=args.work_dir)
    report = distill_checkpoint(args.source, args.output, config)
    for layer, row in report["transfer"]["layers"].items():
        print(f"layer {layer}: validation relative MSE {row.get('before_val_rel_mse', float('nan')):.3f} -> "
              f"{row.get('after_val_rel_mse', float('nan')):.3f}")
    print(f"distilled {args.source} -> {args.output} ({report['calibration']['tokens_collected']} calibration "
          f"tokens); report: {Path(args.output) / DISTILL_REPORT_NAME}")
    if args.delta:
        manifest = save_delta(args.output, args.source, args.delta)
        print(f"delta: {args.delta} ({manifest['bytes'] / 1e6:.1f} MB, {manifest['tensors']} tensors)")
    return 0
