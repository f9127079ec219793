"""TTT-Llama: transformers' Llama with TTT layers in some decoder layers, replacing their self-attention
(`ttt_mode="replace"`) or running beside it (`"beside"`).

Everything that is plain Llama (embeddings, RMSNorm, rotary embedding, MLP, the decoder layer's residual wiring and
the attention in the kept layers) is transformers' own code. What TTT changes:
  * `TTTAttention` takes `LlamaAttention`'s place inside a `LlamaDecoderLayer` and keeps its state in the cache;
  * `TTTLlamaModel.forward` creates a `TTTHybridCache`, builds the sliding-window mask in bounded-memory mode, and
    refuses padding that the TTT layers would otherwise learn from;
  * with attention sinks (bounded-memory mode keeping the first tokens too), the kept layers' attention is
    `SinkWindowAttention`: our own mask over the positions the cache holds, and no query-sink distance beyond the
    window.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.models.llama.modeling_llama import (
    LlamaAttention,
    LlamaDecoderLayer,
    LlamaForCausalLM,
    LlamaModel,
    LlamaPreTrainedModel,
    LlamaRMSNorm,
    LlamaRotaryEmbedding,
    apply_rotary_pos_emb,
    repeat_kv,
    rotate_half,
)
from transformers.utils.output_capturing import capture_outputs

from ttt_omni.cache import TTTHybridCache, sink_window_positions
from ttt_omni.hf_compat import CACHE_ARG, take_cache
from ttt_omni.layers import TTTInnerParams, TTTLinear, TTTMLP
from ttt_omni.ops.validate import NonFiniteError

from .configuration_ttt_llama import TTTLlamaConfig


def build_ttt_layer(config: TTTLlamaConfig) -> TTTLinear | TTTMLP:
    """The TTT layer for one decoder layer: same heads and head_dim as the attention it replaces."""
    layer_cls = TTTLinear if config.ttt_type == "linear" else TTTMLP
    return layer_cls(
        config.hidden_size,
        config.num_attention_heads,
        head_dim=config.head_dim,
        mini_batch_size=config.mini_batch_size,
        base_lr=config.ttt_base_lr,
        rope_theta=config.rope_parameters["rope_theta"],
        scan_checkpoint_every=config.scan_checkpoint_every,
    )


class TTTAttention(nn.Module):
    """Maps the decoder layer's attention call onto a TTT layer; reads and writes its state in the cache."""

    def __init__(self, config: TTTLlamaConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.ttt = build_ttt_layer(config)

    def forward(self, hidden_states: torch.Tensor, **kwargs):
        # attention_mask / position_embeddings are not needed: the TTT layer is causal by construction and its RoPE
        # positions come from the state (they restart every mini-batch).
        return run_ttt(self.ttt, self.layer_idx, hidden_states, take_cache(kwargs, "TTTAttention")), None


def run_ttt(ttt: TTTLinear | TTTMLP, layer_idx: int, hidden_states: torch.Tensor, cache) -> torch.Tensor:
    """One TTT layer's forward, reading its state from the cache and writing the new state back."""
    state = restart = None
    if cache is not None:
        state = cache.get_ttt_state(layer_idx)
        restart = cache.pop_ttt_restart(layer_idx)
    try:
        out, new_state = ttt(hidden_states, state, restart_rows=restart, inplace=cache is not None)
    except NonFiniteError as e:
        raise type(e)(f"TTT layer {layer_idx}: {e}") from None
    if cache is not None:
        cache.update_ttt_state(new_state, layer_idx)
    return out


class BesideMixin:
    """Beside mode: the attention stays and a TTT layer reads the same (normed) input,
    `y = attn(x) + ttt_gate * ttt(x)`. The gate is per output channel and starts at 0, so a fresh layer is the
    attention exactly; training can only add what the attention misses. Like Hymba's parallel heads, each branch
    is normalised inside (the TTT layer's post-norm before its o_proj) and the sum is scaled per channel; unlike
    Titans' memory-as-gate the memory adds to the attention rather than multiplying it, which keeps g = 0 exact.
    The attention keeps its own parameter names (`self_attn.q_proj`, ...), so a Llama checkpoint loads unchanged;
    the branch is `self_attn.ttt.*` and `self_attn.ttt_gate`."""

    def _add_ttt_branch(self, config: TTTLlamaConfig) -> None:
        self.ttt = build_ttt_layer(config)
        self.ttt_gate = nn.Parameter(torch.zeros(config.hidden_size))

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        cache = take_cache(kwargs, type(self).__name__)
        out, weights = super().forward(hidden_states, *args, **{CACHE_ARG: cache}, **kwargs)
        memory = run_ttt(self.ttt, self.layer_idx, hidden_states, cache)
        return out + self.ttt_gate.to(out.dtype) * memory.to(out.dtype), weights


class BesideAttention(BesideMixin, LlamaAttention):
    """Llama attention (full or sliding window) with a TTT branch beside it."""

    def __init__(self, config: TTTLlamaConfig, layer_idx: int):
        super().__init__(config, layer_idx)
        self._add_ttt_branch(config)


class TTTDecoderLayer(LlamaDecoderLayer):
    """A `LlamaDecoderLayer` (norms, residuals, MLP: transformers' code) whose `self_attn` is a TTT layer."""

    def __init__(self, config: TTTLlamaConfig, layer_idx: int):
        super().__init__(config, layer_idx)
        self.self_attn = TTTAttention(config, layer_idx)


class TTTLlamaPreTrainedModel(LlamaPreTrainedModel):
    config_class = TTTLlamaConfig
    config: TTTLlamaConfig
    # Matched by module name: every parameter under a module called `inner` loads as float32 in fp16/bf16 models.
    _keep_in_fp32_modules_strict = ["inner"]
    _no_split_modules = ["LlamaDecoderLayer", "TTTDecoderLayer"]
    _can_compile_fullgraph = False

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, TTTInnerParams):
            std = self.config.initializer_range
            for name in ("W1", "W2", "lr_weight"):
                if hasattr(module, name):
                    init.normal_(getattr(module, name), mean=0.0, std=std)
            for name in ("b1", "b2", "ttt_norm_bias", "lr_bias", "token_idx_bias"):
                if hasattr(module, name):
                    init.zeros_(getattr(module, name))
            init.ones_(module.ttt_norm_weight)
        if isinstance(module, BesideMixin):
            init.zeros_(module.ttt_gate)


