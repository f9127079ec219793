"""`ttt-omni sweep SPEC.yaml`: one worker of a hyperparameter sweep (evalsuite.sweep; docs/sweeps.md).

Each trial trains a setting for the spec's budget and evaluates it through evalsuite; the study lives in the results
store's database. Run the same command in N shells for N workers (one trial each, `--threads` torch threads each);
after kill -9 the same command resumes the study.
"""
from __future__ import annotations

import argparse


def register(subparsers, add_db) -> None:
    p = subparsers.add_parser("sweep", help="run (or resume) a hyperparameter sweep: train and evaluate each trial")
    p.add_argument("spec", help="sweep YAML, or a bundled preset name (ablation-ttt-type, ...)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of this worker (default 1: one core)")
    p.add_argument("--max-trials", type=int, default=None, help="stop this worker after N trials (default: until "
                   "the study is settled)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_db(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from evalsuite.errors import EvalsuiteError
    from evalsuite.sweep.spec import load_spec
    from evalsuite.sweep.study import run_worker

    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    try:
        spec = load_spec(args.spec)
        state = run_worker(spec, args.db, threads=args.threads, max_trials=args.max_trials,
                           progress_bars=not args.no_progress)
    except EvalsuiteError as e:
        raise ValueError(str(e)) from None
    print(f"sweep {spec.study}: {state.settled}/{state.target} trials settled"
          + ("" if state.done else f" ({state.running} running elsewhere, {state.waiting} queued)")
          + f"; report: evalsuite sweep report {spec.study}")
    return 0
