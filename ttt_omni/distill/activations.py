"""What attention transfer learns from: the inputs and outputs of the attention layers that TTT layers replace, on
the frozen model's own activations, streamed to disk in shards so memory stays bounded.

The teacher is the source model as the hybrid will run it: its kept layers with full attention, or in
bounded-memory mode with the sliding window (and sinks) the hybrid will have, and the layers to be replaced still
attending in full (what the TTT layer must reproduce). A shard holds a few sequences: for each replaced layer i,
`layers.{i}.input` (the hidden state after the layer's input norm, what the attention reads) and
`layers.{i}.output` (what the attention adds to the residual stream), bf16 [sequences, tokens, hidden], and the
`tokens`. Shards are written atomically and named by index, and the sequences are fixed by the calibration seed, so
an interrupted collection continues where it stopped.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask
from transformers.models.llama.modeling_llama import LlamaAttention

from ttt_omni.atomic import replacing_file, write_json
from ttt_omni.hf_compat import CACHE_ARG
from ttt_omni.models import TTTLlamaForCausalLM
from ttt_omni.models.modeling_ttt_llama import sink_window_layout

MANIFEST_NAME = "activations.json"
STORE_DTYPE = torch.bfloat16


@dataclass(frozen=True)
class StoreSettings:
    """Everything the stored activations depend on; a store written under other settings is refused."""

    source: str
    layers: list[int]
    seq_len: int
    sequences_per_shard: int
    train_sequences: int
    validation_sequences: int
    attention_window: int | None
    attention_sinks: int
    corpus: str | None
    seed: int


@torch.no_grad()
def layer_io(teacher: TTTLlamaForCausalLM, ids: torch.Tensor, layers: list[int]) -> dict[int, tuple]:
    """{layer: (attention input, attention output)} of `layers` for the token ids [batch, tokens]. The kept layers
    run as the teacher's config says (full, windowed, or windowed with sinks); the layers in `layers` attend in
    full. Layers above the highest one asked for are not run."""
    inner, config = teacher.model, teacher.config
    hidden = inner.embed_tokens(ids)
    positions = torch.arange(ids.shape[1], device=ids.device)[None]
    rope = inner.rotary_emb(hidden, positions)
    common = dict(config=config, inputs_embeds=hidden, attention_mask=None, position_ids=positions,
                  **{CACHE_ARG: None})
    full_mask = create_causal_mask(**common)
    kept: dict = {"attention_mask": full_mask}
    if config.attention_window is not None and config.attention_sinks:
        kept = {"attention_mask": None,
                "sink_layout": sink_window_layout(config, inner.rotary_emb, hidden, None, positions, past=0)}
    elif config.attention_window is not None:
        kept = {"attention_mask": create_sliding_window_causal_mask(**common)}
    out = {}
    for i, layer in enumerate(inner.layers[: max(layers) + 1]):
        if i not in layers:
            hidden = layer(hidden, position_embeddings=rope, position_ids=positions, **kept)
            continue
        # LlamaDecoderLayer.forward with the attention called as plain (full) LlamaAttention
        x = layer.input_layernorm(hidden)
        attended, _ = LlamaAttention.forward(layer.self_attn, x, position_embeddings=rope, attention_mask=full_mask)
        out[i] = (x, attended)
        hidden = hidden + attended
        hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
    return out


class ActivationStore:
    """A folder of shards, `train-NNNNN.safetensors` and `validation-NNNNN.safetensors`, and a manifest. The
    calibration sequences are a seeded shuffle whose first ones stay the same when more are asked for, so a store
    may grow: collecting again with more training sequences adds shards and keeps the ones written."""

    def __init__(self, folder: str | Path, settings: StoreSettings):
        self.folder, self.settings = Path(folder), settings
        manifest = self.folder / MANIFEST_NAME
        if manifest.is_file():
            found = {k: v for k, v in json.loads(manifest.read_text())["settings"].items() if k != "train_sequences"}
            wanted = {k: v for k, v in json.loads(json.dumps(asdict(settings))).items() if k != "train_sequences"}
            if found != wanted:
                diff = sorted(k for k in wanted if found.get(k) != wanted[k])
                raise ValueError(f"{self.folder} holds activations collected with other settings ({diff} differ); "
                                 "use another work directory, or delete it to collect again")

    def _count(self, split: str) -> int:
        s = self.settings
        n = s.train_sequences if split == "train" else s.validation_sequences
        return -(-n // s.sequences_per_shard)

    def shards(self, split: str) -> list[Path]:
        return [self.folder / f"{split}-{i:05d}.safetensors" for i in range(self._count(split))]

    def rows(self, shard: Path) -> int:
        """Sequences in a shard."""
        s = self.settings
        split, index = shard.stem.split("-")
        total = s.train_sequences if split == "train" else s.validation_sequences
        return min(s.sequences_per_shard, total - int(index) * s.sequences_per_shard)

    def missing(self) -> list[Path]:
        return [p for split in ("train", "validation") for p in self.shards(split) if not p.is_file()]

    def complete(self) -> bool:
        return not self.missing()

    def collect(self, teacher: TTTLlamaForCausalLM, train: torch.Tensor, validation: torch.Tensor,
                batch_size: int = 1) -> int:
        """Writes the shards not written yet (a resumed collection skips the others). Returns how many it wrote."""
        s = self.settings
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.folder / MANIFEST_NAME, {"settings": asdict(s)})
        per = s.sequences_per_shard
        sequences = {path: ids[i * per:(i + 1) * per] for split, ids in (("train", train), ("validation", validation))
                     for i, path in enumerate(self.shards(split))}
        todo = self.missing()
        device = next(teacher.parameters()).device
        for path in tqdm(todo, desc="collect activations", unit="shard"):
            ids = sequences[path]
            parts: dict[int, list] = {i: [] for i in s.layers}
            for b in range(0, len(ids), batch_size):
                for i, (x, y) in layer_io(teacher, ids[b:b + batch_size].to(device), s.layers).items():
                    parts[i].append((x.to(STORE_DTYPE).cpu(), y.to(STORE_DTYPE).cpu()))
            tensors = {"tokens": ids.to(torch.int32).contiguous()}
            for i, pairs in parts.items():
                tensors[f"layers.{i}.input"] = torch.cat([p[0] for p in pairs]).contiguous()
                tensors[f"layers.{i}.output"] = torch.cat([p[1] for p in pairs]).contiguous()
            with replacing_file(path) as tmp:
                save_file(tensors, str(tmp))
        return len(todo)

    def read(self, shard: Path, layer: int, rows: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, outputs) of one layer in one shard (all its sequences, or `rows`), float32
        [sequences, tokens, hidden]."""
        with safe_open(str(shard), framework="pt") as f:
            x, y = (f.get_slice(f"layers.{layer}.{part}") for part in ("input", "output"))
            if rows is None:
                return x[:].float(), y[:].float()
            lo, hi = min(rows), max(rows) + 1
            return x[lo:hi].float(), y[lo:hi].float()
