"""One cache object for the TTT hybrid: KV for the attention layers, the fp32 TTT state for the TTT layers.

`TTTHybridCache` is a transformers `Cache`, so `generate()` (greedy, sampling, beam search) and manual cache
loops use it like a `DynamicCache`. Attention layers keep transformers' own cache layers:
`DynamicLayer` (full attention, grows with the sequence) or `DynamicSlidingWindowLayer` (bounded-memory mode: it
holds at most `attention_window - 1` past tokens); with attention sinks (StreamingLLM) a `SinkWindowLayer` holds the
first `attention_sinks` tokens as well. TTT layers hold a `TTTState`, whose size never depends on the sequence
length.
"""
from __future__ import annotations

import torch
from torch import Tensor
from transformers.cache_utils import Cache, DynamicLayer, DynamicSlidingWindowLayer

from ttt_omni.ops import TTTState


CROP_ERROR = ("a TTT layer's state cannot be cropped: tokens already absorbed into the inner model cannot be removed "
              "(assisted/speculative decoding is not supported with TTT layers)")


def sink_window_positions(seen: int, window: int, sinks: int) -> Tensor:
    """Positions of the past tokens a windowed attention layer with `sinks` sink tokens keeps after `seen` tokens:
    the first `sinks`, then the last `window - 1` (what the next query, at position `seen`, may attend to)."""
    first = min(seen, sinks)
    return torch.cat([torch.arange(first), torch.arange(max(first, seen - window + 1), seen)])


