"""`ttt-omni train` and `ttt-omni monitor plot`.

A curriculum stage N > 1 starts only from a checkpoint the gate promoted at stage N-1: that check lives in
evalsuite (evalsuite.promotion) and is made here, before the trainer starts. A config with a curriculum (`stages`)
is trained one stage at a time: without --stage it is refused, so that no run (above all one started --from a
checkpoint) slips past the gate; the stage's gate rules are checked before any training.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from evalsuite.gate import stage_rules
from evalsuite.promotion import check_stage
from ttt_omni.train.config import TrainConfig
from ttt_omni.train.monitor import plot
from ttt_omni.train.trainer import Trainer


def register(subparsers, add_db) -> None:
    p = subparsers.add_parser("train", help="train a TTT-Llama (or its attention baseline), or a LLaMA-Omni(-layout) "
                              "speech model, from a YAML config")
    p.add_argument("config", help="training YAML, or the name of a bundled config (tiny-ttt, tiny-curriculum, ...)")
    p.add_argument("--stage", type=int, default=None, help="curriculum stage of the config to run")
    p.add_argument("--from", dest="from_ckpt", default=None, help="start from this HF checkpoint directory")
    p.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    p.add_argument("--force", action="store_true",
                   help="start stage N without a passing gate decision for --from at stage N-1 (recorded as forced)")
    p.add_argument("--reason", default="", help="why --force (recorded with the forced decision)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="OPTION=VALUE",
                   help="override a config option (YAML value), e.g. --set steps=20 --set output_dir=runs/try")
    add_db(p)
    p.set_defaults(func=run)

    m = subparsers.add_parser("monitor", help="TTT monitor tools")
    msub = m.add_subparsers(dest="monitor_command", metavar="ACTION", required=True)
    show = msub.add_parser("plot", help="plot RUN/monitor.csv to RUN/monitor.png")
    show.add_argument("run", help="training output directory (or a monitor CSV)")
    show.set_defaults(func=run_plot)


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected OPTION=VALUE, e.g. steps=20")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ValueError(f"--set {item!r}: the value is not valid YAML ({e})") from None
    return out


def run(args: argparse.Namespace) -> int:
    cfg = TrainConfig.from_yaml(args.config, stage=args.stage, overrides=parse_overrides(args.overrides))
    if cfg.stages and args.stage is None:
        raise ValueError(f"{args.config} is a curriculum (stages {[s['stage'] for s in cfg.stages]}): choose the stage "
                         "with --stage N (stage N > 1 also needs --from CHECKPOINT, the stage N-1 checkpoint the gate "
                         "promoted)")
    if args.stage is not None:
        stage_rules(args.config, args.stage)  # a bad gate rule is found now, not after the training
    if args.stage is not None and args.stage > 1:
        if not args.from_ckpt:
            raise ValueError(f"--stage {args.stage} needs --from CHECKPOINT: the stage-{args.stage - 1} checkpoint "
                             "that the gate promoted")
        print(check_stage(args.config, args.stage, args.from_ckpt, force=args.force, reason=args.reason, db=args.db))
    if args.from_ckpt:
        cfg.model_from, cfg.preset = args.from_ckpt, None
    trainer = Trainer(cfg)  # a LLaMA-Omni checkpoint trains on speech conversations, any other on text
    if args.resume and trainer.resume():
        print(f"resumed at step {trainer.step}")
    result = trainer.train()
    loss = f", loss {result['loss']:.4f}" if "loss" in result else " (no steps left to run)"
    print(f"done: step {result['step']}{loss}; model at {result['final']}")
    return 0


def run_plot(args: argparse.Namespace) -> int:
    path = Path(args.run)
    print(f"wrote {plot(path if path.suffix == '.csv' else path / 'monitor.csv')}")
    return 0