def _check_padding(attention_mask: torch.Tensor | None, caching: bool) -> None:
    """TTT layers learn from every token they see, so padding must never reach them as if it were text."""
    if attention_mask is None or attention_mask.dim() != 2 or bool(attention_mask.all()):
        return
    # Right padding without a cache is harmless (later tokens cannot affect earlier outputs); anything else is not.
    mask = attention_mask.bool()
    left_or_inner = bool((~mask[:, :-1] & mask[:, 1:]).any())
    if caching or left_or_inner:
        raise ValueError(
            "attention_mask marks padding tokens, but TTT layers cannot skip them: the inner model would be trained "
            "on the padding. Run sequences of different lengths one at a time (batch size 1) or batch only "
            "equal-length sequences.")


SINK_QUERY_BLOCK = 256  # queries scored together: each block reads only the keys its window can reach


@dataclass
class SinkWindowLayout:
    """What every `SinkWindowAttention` of one forward needs (built once by the model, `sink_window_layout`).

    mask: [batch, 1, queries, keys] bool, True where the query sees the key; the keys are the ones the cache holds
        after the past tokens (`sink_window_positions`) followed by the new tokens.
    sink_columns: the first this-many keys are sinks (positions < attention_sinks).
    rotation: (cos, sin) [batch, queries, head_dim] of the RoPE rotation that moves a query from its position q to
        min(q, attention_window + attention_sinks - 1); a query scores the sinks from there.
    blocks: (first query, end query, first key, end key): beside the sinks, a block of queries sees only those keys.
    decode: one query that sees every key (no padding): the cache's ring-buffer step (`SinkWindowLayer.attend_next`).
    """

    mask: torch.Tensor
    sink_columns: int
    rotation: tuple[torch.Tensor, torch.Tensor]
    blocks: list[tuple[int, int, int, int]]
    decode: bool = False


