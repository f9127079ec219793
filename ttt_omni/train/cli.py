"""`ttt-omni train` and `ttt-omni monitor plot`."""
from __future__ import annotations

import argparse
import sys

from .config import TrainConfig


def add_train_commands(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a TTT-Llama (or its attention baseline), or a LLaMA-Omni(-layout) "
                              "speech model, from a YAML config")
    p.add_argument("config", help="training YAML (see configs/)")
    p.add_argument("--stage", type=int, default=None, help="curriculum stage of the config to run")
    p.add_argument("--from", dest="from_ckpt", default=None, help="start from this HF checkpoint directory")
    p.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    p.add_argument("--force", action="store_true",
                   help="start stage N without a passing gate decision for --from at stage N-1 (recorded as forced)")
    p.add_argument("--reason", default="", help="why --force (recorded with the forced decision)")
    p.add_argument("--db", default=None, help="results store holding the gate decisions (default: $EVALSUITE_DB "
                   "or results/evalsuite.db)")
    p.set_defaults(func=_train)

    m = subparsers.add_parser("monitor", help="TTT monitor tools")
    msub = m.add_subparsers(dest="monitor_command", metavar="ACTION", required=True)
    plot = msub.add_parser("plot", help="plot RUN/monitor.csv to RUN/monitor.png")
    plot.add_argument("run", help="training output directory (or a monitor CSV)")
    plot.set_defaults(func=_plot)


def _train(args: argparse.Namespace) -> int:
    from .curriculum import check_stage  # its StageRefused is a ValueError: one line, exit 2
    from .monitor import MonitorAlarm
    from .trainer import Trainer
    try:
        cfg = TrainConfig.from_yaml(args.config, stage=args.stage)
        print(check_stage(args.config, args.stage, args.from_ckpt, force=args.force, reason=args.reason, db=args.db))
        if args.from_ckpt:
            cfg.model_from, cfg.preset = args.from_ckpt, None
        trainer = Trainer(cfg)  # a LLaMA-Omni checkpoint trains on speech conversations, any other on text
        if args.resume and trainer.resume():
            print(f"resumed at step {trainer.step}")
        result = trainer.train()
    except (ValueError, FileNotFoundError, MonitorAlarm) as e:
        print(f"ttt-omni train: {e}", file=sys.stderr)
        return 2
    loss = f", loss {result['loss']:.4f}" if "loss" in result else " (no steps left to run)"
    print(f"done: step {result['step']}{loss}; model at {result['final']}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .monitor import plot
    path = Path(args.run)
    try:
        png = plot(path if path.suffix == ".csv" else path / "monitor.csv")
    except FileNotFoundError as e:
        print(f"ttt-omni monitor plot: {e}", file=sys.stderr)
        return 2
    print(f"wrote {png}")
    return 0
