"""Retrieval results as a markdown table: accuracy per context length and overall with its 95% interval, chance and
each run's wall time, one row per run.

    .venv/bin/python scripts/retrieval_table.py [RUN ...] [--metric rank_accuracy] [--by distance] [--db URL]

Without RUNs: the latest finished run of every retrieval task (passkey, niah, variable_tracking, book_facts and
their variants) per model in the store.
"""
from __future__ import annotations

import argparse
import sys

from evalsuite.errors import EvalsuiteError
from evalsuite.retrieval.table import distance_table, markdown_table, retrieval_runs
from evalsuite.store import Store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_ids", type=int, nargs="*", metavar="RUN")
    parser.add_argument("--metric", default="rank_accuracy", help="rank_accuracy (default) or generate_accuracy")
    parser.add_argument("--by", choices=["length", "distance"], default="length",
                        help="columns: context lengths (default) or needle distances (beyond-window ones marked)")
    parser.add_argument("--db", default=None, help="results store URL (default: $EVALSUITE_DB or results/evalsuite.db)")
    args = parser.parse_args(argv)
    store = Store(args.db)
    try:
        table = distance_table if args.by == "distance" else markdown_table
        print(table(store, args.run_ids or retrieval_runs(store), args.metric))
    except EvalsuiteError as e:
        print(f"retrieval_table: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
