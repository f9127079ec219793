"""What a model's cache holds after reading N tokens: the attention KV and the TTT states, in MB, per length.

    .venv/bin/python scripts/cache_report.py SPEC [--lengths 1k,2k,4k] [--chunk 512]

SPEC is any evalsuite model spec (e.g. smollm2-ttt-mem-init, "smollm2@window=1024,sinks=4"); the tokens are the
first eval book's, read in chunks through the model's own cache (a TTT-Llama model; a plain `hf:` Llama has none).
"""
from __future__ import annotations

import argparse
import sys

import torch

from evalsuite.corpus import bundled_books
from evalsuite.errors import EvalsuiteError
from evalsuite.models import load_model
from evalsuite.task import parse_length
from ttt_omni.hf_compat import cache_kwargs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("spec")
    p.add_argument("--lengths", default="1k,2k,4k")
    p.add_argument("--chunk", type=int, default=512)
    args = p.parse_args(argv)
    try:
        lengths = [parse_length(x, "--lengths") for x in args.lengths.split(",")]
        loaded = load_model(args.spec)
    except (EvalsuiteError, ValueError) as e:
        print(f"cache_report: {e}", file=sys.stderr)
        return 2
    if not hasattr(loaded.model, "make_cache"):
        print(f"cache_report: {args.spec} is not a TTT-Llama model (no TTTHybridCache); add @window=N", file=sys.stderr)
        return 2
    ids = loaded.tokenizer(bundled_books("eval")[0].read(), verbose=False)["input_ids"][: max(lengths)]
    cache, done = loaded.model.make_cache(), 0
    print("| tokens | KV MB | TTT MB | total MB |\n| --- | --- | --- | --- |")
    with torch.no_grad():
        for length in lengths:
            while done < min(length, len(ids)):
                step = ids[done:min(done + args.chunk, length)]
                loaded.model(torch.tensor([step]), **cache_kwargs(cache))
                done += len(step)
            size = cache.nbytes()
            print(f"| {done} | {size['kv'] / 1e6:.1f} | {size['ttt'] / 1e6:.1f} | {size['total'] / 1e6:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