def sink_window_layout(config: TTTLlamaConfig, rotary: LlamaRotaryEmbedding, inputs_embeds: torch.Tensor,
                       attention_mask: torch.Tensor | None, position_ids: torch.Tensor, past: int) -> SinkWindowLayout:
    """A sliding window with attention sinks: a query at position q sees the key at position k when k <= q and
    (q - k < attention_window or k < attention_sinks). Where a sink lies outside the window, the query scores it as
    if it stood at position attention_window + attention_sinks - 1, so no query-sink distance exceeds what the
    window itself spans (StreamingLLM numbers positions inside the cache for the same reason: a model has not seen
    distances beyond its training context). A 2-D `attention_mask` (1 = token, 0 = padding) hides padded keys;
    every query still sees itself, so a padded row stays finite."""
    batch, device = inputs_embeds.shape[0], inputs_embeds.device
    window, sinks = config.attention_window, config.attention_sinks
    q = position_ids.to(device).expand(batch, -1)
    k = torch.cat([sink_window_positions(past, window, sinks).to(device).expand(batch, -1), q], dim=1)
    if q.shape[1] > 1 and not bool((q[:, 1:] > q[:, :-1]).all()):
        raise ValueError("attention sinks need increasing position_ids within a forward")
    sink_columns = int((k[0] < sinks).sum())
    allowed = (k[:, None, :] <= q[:, :, None]) & ((q[:, :, None] - k[:, None, :] < window) | (k[:, None, :] < sinks))
    if attention_mask is not None:
        if attention_mask.dim() != 2 or attention_mask.shape[-1] <= int(k.max()):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}; with attention sinks it must be "
                             f"2-D [batch, tokens so far] covering position {int(k.max())}")
        keep = attention_mask.to(device).bool().gather(1, k)
        allowed = (allowed & keep[:, None, :]) | (k[:, None, :] == q[:, :, None])
    shift = q.clamp(max=window + sinks - 1) - q
    freqs = shift[..., None].float() * rotary.inv_freq.float().to(device)
    emb = torch.cat((freqs, freqs), dim=-1)
    rotation = (emb.cos().to(inputs_embeds.dtype), emb.sin().to(inputs_embeds.dtype))
    blocks = []
    for a in range(0, q.shape[1], SINK_QUERY_BLOCK):
        b = min(a + SINK_QUERY_BLOCK, q.shape[1])
        lo = int(torch.searchsorted(k[0].contiguous(), q[0, a] - window + 1))
        hi = int(torch.searchsorted(k[0].contiguous(), q[0, b - 1], right=True))
        blocks.append((a, b, max(lo, sink_columns), max(hi, sink_columns)))
    decode = q.shape[1] == 1 and bool(allowed.all())
    return SinkWindowLayout(allowed[:, None], sink_columns, rotation, blocks, decode)


class SinkWindowAttention(LlamaAttention):
    """Llama attention (transformers' projections and RoPE) over a sliding window plus attention sinks, as
    `sink_window_layout` defines it: the sink keys are scored with the query rotated by `layout.rotation`, the
    window's keys with the query itself, and one softmax covers both."""

    def forward(self, hidden_states: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor],
                attention_mask=None, *, sink_layout: SinkWindowLayout, **kwargs):
        cache = take_cache(kwargs, "SinkWindowAttention")
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        query, key = apply_rotary_pos_emb(query, key, *position_embeddings)
        cos, sin = (t[:, None] for t in sink_layout.rotation)
        sink_query = query * cos + rotate_half(query) * sin
        if cache is not None and sink_layout.decode and not torch.is_grad_enabled():
            out = cache.layers[self.layer_idx].attend_next(query, sink_query, key, value, self.scaling)
            return self.o_proj(out.transpose(1, 2).reshape(*input_shape, -1)), None
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        key, value = repeat_kv(key, self.num_key_value_groups), repeat_kv(value, self.num_key_value_groups)
        n, mask = sink_layout.sink_columns, sink_layout.mask
        out = torch.empty_like(query)
        for a, b, lo, hi in sink_layout.blocks:
            scores = torch.cat([sink_query[:, :, a:b] @ key[:, :, :n].transpose(2, 3),
                                query[:, :, a:b] @ key[:, :, lo:hi].transpose(2, 3)], dim=-1) * self.scaling
            seen = torch.cat([mask[:, :, a:b, :n], mask[:, :, a:b, lo:hi]], dim=-1)
            probs = torch.softmax(scores.float().masked_fill(~seen, float("-inf")), dim=-1).to(value.dtype)
            out[:, :, a:b] = probs @ torch.cat([value[:, :, :n], value[:, :, lo:hi]], dim=-2)
        return self.o_proj(out.transpose(1, 2).reshape(*input_shape, -1)), None


class SinkWindowDecoderLayer(LlamaDecoderLayer):
    """A kept (attention) decoder layer of a model with attention sinks."""

    def __init__(self, config: TTTLlamaConfig, layer_idx: int):
        super().__init__(config, layer_idx)
        self.self_attn = SinkWindowAttention(config, layer_idx)


class BesideSinkWindowAttention(BesideMixin, SinkWindowAttention):
    """Sliding window + attention sinks with a TTT branch beside it."""

    def __init__(self, config: TTTLlamaConfig, layer_idx: int):
        super().__init__(config, layer_idx)
        self._add_ttt_branch(config)


class BesideDecoderLayer(LlamaDecoderLayer):
    """A decoder layer whose attention (full, windowed or with sinks, as the model's other layers) has a TTT branch
    beside it."""

    def __init__(self, config: TTTLlamaConfig, layer_idx: int):
        super().__init__(config, layer_idx)
        sinks = config.attention_window is not None and config.attention_sinks
        self.self_attn = (BesideSinkWindowAttention if sinks else BesideAttention)(config, layer_idx)


