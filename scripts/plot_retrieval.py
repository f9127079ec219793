"""Retrieval heatmaps (depth x context length, one panel per run, accuracy and n in every cell) as a PNG.

    .venv/bin/python scripts/plot_retrieval.py RUN [RUN ...] [--metric rank_accuracy] [--db URL] [--output FILE]

RUN: run ids of a retrieval task (passkey, niah, variable_tracking, book_facts) in the results store.
"""
from __future__ import annotations

import argparse
import sys

from evalsuite.errors import EvalsuiteError
from evalsuite.retrieval.heatmap import plot_heatmaps
from evalsuite.store import Store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_ids", type=int, nargs="+", metavar="RUN")
    parser.add_argument("--metric", default="rank_accuracy", help="rank_accuracy (default) or generate_accuracy")
    parser.add_argument("--db", default=None, help="results store URL (default: $EVALSUITE_DB or results/evalsuite.db)")
    parser.add_argument("--output", default=None, help="PNG to write (default results/retrieval-RUNS-METRIC.png)")
    args = parser.parse_args(argv)
    out = args.output or f"results/retrieval-{'-'.join(map(str, args.run_ids))}-{args.metric}.png"
    try:
        print(plot_heatmaps(Store(args.db), args.run_ids, args.metric, out))
    except EvalsuiteError as e:
        print(f"plot_retrieval: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
