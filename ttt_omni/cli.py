"""`ttt-omni` command line: model conversion, training, chat. Subcommands are added by their modules."""
from __future__ import annotations

import argparse
import sys

from ttt_omni import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ttt-omni", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ttt-omni {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    from ttt_omni.convert import add_convert_command

    add_convert_command(subparsers)
    from ttt_omni.speech.chat import add_chat_command
    from ttt_omni.speech.omni_checkpoint import add_convert_options

    add_convert_options(subparsers)  # LLaMA-Omni directories: detected by their config, converted with speech parts
    add_chat_command(subparsers)
    from ttt_omni.train.cli import add_train_commands

    add_train_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