class TTTLlamaModel(TTTLlamaPreTrainedModel, LlamaModel):
    def __init__(self, config: TTTLlamaConfig):
        TTTLlamaPreTrainedModel.__init__(self, config)
        self.padding_idx = config.pad_token_id
        self.vocab_size = config.vocab_size
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        ttt = set(config.ttt_layers)
        kept = SinkWindowDecoderLayer if config.attention_window is not None and config.attention_sinks else \
            LlamaDecoderLayer
        with_ttt = TTTDecoderLayer if config.ttt_mode == "replace" else BesideDecoderLayer
        self.layers = nn.ModuleList(
            [(with_ttt if i in ttt else kept)(config, i) for i in range(config.num_hidden_layers)]
        )
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config=config)
        self.gradient_checkpointing = False
        self.post_init()

    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        """The cache comes as `cache=` or `past_key_values=` (transformers renamed it in 5.24); either works."""
        if (input_ids is None) ^ (inputs_embeds is not None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        cache = take_cache(kwargs, "TTTLlamaModel.forward")
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if use_cache and cache is None:
            cache = TTTHybridCache(self.config)
        if cache is not None and not isinstance(cache, TTTHybridCache):
            raise TypeError(
                f"the cache is a {type(cache).__name__}; a TTT-Llama model needs a TTTHybridCache "
                "(pass None and one is created, or use model.make_cache())")
        if self.config.ttt_layers:
            _check_padding(attention_mask, caching=cache is not None)

        if position_ids is None:
            past_seen = cache.get_seq_length() if cache is not None else 0
            position_ids = (torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device) + past_seen).unsqueeze(0)

        window = self.config.attention_window
        if window is not None and self.config.attention_sinks:
            past = cache.get_seq_length() if cache is not None else 0
            kwargs["sink_layout"] = sink_window_layout(self.config, self.rotary_emb, inputs_embeds, attention_mask,
                                                       position_ids, past)
            causal_mask = None
        else:
            mask_fn = create_causal_mask if window is None else create_sliding_window_causal_mask
            causal_mask = mask_fn(
                config=self.config,
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                position_ids=position_ids,
                **{CACHE_ARG: cache},
            )
        if window is not None and not self.config.attention_sinks:
            kwargs["sliding_window"] = window  # read by the flash-attention kernels; sdpa/eager use the mask

        hidden_states = inputs_embeds
        position_embeddings = self.rotary_emb(hidden_states, position_ids=position_ids)
        for decoder_layer in self.layers[: self.config.num_hidden_layers]:
            hidden_states = decoder_layer(
                hidden_states,
                attention_mask=causal_mask,
                position_embeddings=position_embeddings,
                position_ids=position_ids,
                use_cache=use_cache,
                **{CACHE_ARG: cache},
                **kwargs,
            )
        hidden_states = self.norm(hidden_states)
        return BaseModelOutputWithPast(last_hidden_state=hidden_states, **{CACHE_ARG: cache})


class TTTLlamaForCausalLM(TTTLlamaPreTrainedModel, LlamaForCausalLM):
    """Causal LM head over `TTTLlamaModel`; `generate()` creates its `TTTHybridCache` by itself."""

    def __init__(self, config: TTTLlamaConfig):
        TTTLlamaPreTrainedModel.__init__(self, config)
        self.model = TTTLlamaModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def make_cache(self) -> TTTHybridCache:
        """An empty cache for manual loops: pass it as `cache=` (transformers >= 5.24) or `past_key_values=`."""
        return TTTHybridCache(self.config)

    def _prepare_cache_for_generation(self, generation_config, model_kwargs, *args, **kwargs):
        if model_kwargs.get(CACHE_ARG) is None and generation_config.use_cache is not False:
            if generation_config.cache_implementation not in (None, "dynamic"):
                raise ValueError(
                    f"cache_implementation={generation_config.cache_implementation!r} is not supported by TTT-Llama; "
                    "its cache is a TTTHybridCache (leave cache_implementation unset)")
            model_kwargs[CACHE_ARG] = self.make_cache()
            return None
        return super()._prepare_cache_for_generation(generation_config, model_kwargs, *args, **kwargs)


__all__ = ["TTTLlamaForCausalLM", "TTTLlamaModel", "TTTLlamaPreTrainedModel", "TTTAttention", "TTTDecoderLayer",
           "SinkWindowAttention", "BesideDecoderLayer", "BesideMixin"]
