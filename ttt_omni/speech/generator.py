"""Speech generator: LLM hidden states -> discrete speech units, by CTC (LLaMA-Omni's `SpeechGeneratorCTC` layout).

Each reply hidden state is repeated `upsample_factor` (lambda = 25) times, projected to the decoder width
(`input_proj`), run through a few transformers `LlamaDecoderLayer`s (`layers`; geometry from `ctc_decoder_config`
"(layers,dim,heads,ffn)", everything else from the LLM's config, as LLaMA-Omni builds it) and projected to
`unit_vocab_size + 1` CTC classes (`output_proj`; the last class is the blank). There is no final norm.

The decoder is non-autoregressive (no unit is fed back) but its self-attention is causal: LLaMA-Omni runs these
layers through flash-attention with `is_causal=True`. That is what makes streaming exact here: the decoder keeps a
KV cache over the upsampled positions it has already seen and runs only over the hidden states of each new text
chunk, so a reply of n tokens costs O(n) decoder passes in total (LLaMA-Omni's streaming re-runs the decoder over
all hidden states at every step, O(n^2)), and the streamed units equal the offline units.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache, LlamaConfig
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

from ttt_omni.hf_compat import CACHE_ARG


def parse_ctc_decoder_config(text: str) -> tuple[int, int, int, int]:
    """"(2,4096,32,11008)" -> (layers, hidden, heads, ffn)."""
    m = re.fullmatch(r"\s*\(?\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)?\s*", str(text))
    if not m:
        raise ValueError(f"ctc_decoder_config {text!r} is malformed; expected '(layers,hidden,heads,ffn)' "
                         "such as '(2,4096,32,11008)'")
    layers, dim, heads, ffn = map(int, m.groups())
    if dim % heads:
        raise ValueError(f"ctc_decoder_config {text!r}: hidden size {dim} is not divisible by {heads} heads")
    return layers, dim, heads, ffn


def decoder_config(llm_config, ctc_decoder_config: str) -> LlamaConfig:
    """The unit decoder's Llama config: the LLM's config with the geometry of `ctc_decoder_config` (MHA)."""
    layers, dim, heads, ffn = parse_ctc_decoder_config(ctc_decoder_config)
    rope = dict(llm_config.rope_parameters) if getattr(llm_config, "rope_parameters", None) else None
    config = LlamaConfig(
        vocab_size=1, hidden_size=dim, num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        intermediate_size=ffn, head_dim=dim // heads, hidden_act=llm_config.hidden_act,
        rms_norm_eps=llm_config.rms_norm_eps, max_position_embeddings=llm_config.max_position_embeddings,
        attention_bias=llm_config.attention_bias, mlp_bias=getattr(llm_config, "mlp_bias", False),
        rope_parameters=rope, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    config._attn_implementation = "sdpa"
    return config


def ctc_collapse(ids, blank: int, previous: int | None = None) -> list[int]:
    """Greedy CTC decoding: merge repeats, then drop blanks. `previous` is the raw label just before `ids` (when
    decoding a stream chunk by chunk), so a repeat across the chunk boundary is merged too."""
    ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    out = []
    for i in ids:
        if i != previous and i != blank:
            out.append(int(i))
        previous = i
    return out


def uniform_upsample(reps: torch.Tensor, length: int) -> torch.Tensor:
    """[T, D] -> [length, D]: output position t copies input floor(t * T / length) (repeat by length/T)."""
    src = reps.shape[0]
    index = torch.div(torch.arange(length, device=reps.device) * src, length, rounding_mode="floor")
    return reps.index_select(0, index)


def _causal_mask(q_len: int, past: int, dtype, device) -> torch.Tensor:
    """Additive mask [1, 1, q_len, past + q_len]: query i (absolute past + i) sees keys 0..past + i."""
    keys = torch.arange(past + q_len, device=device)
    queries = torch.arange(q_len, device=device) + past
    blocked = keys[None, :] > queries[:, None]
    return torch.zeros(q_len, past + q_len, dtype=dtype, device=device).masked_fill(
        blocked, torch.finfo(dtype).min)[None, None]


class SpeechGeneratorCTC(nn.Module):
    def __init__(self, llm_config, ctc_decoder_config: str = "(2,4096,32,11008)", upsample_factor: int = 25,
                 unit_vocab_size: int = 1000):
        super().__init__()
        if upsample_factor < 1 or unit_vocab_size < 1:
            raise ValueError(f"ctc_upsample_factor ({upsample_factor}) and unit_vocab_size ({unit_vocab_size}) "
                             "must be >= 1")
        self.config = decoder_config(llm_config, ctc_decoder_config)
        self.upsample_factor = upsample_factor
        self.unit_vocab_size = unit_vocab_size
        self.input_proj = nn.Linear(llm_config.hidden_size, self.config.hidden_size)
        self.layers = nn.ModuleList(LlamaDecoderLayer(self.config, i) for i in range(self.config.num_hidden_layers))
        self.output_proj = nn.Linear(self.config.hidden_size, unit_vocab_size + 1)
        self.rotary_emb = LlamaRotaryEmbedding(config=self.config)

    @property
    def blank(self) -> int:
        return self.unit_vocab_size

    def decode(self, upsampled: torch.Tensor, cache: DynamicCache | None = None) -> torch.Tensor:
        """Upsampled hidden states [B, T, llm_dim] (positions continuing `cache`) -> CTC logits [B, T, units+1]."""
        past = cache.get_seq_length() if cache is not None else 0
        h = self.input_proj(upsampled.to(self.input_proj.weight.dtype))
        positions = torch.arange(past, past + h.shape[1], device=h.device)[None].expand(h.shape[0], -1)
        position_embeddings = self.rotary_emb(h, position_ids=positions)
        mask = _causal_mask(h.shape[1], past, h.dtype, h.device)
        for layer in self.layers:
            out = layer(h, attention_mask=mask, position_ids=positions, position_embeddings=position_embeddings,
                        **{CACHE_ARG: cache, "use_cache": cache is not None})
            h = out[0] if isinstance(out, tuple) else out
        return self.output_proj(h)

    def logits(self, reps: torch.Tensor, cache: DynamicCache | None = None) -> torch.Tensor:
        """Reply hidden states [T, llm_dim] -> CTC logits [T * upsample_factor, units + 1]."""
        up = reps.repeat_interleave(self.upsample_factor, dim=0)
        return self.decode(up[None], cache)[0]

    @torch.no_grad()
    def predict(self, reps: torch.Tensor) -> list[int]:
        """Offline: all reply hidden states [T, llm_dim] at once -> collapsed units."""
        return ctc_collapse(self.logits(reps).argmax(-1), self.blank)

    def stream(self) -> "UnitStream":
        return UnitStream(self)

    def loss(self, reps: list[torch.Tensor], units: list[torch.Tensor]) -> torch.Tensor:
        """CTC loss of unit targets given each reply's hidden states (LLaMA-Omni's recipe: each reply upsampled to
        max(T * lambda, number of units), summed over the batch, divided by the number of target units)."""
        if len(reps) != len(units) or not reps:
            raise ValueError(f"speech generator loss needs one unit sequence per reply, got {len(reps)} replies "
                             f"and {len(units)} unit sequences")
        lengths = [max(r.shape[0] * self.upsample_factor, int(u.numel())) for r, u in zip(reps, units)]
        longest = max(lengths)
        batch = torch.stack([F.pad(uniform_upsample(r, n), (0, 0, 0, longest - n)) for r, n in zip(reps, lengths)])
        lprobs = F.log_softmax(self.decode(batch).float(), dim=-1)
        targets = torch.cat([u.reshape(-1).long() for u in units]).to(lprobs.device)
        target_lengths = torch.tensor([u.numel() for u in units], device=lprobs.device)
        loss = F.ctc_loss(lprobs.transpose(0, 1), targets, torch.tensor(lengths, device=lprobs.device),
                          target_lengths, blank=self.blank, reduction="sum", zero_infinity=True)
        return loss / target_lengths.sum().clamp(min=1)


class UnitStream:
    """Units of one reply, produced chunk by chunk; the concatenation equals `predict` over the whole reply."""

    def __init__(self, generator: SpeechGeneratorCTC):
        self.generator = generator
        self.cache = DynamicCache()
        self.previous: int | None = None
        self.units: list[int] = []

    @torch.no_grad()
    def push(self, reps: torch.Tensor) -> list[int]:
        """New reply hidden states [t, llm_dim] -> the units they complete (possibly none)."""
        if reps.shape[0] == 0:
            return []
        raw = self.generator.logits(reps, self.cache).argmax(-1).tolist()
        new = ctc_collapse(raw, self.generator.blank, self.previous)
        self.previous = raw[-1]
        self.units.extend(new)
        return new


__all__ = ["SpeechGeneratorCTC", "UnitStream", "ctc_collapse", "parse_ctc_decoder_config", "decoder_config",
           "uniform_upsample"]