class SinkWindowLayer(DynamicLayer):
    """KV cache of a sliding-window attention layer that keeps the first `sinks` tokens of the sequence too
    (attention sinks, StreamingLLM): at most `sinks + window - 1` past tokens, at the positions
    `sink_window_positions` names.

    Held in a ring: the sinks first, then position p >= sinks at slot sinks + (p - sinks) % (window - 1), so a decode
    step writes its key over the one that just left the window instead of copying the window (`attend_next`). Until
    the window is full the slots are the positions in order; `ordered()` gives them in position order always."""

    is_sliding = True

    def __init__(self, sliding_window: int, sinks: int):
        super().__init__()
        self.sliding_window, self.sinks = sliding_window, sinks
        self.cumulative_length = 0

    def _shift(self, seen: int) -> int:
        """How far the window part of the ring is rotated after `seen` tokens (0 until the window is full)."""
        ring = self.sliding_window - 1
        if ring < 1 or seen <= self.sinks + ring:
            return 0
        return (seen - ring - self.sinks) % ring

    def ordered(self, tensor: Tensor | None = None, seen: int | None = None) -> Tensor:
        """`tensor` (default: the held keys) in position order."""
        return self._roll(self.keys if tensor is None else tensor, self.cumulative_length if seen is None else seen, -1)

    def _roll(self, tensor: Tensor, seen: int, sign: int) -> Tensor:
        shift = self._shift(seen)
        if not shift:
            return tensor
        return torch.cat([tensor[..., :self.sinks, :], tensor[..., self.sinks:, :].roll(sign * shift, dims=-2)], dim=-2)

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        """Returns the kept past keys/values in position order followed by the new ones; then keeps what the next
        call needs (in ring order)."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        past = self.cumulative_length
        keys = torch.cat([self.ordered(self.keys), key_states], dim=-2)
        values = torch.cat([self.ordered(self.values), value_states], dim=-2)
        self.cumulative_length += key_states.shape[-2]
        seen = self.cumulative_length
        # positions of `keys` (ascending): what was held, then the new tokens; keep the subset the next call needs
        positions = torch.cat([sink_window_positions(past, self.sliding_window, self.sinks), torch.arange(past, seen)])
        rows = torch.searchsorted(positions, sink_window_positions(seen, self.sliding_window, self.sinks))
        rows = rows.to(keys.device)
        self.keys = self._roll(keys.index_select(-2, rows), seen, 1)
        self.values = self._roll(values.index_select(-2, rows), seen, 1)
        return keys, values

    def attend_next(self, query: Tensor, sink_query: Tensor, key: Tensor, value: Tensor, scaling: float) -> Tensor:
        """Decode step: attention of one new token (query [B,H,1,D]; sink_query, the query rotated for the sinks;
        key/value [B,KV,1,D]) over every held token and itself, all of which it sees (no padding), then the new
        key/value take the slot of the token that left the window. No copy of the window, no repeat of the KV heads.
        Same result as `update` followed by the masked attention over its output."""
        B, H, _, D = query.shape
        kv = key.shape[1]
        if not self.is_initialized or self.keys.dim() != 4:
            self.lazy_initialization(key, value)
            self.keys, self.values = key[..., :0, :], value[..., :0, :]
        q = query.reshape(B, kv, H // kv, D)
        held = self.keys.shape[-2]
        scores = q @ self.keys.transpose(-1, -2)  # [B, KV, groups, held]
        n_sinks = min(self.cumulative_length, self.sinks)
        if n_sinks:
            scores[..., :n_sinks] = sink_query.reshape(B, kv, H // kv, D) @ self.keys[..., :n_sinks, :].transpose(-1, -2)
        scores = torch.cat([scores, q @ key.transpose(-1, -2)], dim=-1) * scaling
        probs = torch.softmax(scores.float(), dim=-1).to(value.dtype)
        out = probs[..., :held] @ self.values + probs[..., held:] * value
        position = self.cumulative_length
        self.cumulative_length += 1
        ring = self.sliding_window - 1
        if position < self.sinks + ring:  # still filling: slots are positions
            self.keys = torch.cat([self.keys, key], dim=-2)
            self.values = torch.cat([self.values, value], dim=-2)
        elif ring:
            slot = self.sinks + (position - self.sinks) % ring
            self.keys[..., slot:slot + 1, :] = key
            self.values[..., slot:slot + 1, :] = value
        return out.reshape(B, H, 1, D)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.keys_held() + query_length, 0

    def keys_held(self) -> int:
        return len(sink_window_positions(self.cumulative_length, self.sliding_window, self.sinks))

    def get_seq_length(self) -> int:
        return self.cumulative_length

    def get_max_length(self) -> int:
        return self.sliding_window + self.sinks

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove != 0:
            raise NotImplementedError("a sliding window with attention sinks cannot be cropped: the tokens it "
                                      "dropped cannot be brought back")

    def reset(self) -> None:
        super().reset()
        self.cumulative_length = 0


class TTTStateLayer:
    """Cache slot of one TTT layer. The state is the whole memory of the layer; it cannot be rolled back."""

    is_sliding = False
    is_compileable = False
    is_croppable = False
    supports_early_init = False

    def __init__(self):
        self.state: TTTState | None = None
        self.restart_rows: Tensor | None = None

    @property
    def is_initialized(self) -> bool:
        return self.state is not None

    def get_seq_length(self) -> int:
        return 0 if self.state is None else self.state.seen

    def get_max_length(self) -> int:
        return -1

    def reset(self) -> None:
        self.state = None
        self.restart_rows = None

    def _select(self, indices: Tensor) -> None:
        if self.state is not None:
            self.state = self.state.index_select(indices)

    def reorder_cache(self, beam_idx: Tensor) -> None:
        self._select(beam_idx)

    def batch_select_indices(self, indices: Tensor) -> None:
        self._select(indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.state is not None:
            rows = torch.arange(self.state.batch_size, device=self.state.W1.device)
            self._select(rows.repeat_interleave(repeats))

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove != 0:
            raise NotImplementedError(CROP_ERROR)

    def nbytes(self) -> int:
        return 0 if self.state is None else self.state.nbytes()


def _kv_nbytes(layer) -> int:
    if not layer.is_initialized or layer.keys is None:
        return 0
    return sum(t.numel() * t.element_size() for t in (layer.keys, layer.values))


class TTTHybridCache(Cache):
    """KV cache for the attention layers (full or windowed) + TTT state for the TTT layers, one slot per layer."""

    def __init__(self, config):
        ttt = set(config.ttt_layers)
        # beside mode: every layer keeps its attention's KV slot; the TTT states of the layers with a TTT branch
        # live in `beside_states` (the same TTTStateLayer, outside `layers`)
        beside = getattr(config, "ttt_mode", "replace") == "beside"
        window, sinks = config.attention_window, getattr(config, "attention_sinks", 0)
        layers = [
            TTTStateLayer() if i in ttt and not beside
            else SinkWindowLayer(window, sinks) if window is not None and sinks
            else DynamicSlidingWindowLayer(sliding_window=window) if window is not None
            else DynamicLayer()
            for i in range(config.num_hidden_layers)
        ]
        super().__init__(layers=layers)
        self.ttt_layers = sorted(ttt)
        self.beside_states = {i: TTTStateLayer() for i in self.ttt_layers} if beside else {}
        self.attention_layers = [i for i in range(config.num_hidden_layers) if beside or i not in ttt]
        self.attention_window, self.attention_sinks = window, sinks

    # --- TTT state access (used by the model's TTT layers) ---
    def get_ttt_state(self, layer_idx: int) -> TTTState | None:
        return self._ttt_layer(layer_idx).state

    def update_ttt_state(self, state: TTTState, layer_idx: int) -> None:
        self._ttt_layer(layer_idx).state = state

    def restart_ttt_rows(self, rows: Tensor) -> None:
        """Rows (a [batch] bool mask) whose conversation starts at the next forward: every TTT layer replaces their
        state with a fresh one from its learnable initial weights, inside the forward (where wrappers such as FSDP
        have the weights gathered), and keeps the other rows' states."""
        for i in self.ttt_layers:
            self._ttt_layer(i).restart_rows = rows

    def pop_ttt_restart(self, layer_idx: int) -> Tensor | None:
        layer = self._ttt_layer(layer_idx)
        rows, layer.restart_rows = layer.restart_rows, None
        return rows

    def _ttt_layer(self, layer_idx: int) -> TTTStateLayer:
        layer = self.beside_states.get(layer_idx) or self.layers[layer_idx]
        if not isinstance(layer, TTTStateLayer):
            raise ValueError(f"layer {layer_idx} is an attention layer, not a TTT layer (TTT layers: {self.ttt_layers})")
        return layer

    # --- lengths: every layer has seen the same tokens, so any layer answers for all ---
    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Tokens processed so far (the absolute position of the next token), whatever the layer kind."""
        if layer_idx >= len(self.layers):
            return 0
        return self.layers[layer_idx].get_seq_length()

    def get_query_offset(self, layer_idx: int = 0) -> int:
        return self.get_seq_length(layer_idx)

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        """Mask sizes of the attention layers; they are all of one kind (full or windowed), so any of them answers."""
        if not self.attention_layers:
            return query_length, 0
        return self.layers[self.attention_layers[0]].get_mask_sizes(query_length)

    def crop(self, tokens_to_remove: int) -> None:
        """Refused up front when TTT layers exist, so that no attention layer is cropped alone."""
        if tokens_to_remove != 0 and self.ttt_layers:
            raise NotImplementedError(CROP_ERROR)
        super().crop(tokens_to_remove)

    # --- beam search / batch edits / reset reach the beside-mode TTT states too ---
    def reorder_cache(self, beam_idx: Tensor) -> None:
        super().reorder_cache(beam_idx)
        for layer in self.beside_states.values():
            layer.reorder_cache(beam_idx)

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        for layer in self.beside_states.values():
            layer.batch_repeat_interleave(repeats)

    def batch_select_indices(self, indices: Tensor) -> None:
        super().batch_select_indices(indices)
        for layer in self.beside_states.values():
            layer.batch_select_indices(indices)

    def reset(self) -> None:
        super().reset()
        for layer in self.beside_states.values():
            layer.reset()

    @property
    def is_linear(self) -> list[bool]:
        """TTT layers carry a recurrent state and no per-token KV, like transformers' linear-attention layers."""
        return [isinstance(layer, TTTStateLayer) for layer in self.layers]

    @property
    def is_dummy(self) -> list[bool]:
        return [False] * len(self.layers)

    # --- memory and persistence ---
    def nbytes(self) -> dict[str, int]:
        """Bytes held by the cache tensors: {"kv": attention KV, "ttt": TTT states, "total": both}."""
        kv = sum(_kv_nbytes(self.layers[i]) for i in self.attention_layers)
        ttt = sum(self._ttt_layer(i).nbytes() for i in self.ttt_layers)
        return {"kv": kv, "ttt": ttt, "total": kv + ttt}

    def to_dict(self) -> dict[str, Tensor]:
        """Flat tensors (for safetensors): per attention layer keys/values (+ seen tokens), per TTT layer its state."""
        out: dict[str, Tensor] = {}
        for i in self.attention_layers:
            layer = self.layers[i]
            if layer.is_initialized and layer.keys is not None and layer.keys.numel():
                keys, values = layer.keys, layer.values
                if isinstance(layer, SinkWindowLayer):  # position order on disk; a copy, as decoding writes in place
                    keys, values = layer.ordered(keys).clone(), layer.ordered(values).clone()
                out[f"layers.{i}.keys"] = keys.detach().contiguous()
                out[f"layers.{i}.values"] = values.detach().contiguous()
            out[f"layers.{i}.seen"] = torch.tensor(layer.get_seq_length(), dtype=torch.int64)
        for i in self.ttt_layers:
            state = self._ttt_layer(i).state
            if state is not None:
                out.update({f"layers.{i}.ttt.{k}": v for k, v in state.to_dict().items()})
        return out

    @classmethod
    def from_dict(cls, config, data: dict[str, Tensor]) -> "TTTHybridCache":
        """Inverse of `to_dict` for a model with this `config`; raises if the data belongs to another layout."""
        cache = cls(config)
        expected = {f"layers.{i}.seen" for i in cache.attention_layers}
        optional = {f"layers.{i}.{name}" for i in cache.attention_layers for name in ("keys", "values")}
        ttt_prefixes = tuple(f"layers.{i}.ttt." for i in cache.ttt_layers)
        known = expected | optional | {k for k in data if ttt_prefixes and k.startswith(ttt_prefixes)}
        missing, unknown = expected - set(data), set(data) - known
        if missing or unknown:
            raise ValueError(f"cache data does not match the model layout (ttt_layers={cache.ttt_layers}): "
                             f"missing {sorted(missing)[:5]}, unexpected {sorted(unknown)[:5]}")
        for i in cache.attention_layers:
            layer, seen = cache.layers[i], int(data[f"layers.{i}.seen"])
            if f"layers.{i}.keys" in data:
                keys, values = data[f"layers.{i}.keys"], data[f"layers.{i}.values"]
                layer.lazy_initialization(keys, values)
                layer.keys, layer.values = keys, values
            if isinstance(layer, (DynamicSlidingWindowLayer, SinkWindowLayer)):
                layer.cumulative_length = seen
            if isinstance(layer, SinkWindowLayer) and layer.is_initialized:  # position order -> ring, owned copies
                layer.keys = layer._roll(layer.keys, seen, 1).clone()
                layer.values = layer._roll(layer.values, seen, 1).clone()
            elif layer.get_seq_length() != seen:
                raise ValueError(f"cache data for layer {i} holds {layer.get_seq_length()} tokens, expected {seen}")
        for i in cache.ttt_layers:
            prefix = f"layers.{i}.ttt."
            part = {k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)}
            if part:  # owned copies: decode steps update a cached state's accumulators in place
                cache._ttt_layer(i).state = TTTState.from_dict({k: v.clone() for k, v in part.items()})
        return cache


__all__ = ["TTTHybridCache", "TTTStateLayer", "SinkWindowLayer", "sink_window_positions"]
