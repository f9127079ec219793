"""Hugging Face checkpoint directories on disk: the safetensors weights of a checkpoint (one file or an index of
shards), read whole, and written sharded the way transformers writes them; and a checkpoint's content hash, the
identity that evaluation runs, the trainer's monitor evidence and gate decisions share."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
MAX_SHARD_BYTES = 5 * 1024**3


def weight_files(src: Path) -> list[Path]:
    """The safetensors files of a checkpoint: a single model.safetensors or the shards its index names."""
    index = src / WEIGHTS_INDEX_NAME
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError) as e:
            raise ValueError(f"{index} is not a valid safetensors index (needs a 'weight_map'): {e}") from None
        missing = [n for n in names if not (src / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{index} names shards that are not in {src}: {missing}")
        return [src / n for n in names]
    if (src / WEIGHTS_NAME).is_file():
        return [src / WEIGHTS_NAME]
    others = sorted(p.name for p in src.glob("*.bin")) + sorted(p.name for p in src.glob("*.safetensors"))
    raise FileNotFoundError(f"{src} has no weights: expected {WEIGHTS_NAME} or {WEIGHTS_INDEX_NAME}"
                            + (f" (found {others}; re-save the model with safe_serialization)" if others else ""))


def load_weights(src: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for path in weight_files(src):
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    tensors[key] = f.get_tensor(key)
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{path} is not a readable safetensors file ({e}); the checkpoint is corrupt "
                             "or incomplete") from None
    return tensors


def save_sharded(tensors: dict[str, torch.Tensor], out: Path, max_shard_bytes: int = MAX_SHARD_BYTES) -> None:
    """Writes `tensors` into the directory `out` as model.safetensors, or as shards of at most `max_shard_bytes`
    with their index."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = t.contiguous()
        size += nbytes
    metadata = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], str(out / WEIGHTS_NAME), metadata=metadata)
        return
    weight_map = {}
    for n, shard in enumerate(shards, 1):
        name = f"model-{n:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / name), metadata=metadata)
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (out / WEIGHTS_INDEX_NAME).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map},
                                                     indent=2))


def checkpoint_files(path: Path) -> list[Path]:
    """The files a content hash covers: `path` itself, or every file under the directory except hidden ones."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def content_hash(path: Path) -> str:
    """sha256 over the names (relative to `path`, or the name of a single file) and contents of a model directory's
    files or of one file (first 16 hex digits). Reads every byte: this is the identity decisions are bound to."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint file or directory")
    base = path.parent if path.is_file() else path
    h = hashlib.sha256()
    for p in checkpoint_files(path):
        h.update(str(p.relative_to(base)).encode() + b"\0")
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]
