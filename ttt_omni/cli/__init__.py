"""`ttt-omni`: convert | distill | chat | try-speech | train | monitor | sweep | units.

Each command lives in its own module and registers its subcommand; every command sets `func(args) -> int`. Bad
input (ValueError or OSError from the library, whose messages name the input and what was expected, a training
run stopped by its monitor, or a module of an extra that is not installed) is one line on stderr and exit 2;
Ctrl-C is exit 130. The CLI is the top of the dependency graph: it may use evalsuite (the curriculum's promotion
check before training), the library below may not.
"""
from __future__ import annotations

import argparse
import sys

from evalsuite.cli import add_db_option
from ttt_omni import __version__
from ttt_omni.extras import missing_extra
from ttt_omni.train.monitor import MonitorAlarm

from . import chat, convert, distill, sweep, train, try_speech, units


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ttt-omni", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ttt-omni {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    convert.register(subparsers)
    distill.register(subparsers)
    chat.register(subparsers)
    try_speech.register(subparsers)
    train.register(subparsers, add_db_option)
    sweep.register(subparsers, add_db_option)
    units.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except ModuleNotFoundError as e:
        if missing_extra(e) is None:
            raise
        print(f"ttt-omni: error: {missing_extra(e)}", file=sys.stderr)
        return 2
    except (ValueError, OSError, MonitorAlarm) as e:
        print(f"ttt-omni {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ttt-omni {args.command}: interrupted", file=sys.stderr)
        return 130
