"""A checkpoint's identity (model id, content hash), the same as the model adapters give it, so that gate
decisions, training-monitor runs and evaluation runs of one checkpoint match up by hash."""
from __future__ import annotations

import json
from pathlib import Path

from ttt_omni.resources import bundled

from .errors import ModelSpecError
from .models import TINY_CHECKPOINTS, content_hash, display_name


def checkpoint_path(checkpoint: str | Path) -> tuple[str, Path]:
    """(kind, directory) of an HF checkpoint directory or a model spec (ttt:PATH, hf:PATH, tiny, tiny-baseline)."""
    text = str(checkpoint).strip()
    if text in TINY_CHECKPOINTS:
        return ("ttt" if text == "tiny" else "hf"), bundled("checkpoints", TINY_CHECKPOINTS[text])
    kind, sep, rest = text.partition(":")
    spec = bool(sep) and kind in ("ttt", "hf")
    path = Path(rest if spec else text).expanduser()
    config = path / "config.json"
    if not config.is_file():
        raise ModelSpecError(f"checkpoint {text!r}: not a Hugging Face model directory (expected {config}), "
                             "nor a model spec ttt:PATH, hf:PATH, tiny, tiny-baseline")
    if not spec:
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelSpecError(f"checkpoint {text!r}: {config} is not valid JSON ({e})") from None
        kind = "ttt" if isinstance(data, dict) and data.get("model_type") == "ttt_llama" else "hf"
    return kind, path


def checkpoint_identity(checkpoint: str | Path) -> tuple[str, str]:
    """(model_id, model_hash) of an HF checkpoint directory, or of a model spec; the hash read from every byte."""
    kind, path = checkpoint_path(checkpoint)
    model_id = TINY_CHECKPOINTS.get(str(checkpoint).strip()) or f"{kind}:{display_name(path)}"
    return model_id, content_hash(path)
