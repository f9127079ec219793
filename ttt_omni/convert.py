"""Pretrained Llama / LLaMA-Omni checkpoint directory -> TTT-Llama hybrid checkpoint directory.

For every layer that gets a TTT layer (in place of its attention, or beside it with `ttt_mode="beside"`, where the
attention is kept and a per-channel gate starts at 0), the attention's q/k/v/o projections initialise the TTT layer's
projections (GQA k/v heads repeated so that query head h reads the KV head it attended with), the inner model's
W1 (and W2 for TTT-MLP) start at small seeded random values with zero biases, and the rest of the TTT layer keeps
its constructor's initial value (norms at identity, learning-rate gate small). Every other tensor is copied bit for
bit, including tensors the hybrid does not use (e.g. LLaMA-Omni's speech encoder), which are carried along. The
output directory is written in a temporary sibling and renamed into place, so a failed conversion leaves nothing
half written; a report of what was copied, initialised, carried and dropped is saved next to the weights.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ttt_omni.atomic import replacing_dir
from ttt_omni.checkpoint_files import MAX_SHARD_BYTES, WEIGHTS_INDEX_NAME, WEIGHTS_NAME, load_weights, save_sharded
from ttt_omni.models.configuration_ttt_llama import TTTLlamaConfig
from ttt_omni.models.modeling_ttt_llama import TTTLlamaForCausalLM, build_ttt_layer

REPORT_NAME = "conversion_report.json"
# config.json fields that describe the source file, not the model geometry
_SOURCE_ONLY_FIELDS = ("model_type", "architectures", "transformers_version", "quantization_config", "auto_map",
                       "_name_or_path")
_ATTN_PROJ = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass
class ConversionReport:
    source: str
    output: str
    ttt_layers: list[int]
    copied: list[str] = field(default_factory=list)  # same name, same bits
    carried: list[str] = field(default_factory=list)  # copied bit for bit but unused by TTTLlamaForCausalLM
    initialised: dict[str, str] = field(default_factory=dict)  # new tensor -> how
    dropped: dict[str, str] = field(default_factory=dict)  # source tensor -> why
    files_copied: list[str] = field(default_factory=list)  # tokenizer, generation config, ...

    def summary(self) -> str:
        return (f"converted {self.source} -> {self.output}: TTT layers {self.ttt_layers}; "
                f"{len(self.copied)} tensors copied, {len(self.initialised)} initialised, "
                f"{len(self.dropped)} dropped, {len(self.carried)} carried unused; "
                f"files copied: {', '.join(self.files_copied) or 'none'}")


# ---------------------------------------------------------------- reading the source
def read_config(src: Path) -> dict:
    path = src / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{src} has no config.json; expected a transformers Llama checkpoint directory")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if config.get("model_type") == TTTLlamaConfig.model_type:
        raise ValueError(f"{src} is already a TTT-Llama checkpoint (model_type={TTTLlamaConfig.model_type!r})")
    missing = [k for k in ("hidden_size", "num_attention_heads", "num_hidden_layers") if k not in config]
    if missing or "llama" not in str(config.get("model_type", "")).lower():
        raise ValueError(f"{path} does not describe a Llama model (model_type={config.get('model_type')!r}, "
                         f"missing {missing}); expected a Llama or LLaMA-Omni config")
    return config


# ---------------------------------------------------------------- building the hybrid's tensors
def _repeat_kv_heads(weight: torch.Tensor, num_kv_heads: int, n_rep: int) -> torch.Tensor:
    """[Hkv*F, D] -> [Hkv*n_rep*F, D], KV head j serving query heads j*n_rep .. j*n_rep+n_rep-1 (as repeat_kv)."""
    out_features, d = weight.shape
    return weight.view(num_kv_heads, out_features // num_kv_heads, d).repeat_interleave(n_rep, dim=0).reshape(-1, d)


def ttt_layer_tensors(config: TTTLlamaConfig, layer_idx: int, attn: dict[str, torch.Tensor], seed: int,
                      init_std: float) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """State dict (relative to `self_attn.ttt.`) of the TTT layer replacing `attn`, and how each tensor was made."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + layer_idx)
        layer = build_ttt_layer(config)
    dtype = attn["q_proj"].dtype
    n_rep = config.num_attention_heads // config.num_key_value_heads
    how: dict[str, str] = {}
    new = {name: t.detach().to(dtype) for name, t in layer.state_dict().items() if not name.startswith("inner.")}
    for name in _ATTN_PROJ:
        w = attn[name]
        if name in ("k_proj", "v_proj") and n_rep > 1:
            w = _repeat_kv_heads(w, config.num_key_value_heads, n_rep)
            how[f"{name}.weight"] = f"from self_attn.{name}.weight, {config.num_key_value_heads} KV heads repeated x{n_rep}"
        else:
            how[f"{name}.weight"] = f"from self_attn.{name}.weight"
        if new[f"{name}.weight"].shape != w.shape:
            raise ValueError(f"layer {layer_idx} {name}: attention weight {tuple(w.shape)} does not fit the TTT "
                             f"layer's {tuple(new[f'{name}.weight'].shape)}")
        new[f"{name}.weight"] = w.clone()
    generator = torch.Generator().manual_seed(seed * 1_000_003 + layer_idx)
    for name, t in layer.inner.state_dict().items():
        key = f"inner.{name}"
        if name in ("W1", "W2"):
            new[key] = torch.randn(t.shape, generator=generator, dtype=torch.float32) * init_std
            how[key] = f"random normal(0, {init_std}), seed {seed}"
        elif name in ("b1", "b2"):
            new[key] = torch.zeros(t.shape, dtype=torch.float32)
            how[key] = "zeros"
        else:
            new[key] = t.detach().float().clone()
            how[key] = "TTT layer's initial value"
    for key in new:
        how.setdefault(key, "TTT layer's initial value")
    return new, how


