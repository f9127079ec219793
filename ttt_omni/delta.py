"""A TTT conversion shipped as a delta over its base model: the hybrid's config and its TTT layers' tensors only
(the q/k/v/o projections in bf16, everything else of the TTT layers, the inner model's parameters included, in
float32). Every other tensor comes from the base checkpoint, which must be the one the delta was made from: the
hash of its weights is recorded in the delta and checked when the model is rebuilt.

    save_delta(hybrid_dir, base_dir, out)   # refuses a hybrid whose other tensors differ from the base's
    model = load_delta(base_dir, out)       # a TTTLlamaForCausalLM
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ttt_omni.atomic import replacing_dir
from ttt_omni.checkpoint_files import load_weights, weight_files
from ttt_omni.models import TTTLlamaConfig, TTTLlamaForCausalLM

DELTA_WEIGHTS = "ttt_layers.safetensors"
DELTA_MANIFEST = "delta.json"
PROJECTIONS = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight")


def weights_digest(checkpoint: str | Path) -> str:
    """sha256 over a checkpoint's safetensors files (names and contents; first 16 hex digits)."""
    h = hashlib.sha256()
    for path in weight_files(Path(checkpoint)):
        h.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def _ttt_prefixes(config: TTTLlamaConfig) -> tuple[str, ...]:
    gate = ("ttt_gate",) if config.ttt_mode == "beside" else ()
    return tuple(f"model.layers.{i}.self_attn.{name}" for i in config.ttt_layers for name in ("ttt.", *gate))


def _replaced(config: TTTLlamaConfig) -> tuple[str, ...]:
    """Base tensors the hybrid does not take from the base: the replaced attention, or in beside mode nothing."""
    if config.ttt_mode == "beside":
        return _ttt_prefixes(config)
    return tuple(f"model.layers.{i}.self_attn." for i in config.ttt_layers)


def delta_tensors(weights: dict[str, torch.Tensor], config: TTTLlamaConfig) -> dict[str, torch.Tensor]:
    """The TTT layers' tensors of a hybrid's weights, in the delta's dtypes."""
    prefixes = _ttt_prefixes(config)
    return {k: (v.to(torch.bfloat16) if k.endswith(PROJECTIONS) else v.float()).contiguous()
            for k, v in weights.items() if k.startswith(prefixes)}


def save_delta(hybrid_dir: str | Path, base_dir: str | Path, out: str | Path) -> dict:
    """Writes the delta of the hybrid checkpoint `hybrid_dir` over `base_dir` into the new directory `out`;
    returns its manifest."""
    hybrid_dir, base_dir = Path(hybrid_dir), Path(base_dir)
    config = TTTLlamaConfig.from_pretrained(hybrid_dir)
    hybrid, base = load_weights(hybrid_dir), load_weights(base_dir)
    ttt = delta_tensors(hybrid, config)
    if not ttt:
        raise ValueError(f"{hybrid_dir} has no TTT layer tensors (ttt_layers={config.ttt_layers})")
    differ = [k for k, v in hybrid.items() if not k.startswith(_replaced(config))
              and (k not in base or base[k].shape != v.shape or not torch.equal(base[k].to(v.dtype), v))]
    if differ:
        raise ValueError(f"{hybrid_dir} differs from the base {base_dir} outside its TTT layers ({differ[:5]}); a "
                         "delta holds only the TTT layers, so it would not rebuild this model")
    manifest = {"base_weights_sha256_16": weights_digest(base_dir), "ttt_layers": list(config.ttt_layers),
                "ttt_type": config.ttt_type, "ttt_mode": config.ttt_mode, "attention_window": config.attention_window,
                "attention_sinks": config.attention_sinks, "tensors": len(ttt),
                "bytes": sum(t.numel() * t.element_size() for t in ttt.values()),
                "dtypes": {"projections": "bfloat16", "other": "float32"}}
    with replacing_dir(out, overwrite=False) as tmp:
        config.save_pretrained(tmp)
        save_file(ttt, str(tmp / DELTA_WEIGHTS), metadata={"format": "pt"})
        (tmp / DELTA_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_delta(base_dir: str | Path, delta_dir: str | Path, dtype: torch.dtype | None = None,
               check_base: bool = True) -> TTTLlamaForCausalLM:
    """The hybrid rebuilt from the base checkpoint and the delta (eval mode; `dtype` None keeps the base's)."""
    base_dir, delta_dir = Path(base_dir), Path(delta_dir)
    manifest_path = delta_dir / DELTA_MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{delta_dir} is not a TTT delta (no {DELTA_MANIFEST}); save_delta writes one")
    manifest = json.loads(manifest_path.read_text())
    if check_base:
        found = weights_digest(base_dir)
        if found != manifest["base_weights_sha256_16"]:
            raise ValueError(f"{base_dir} is not the base this delta was made from (weights hash {found}, the delta "
                             f"expects {manifest['base_weights_sha256_16']})")
    config = TTTLlamaConfig.from_pretrained(delta_dir)
    weights = {k: v for k, v in load_weights(base_dir).items() if not k.startswith(_replaced(config))}
    ttt = load_file(str(delta_dir / DELTA_WEIGHTS))
    dtype = dtype or next(iter(weights.values())).dtype
    model = TTTLlamaForCausalLM(config).to(dtype)
    missing, unexpected = model.load_state_dict({**weights, **ttt}, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    unexpected = [k for k in unexpected if not k.endswith("rotary_emb.inv_freq")]
    if missing or unexpected:
        raise ValueError(f"base {base_dir} + delta {delta_dir} do not make the model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    if config.tie_word_embeddings:
        model.tie_weights()
    return model.eval()


__all__ = ["save_delta", "load_delta", "delta_tensors", "weights_digest", "DELTA_WEIGHTS", "DELTA_MANIFEST"]
