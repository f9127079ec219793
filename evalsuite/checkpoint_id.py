"""A checkpoint's identity (model id, content hash), the same as the model adapters give it, so that gate
decisions, training-monitor runs and evaluation runs of one checkpoint match up by hash."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import ModelSpecError
from .models import TINY_CHECKPOINTS, content_hash, display_name, load_model


def checkpoint_identity(checkpoint: str | Path) -> tuple[str, str]:
    """(model_id, model_hash) of an HF checkpoint directory, or of a model spec (ttt:PATH, hf:PATH, tiny,
    tiny-baseline)."""
    text = str(checkpoint).strip()
    if text in TINY_CHECKPOINTS:
        loaded = load_model(text)  # the shipped directory's hash, or the seeded random model's state hash
        return loaded.model_id, loaded.model_hash
    kind, sep, rest = text.partition(":")
    path = Path(rest if sep and kind in ("ttt", "hf") else text).expanduser()
    config = path / "config.json"
    if not config.is_file():
        raise ModelSpecError(f"checkpoint {text!r}: not a Hugging Face model directory (expected {config}), "
                             "nor a model spec ttt:PATH, hf:PATH, tiny, tiny-baseline")
    if not (sep and kind in ("ttt", "hf")):
        kind = "ttt" if json.loads(config.read_text()).get("model_type") == "ttt_llama" else "hf"
    return f"{kind}:{display_name(path)}", content_hash(path)