def convert_state_dict(weights: dict[str, torch.Tensor], config: TTTLlamaConfig, seed: int = 0,
                       init_std: float = 0.02, report: ConversionReport | None = None) -> dict[str, torch.Tensor]:
    """Source Llama tensors -> hybrid tensors (pure function; `report` is filled in when given)."""
    report = report or ConversionReport("", "", list(config.ttt_layers))
    with torch.device("meta"):
        expected = set(TTTLlamaForCausalLM(config).state_dict())
    if config.tie_word_embeddings:
        expected.discard("lm_head.weight")
    out: dict[str, torch.Tensor] = {}
    ttt = set(config.ttt_layers)
    for i in sorted(ttt):
        prefix = f"model.layers.{i}.self_attn."
        try:
            attn = {p: weights[f"{prefix}{p}.weight"] for p in _ATTN_PROJ}
        except KeyError as e:
            raise ValueError(f"the checkpoint has no {e.args[0]}; layer {i} cannot become a TTT layer "
                             "(expected Llama attention weights)") from None
        tensors, how = ttt_layer_tensors(config, i, attn, seed, init_std)
        for name, t in tensors.items():
            out[f"{prefix}ttt.{name}"] = t
            report.initialised[f"{prefix}ttt.{name}"] = how[name]
        if config.ttt_mode == "beside":
            out[f"{prefix}ttt_gate"] = torch.zeros(config.hidden_size, dtype=attn["q_proj"].dtype)
            report.initialised[f"{prefix}ttt_gate"] = "zeros (the TTT branch starts switched off)"
    replaced = ttt if config.ttt_mode == "replace" else set()
    for key, tensor in weights.items():
        layer_prefix = key.split(".self_attn.")[0] if ".self_attn." in key else None
        if layer_prefix is not None and layer_prefix.startswith("model.layers.") and \
                int(layer_prefix.rsplit(".", 1)[1]) in replaced:
            report.dropped[key] = "attention replaced by a TTT layer" + (
                " (used to initialise it)" if key.endswith(tuple(f"{p}.weight" for p in _ATTN_PROJ)) else "")
        elif key.endswith("rotary_emb.inv_freq"):
            report.dropped[key] = "recomputed from the config"
        elif key == "lm_head.weight" and config.tie_word_embeddings:
            report.dropped[key] = "tied to model.embed_tokens.weight"
        else:
            out[key] = tensor
            (report.copied if key in expected else report.carried).append(key)
    missing = sorted(expected - set(out))
    if missing:
        raise ValueError(f"the checkpoint lacks tensors the hybrid needs: {missing[:8]}"
                         f"{' ...' if len(missing) > 8 else ''}")
    return out


