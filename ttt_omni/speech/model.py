"""`OmniSpeechTTT`: LLaMA-Omni's architecture around the TTT-Llama hybrid. Speech in, text and speech units out.

    16 kHz speech -> SpeechEncoder (Whisper, frozen) -> SpeechProjector (k frames -> LLM width)
                  -> spliced into the LLM's input embeddings where the prompt holds the speech placeholder (-200)
    LLM (TTTLlamaForCausalLM) -> text tokens; its final hidden states -> SpeechGeneratorCTC -> units -> vocoder

Configuration lives on the LLM's `TTTLlamaConfig` under LLaMA-Omni's own keys (`speech_encoder`,
`speech_encoder_type`, `speech_projector_type`, `speech_encoder_ds_rate`, `speech_encoder_hidden_size`,
`speech_generator_type`, `ctc_decoder_config`, `ctc_upsample_factor`, `ctc_loss_weight`, `unit_vocab_size`) plus
`speech_encoder_config` (the Whisper encoder's dims) so a saved model needs no `.pt` file.

The hidden state used for reply token j is the one that predicted it (LLaMA-Omni's inference: the prompt's last
state, then the states of reply tokens 1..n-1). Training uses the same positions, so training and inference agree.
Checkpoint reading and writing is in `ttt_omni.speech.omni_checkpoint` (`load_omni`, `save_omni`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ttt_omni.hf_compat import cache_kwargs
from ttt_omni.labels import IGNORE_INDEX
from ttt_omni.models import TTTLlamaConfig, TTTLlamaForCausalLM

from .encoder import SpeechEncoder, config_from_dims, whisper_dims
from .generator import SpeechGeneratorCTC
from .projector import SpeechProjector

SPEECH_TOKEN_INDEX = -200
DEFAULT_SPEECH_TOKEN = "<speech>"
SPEECH_DEFAULTS = {
    "speech_encoder_type": "whisper",
    "speech_projector_type": "linear",
    "speech_encoder_ds_rate": 5,
    "speech_encoder_hidden_size": 1280,
    "speech_generator_type": "ctc",
    "ctc_decoder_config": "(2,4096,32,11008)",
    "ctc_upsample_factor": 25,
    "ctc_loss_weight": 1.0,
    "unit_vocab_size": 1000,
}


def speech_setting(config, key: str):
    value = getattr(config, key, None)
    if value is None and key == "ctc_loss_weight":
        value = getattr(config, "tts_loss_weight", None)
    return SPEECH_DEFAULTS[key] if value is None else value


@dataclass
class ReplyChunk:
    """A piece of a streamed reply: new text tokens and the speech units their hidden states completed."""

    tokens: list[int]
    units: list[int]
    final: bool = False


@dataclass
class SpeechSequence:
    """One training or prompt sequence in token space: `input_ids` holds SPEECH_TOKEN_INDEX once per speech
    segment; `labels[i]` is the next-token target of position i (IGNORE_INDEX where nothing is learnt);
    `reply[i]` = k when position i predicts a token of speech reply k (its hidden state feeds the unit decoder)."""

    input_ids: list[int]
    speech: list[np.ndarray] = field(default_factory=list)
    labels: list[int] | None = None
    reply: list[int] | None = None
    units: list[torch.Tensor] = field(default_factory=list)


class OmniLLM(TTTLlamaForCausalLM):
    """The LLM inside OmniSpeechTTT: TTT-Llama, loaded from a checkpoint that also holds the speech tensors (read
    apart by `omni_checkpoint`), so those are expected, not reported as unused."""

    _keys_to_ignore_on_load_unexpected = [r"^model\.speech_encoder\.", r"^model\.speech_projector\.",
                                          r"^speech_generator\."]


class OmniSpeechTTT(nn.Module):
    def __init__(self, config: TTTLlamaConfig, speech_encoder: SpeechEncoder | None = None,
                 llm: TTTLlamaForCausalLM | None = None):
        super().__init__()
        for key in ("speech_encoder_type", "speech_projector_type"):
            expected = SPEECH_DEFAULTS[key]
            if speech_setting(config, key) != expected:
                raise ValueError(f"{key}={speech_setting(config, key)!r} is not supported; expected {expected!r}")
        self.config = config
        self.llm = llm if llm is not None else OmniLLM(config)
        if speech_encoder is None:
            dims = getattr(config, "speech_encoder_config", None)
            if not dims:
                raise ValueError("the config has no speech_encoder_config (Whisper encoder dims); pass a "
                                 "speech_encoder or load with ttt_omni.speech.load_omni")
            speech_encoder = SpeechEncoder(config_from_dims(dims))
        self.speech_encoder = speech_encoder
        config.speech_encoder_config = whisper_dims(speech_encoder.config)
        config.speech_encoder_hidden_size = speech_encoder.hidden_size
        self.speech_projector = SpeechProjector(speech_encoder.hidden_size, config.hidden_size,
                                                speech_setting(config, "speech_encoder_ds_rate"))
        self.speech_generator = None
        gen_type = getattr(config, "speech_generator_type", None)
        if gen_type is not None:
            if gen_type != "ctc":
                raise ValueError(f"speech_generator_type={gen_type!r} is not supported; expected 'ctc'")
            self.speech_generator = SpeechGeneratorCTC(
                config, speech_setting(config, "ctc_decoder_config"), speech_setting(config, "ctc_upsample_factor"),
                speech_setting(config, "unit_vocab_size"))

    @property
    def device(self) -> torch.device:
        return self.llm.device

    # ------------------------------------------------------------ speech in
    def encode_speech(self, samples: np.ndarray) -> torch.Tensor:
        """16 kHz mono samples of any length -> speech embeddings [N, hidden] (window by window)."""
        parts = [self.speech_projector(frames.to(self.speech_projector.linear1.weight.dtype)).flatten(0, 1)
                 for frames in self.speech_encoder.encode_batches(samples)]
        return torch.cat(parts)

    def embed(self, input_ids: list[int], speech: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
        """Token ids with SPEECH_TOKEN_INDEX placeholders + speech embeddings -> input embeddings [1, T', hidden] and
        the expanded ids (the placeholder repeated once per speech position: the conversation's history)."""
        n_speech = sum(1 for t in input_ids if t == SPEECH_TOKEN_INDEX)
        if n_speech != len(speech):
            raise ValueError(f"the prompt has {n_speech} speech placeholders ({DEFAULT_SPEECH_TOKEN}) but "
                             f"{len(speech)} speech inputs were given")
        embed_tokens = self.llm.get_input_embeddings()
        pieces, expanded, text = [], [], []
        speech_iter = iter(speech)

        def flush():
            if text:
                pieces.append(embed_tokens(torch.tensor(text, device=self.device)))
                text.clear()

        for t in input_ids:
            if t == SPEECH_TOKEN_INDEX:
                flush()
                s = next(speech_iter).to(self.device, embed_tokens.weight.dtype)
                pieces.append(s)
                expanded += [SPEECH_TOKEN_INDEX] * s.shape[0]
            else:
                text.append(int(t))
                expanded.append(int(t))
        flush()
        if not pieces:
            raise ValueError("nothing to embed: the turn has neither tokens nor speech")
        return torch.cat(pieces)[None], expanded

    # ------------------------------------------------------------ generation
    def _hidden(self, cache, inputs_embeds=None, input_ids=None) -> torch.Tensor:
        out = self.llm.model(input_ids=input_ids, inputs_embeds=inputs_embeds, **cache_kwargs(cache))
        return out.last_hidden_state[:, -1]

    @staticmethod
    def _pick(logits: torch.Tensor, do_sample: bool, temperature: float, top_p: float | None,
              generator: torch.Generator | None) -> int:
        if not do_sample:
            return int(logits.argmax(-1))
        probs = F.softmax(logits.float() / max(temperature, 1e-5), dim=-1)
        if top_p is not None and top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < top_p
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p * keep)
        return int(torch.multinomial(probs, 1, generator=generator))

    @torch.no_grad()
    def stream_reply(self, cache, inputs_embeds: torch.Tensor, max_new_tokens: int = 256,
                     eos_token_ids: tuple[int, ...] = (), chunk_tokens: int = 8, speech: bool = True,
                     do_sample: bool = False, temperature: float = 1.0, top_p: float | None = None,
                     generator: torch.Generator | None = None) -> Iterator[ReplyChunk]:
        """Prefills `inputs_embeds` onto `cache` and generates a reply, yielding every `chunk_tokens` tokens the new
        tokens and (with `speech`) the units of their hidden states, so audio can start before the reply ends. The
        unit decoder runs once over each chunk's states, continuing its own cache (exactly the offline units).
        The reply's last token is not fed to `cache` (the caller's history keeps it pending)."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if speech and self.speech_generator is None:
            raise ValueError("this model has no speech generator (config speech_generator_type is unset); "
                             "generate text only (speech=False)")
        units = self.speech_generator.stream() if speech else None
        last = self._hidden(cache, inputs_embeds=inputs_embeds)
        tokens, states, n = [], [], 0
        while True:
            token = self._pick(self.llm.lm_head(last)[0], do_sample, temperature, top_p, generator)
            tokens.append(token)
            states.append(last)
            n += 1
            done = token in eos_token_ids or n >= max_new_tokens
            if done or len(tokens) >= chunk_tokens:
                new_units = units.push(torch.cat(states)) if speech else []
                yield ReplyChunk(tokens, new_units, final=done)
                tokens, states = [], []
            if done:
                return
            last = self._hidden(cache, input_ids=torch.tensor([[token]], device=self.device))

    # ------------------------------------------------------------ training
    def forward(self, seq: SpeechSequence, cache=None) -> dict[str, torch.Tensor]:
        """The training losses of `seq` (see `loss`). Training calls the module, not `loss`, because that call is
        what DDP (gradient sync) and FSDP (gathering shards) hook into."""
        return self.loss(seq, cache)

    def loss(self, seq: SpeechSequence, cache=None) -> dict[str, torch.Tensor]:
        """LM loss on the labelled text positions + ctc_loss_weight x CTC loss of the speech replies' units."""
        if seq.labels is None or len(seq.labels) != len(seq.input_ids):
            raise ValueError("a training sequence needs one label per input id")
        speech = [self.encode_speech(s) for s in seq.speech]
        embeds, _ = self.embed(seq.input_ids, speech)
        labels, reply = _expand(seq.input_ids, [s.shape[0] for s in speech], (seq.labels, IGNORE_INDEX),
                                (seq.reply or [-1] * len(seq.input_ids), -1))
        labels = torch.tensor(labels, device=self.device)
        kwargs = cache_kwargs(cache) if cache is not None else {}
        hidden = self.llm.model(inputs_embeds=embeds, **kwargs).last_hidden_state[0]
        logits = self.llm.lm_head(hidden).float()
        lm = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX) if (labels != IGNORE_INDEX).any() \
            else logits.sum() * 0
        out = {"lm": lm, "loss": lm}
        if seq.units:
            if self.speech_generator is None:
                raise ValueError("unit targets were given but the model has no speech generator")
            reply_t = torch.tensor(reply, device=self.device)
            reps = [hidden[reply_t == k] for k in range(len(seq.units))]
            empty = [k for k, r in enumerate(reps) if r.shape[0] == 0]
            if empty:
                raise ValueError(f"speech replies {empty} have unit targets but no text positions")
            ctc = self.speech_generator.loss(reps, [u.to(self.device) for u in seq.units])
            out["ctc"] = ctc
            out["loss"] = lm + float(speech_setting(self.config, "ctc_loss_weight")) * ctc
        return out


def _expand(input_ids: list[int], lengths: list[int], *columns: tuple[list[int], int]) -> list[list[int]]:
    """Per-position lists in token space -> the same lists over the spliced sequence: the k-th speech placeholder
    becomes `lengths[k]` positions, each holding the column's fill value (learn nothing, feed no reply)."""
    outs = [[] for _ in columns]
    k = 0
    for i, t in enumerate(input_ids):
        for out, (values, fill) in zip(outs, columns):
            out += [fill] * lengths[k] if t == SPEECH_TOKEN_INDEX else [values[i]]
        k += t == SPEECH_TOKEN_INDEX
    return outs


__all__ = ["OmniSpeechTTT", "ReplyChunk", "SpeechSequence", "SPEECH_TOKEN_INDEX", "DEFAULT_SPEECH_TOKEN",
           "SPEECH_DEFAULTS", "speech_setting", "OmniLLM"]
