"""Retrieval heatmaps (depth x context length, one panel per run, accuracy and n in every cell) as a PNG.

    .venv/bin/python scripts/plot_retrieval.py RUN [RUN ...] [--metric rank_accuracy] [--db URL] [--output FILE]
    .venv/bin/python scripts/plot_retrieval.py --task passkey [...]     # the latest run of each model

RUN: run ids of a retrieval task (passkey, niah, variable_tracking, book_facts) in the results store.
"""
from __future__ import annotations

import argparse
import sys

from evalsuite.errors import EvalsuiteError
from evalsuite.retrieval.heatmap import latest_runs, plot_heatmaps
from evalsuite.store import Store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_ids", type=int, nargs="*", metavar="RUN")
    parser.add_argument("--task", default=None, help="instead of RUNs: the latest finished run of this task per model")
    parser.add_argument("--metric", default="rank_accuracy", help="rank_accuracy (default) or generate_accuracy")
    parser.add_argument("--db", default=None, help="results store URL (default: $EVALSUITE_DB or results/evalsuite.db)")
    parser.add_argument("--output", default=None, help="PNG to write (default results/retrieval-RUNS-METRIC.png)")
    args = parser.parse_args(argv)
    if bool(args.run_ids) == bool(args.task):
        parser.error("give either run ids or --task")
    store = Store(args.db)
    try:
        runs = args.run_ids or latest_runs(store, args.task)
        out = args.output or f"results/retrieval-{'-'.join(map(str, runs))}-{args.metric}.png"
        print(plot_heatmaps(store, runs, args.metric, out))
    except EvalsuiteError as e:
        print(f"plot_retrieval: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