def hybrid_config(source_config: dict, ttt_layers: list[int] | None = None, ttt_type: str = "linear",
                  mini_batch_size: int = 64, ttt_base_lr: float = 1.0, attention_window: int | None = None,
                  scan_checkpoint_every: int | None = None, attention_sinks: int = 0,
                  ttt_mode: str = "replace") -> TTTLlamaConfig:
    fields = {k: v for k, v in source_config.items() if k not in _SOURCE_ONLY_FIELDS}
    if "torch_dtype" in fields:  # older transformers name
        fields.setdefault("dtype", fields.pop("torch_dtype"))
    config = TTTLlamaConfig(**fields, ttt_layers=ttt_layers, ttt_type=ttt_type, mini_batch_size=mini_batch_size,
                            ttt_base_lr=ttt_base_lr, attention_window=attention_window,
                            attention_sinks=attention_sinks, scan_checkpoint_every=scan_checkpoint_every,
                            ttt_mode=ttt_mode)
    config.architectures = [TTTLlamaForCausalLM.__name__]
    return config


def convert_model(src: str | os.PathLike, **options) -> TTTLlamaForCausalLM:
    """The hybrid `convert_checkpoint` would write, built in memory (eval mode, the source's dtype); `options` are
    `hybrid_config`'s keywords plus `seed` and `init_std`."""
    src = Path(src)
    seed, init_std = options.pop("seed", 0), options.pop("init_std", 0.02)
    config = hybrid_config(read_config(src), **options)
    tensors = convert_state_dict(load_weights(src), config, seed=seed, init_std=init_std)
    model = TTTLlamaForCausalLM(config).to(next(iter(tensors.values())).dtype)
    model.load_state_dict(tensors, strict=False)
    if config.tie_word_embeddings:
        model.tie_weights()
    return model.eval()


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, ttt_layers: list[int] | None = None,
                       ttt_type: str = "linear", mini_batch_size: int = 64, ttt_base_lr: float = 1.0,
                       attention_window: int | None = None, attention_sinks: int = 0,
                       scan_checkpoint_every: int | None = None, seed: int = 0, init_std: float = 0.02,
                       max_shard_bytes: int = MAX_SHARD_BYTES, ttt_mode: str = "replace") -> ConversionReport:
    """Converts the checkpoint directory `src` into a new hybrid checkpoint directory `dst` (which must not exist
    or be empty). `ttt_layers` None = the top 8 layers."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"checkpoint directory {src} does not exist")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):  # checked before the long part, and again at the end
        raise FileExistsError(f"output {dst} already exists and is not an empty directory; choose a new path")
    config = hybrid_config(read_config(src), ttt_layers, ttt_type, mini_batch_size, ttt_base_lr, attention_window,
                           scan_checkpoint_every, attention_sinks, ttt_mode)
    report = ConversionReport(str(src), str(dst), list(config.ttt_layers))
    tensors = convert_state_dict(load_weights(src), config, seed=seed, init_std=init_std, report=report)

    with replacing_dir(dst, overwrite=False) as tmp:
        save_sharded(tensors, tmp, max_shard_bytes)
        config.save_pretrained(tmp)
        skip = {"config.json", WEIGHTS_NAME, WEIGHTS_INDEX_NAME}
        for path in sorted(src.iterdir()):
            if path.is_file() and path.name not in skip and path.suffix not in (".safetensors", ".bin"):
                shutil.copy2(path, tmp / path.name)
                report.files_copied.append(path.name)
        (tmp / REPORT_NAME).write_text(json.dumps(asdict(report), indent=2))
    return report
