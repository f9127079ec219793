"""`evalsuite`: run | list | show | export | plot | migrate | lm-eval | pairs | raters | gate | dashboard | leaderboard
| sweep.

Each command group lives in its own module and registers its subcommands; every command sets `func(args) -> int`.
Bad input (an `EvalsuiteError`, or a module of an extra that is not installed) is one line on stderr and exit 2, any
URL in it without its password; Ctrl-C is exit 130.
"""
from __future__ import annotations

import argparse
import sys

from ttt_omni.extras import missing_extra

from ..database import mask_passwords
from ..errors import EvalsuiteError
from . import humaneval, results, review, sweep


def add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help="results store: SQLAlchemy URL or SQLite file (default: "
                        "$EVALSUITE_DB or results/evalsuite.db)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evalsuite", description="Evaluate TTT-Llama models; results go to a store.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    results.register(sub, add_db_option)
    sub.add_parser("lm-eval", add_help=False, help="lm-eval's own CLI (all its options) with the ttt-omni model "
                   "registered: evalsuite lm-eval --model ttt-omni --model_args pretrained=PATH --tasks ...")
    humaneval.register(sub, add_db_option)
    review.register(sub, add_db_option)
    sweep.register(sub, add_db_option)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["lm-eval"]:  # everything after it belongs to lm-eval's parser
            from ..lm_eval_adapter import main as lm_eval_main

            return lm_eval_main(argv[1:])
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return args.func(args)
    except EvalsuiteError as e:
        print(f"evalsuite: error: {mask_passwords(str(e))}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        if missing_extra(e) is None:
            raise
        print(f"evalsuite: error: {missing_extra(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("evalsuite: interrupted; finished units are stored and the same command resumes", file=sys.stderr)
        return 130
