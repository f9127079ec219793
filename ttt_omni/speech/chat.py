"""Spoken (or typed) multi-turn chat with an OmniSpeechTTT model: `ttt-omni chat`.

Each turn is appended to the conversation's TTT state, kept by `ConversationStore` (saved after every turn, so a
conversation continues across restarts with the same state). The prompt follows LLaMA-Omni's Llama-3 template when
the tokenizer has Llama-3 header tokens (system prompt once, then user / assistant turns; a speech turn is
"<speech>\\nPlease directly answer the questions in the user's speech."), and a plain "User: / Assistant:" template
otherwise. Replies stream: every `chunk_tokens` tokens the text so far is printed and the chunk's units are vocoded,
so audio can start before the reply ends.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ttt_omni.conversation import ConversationStore

from .audio import load_wav
from .model import DEFAULT_SPEECH_TOKEN, SPEECH_TOKEN_INDEX, OmniSpeechTTT, ReplyChunk
from .vocoder import UnitVocoder

SYSTEM_PROMPT = ("You are a helpful language and speech assistant. You are able to understand the speech content "
                 "that the user provides, and assist the user with a variety of tasks using natural language.")
SPEECH_INSTRUCTION = DEFAULT_SPEECH_TOKEN + "\nPlease directly answer the questions in the user's speech."
_LLAMA3 = ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")


def _has_tokens(tokenizer, tokens) -> bool:
    vocab = tokenizer.get_vocab()
    return all(t in vocab for t in tokens)


def turn_text(tokenizer, content: str, first: bool) -> str:
    """The prompt text of one user turn, ending where the assistant's reply begins."""
    if _has_tokens(tokenizer, _LLAMA3):
        head = (f"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{SYSTEM_PROMPT}<|eot_id|>"
                if first else "")
        return (f"{head}<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n")
    return ("" if first else "\n\n") + f"User: {content}\n\nAssistant:"


def tokenize_with_speech(tokenizer, text: str) -> list[int]:
    """Token ids of `text` with SPEECH_TOKEN_INDEX where it says <speech> (as LLaMA-Omni's tokenizer_speech_token)."""
    ids: list[int] = []
    for n, piece in enumerate(text.split(DEFAULT_SPEECH_TOKEN)):
        if n:
            ids.append(SPEECH_TOKEN_INDEX)
        if piece:
            ids += tokenizer(piece, add_special_tokens=False)["input_ids"]
    return ids


def stop_tokens(tokenizer) -> tuple[int, ...]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    if "<|eot_id|>" in tokenizer.get_vocab():
        ids.add(tokenizer.convert_tokens_to_ids("<|eot_id|>"))
    return tuple(sorted(ids))


@dataclass
class ChatReply:
    text: str
    tokens: list[int]
    units: list[int]
    audio: np.ndarray | None = None
    chunks: list[ReplyChunk] = field(default_factory=list)


class OmniChat:
    """Turns of spoken or typed conversations, each with its own TTT state in `store`."""

    def __init__(self, model: OmniSpeechTTT, tokenizer, store: ConversationStore, vocoder: UnitVocoder | None = None):
        if store.model is not model.llm:
            raise ValueError("the ConversationStore must be built on the OmniSpeechTTT model's LLM (model.llm)")
        self.model, self.tokenizer, self.store, self.vocoder = model, tokenizer, store, vocoder

    @torch.no_grad()
    def turn(self, conversation_id: str, wav: str | os.PathLike | None = None, text: str | None = None,
             speech: np.ndarray | None = None, max_new_tokens: int = 256, chunk_tokens: int = 8,
             audio: bool = True, on_chunk: Callable[[ReplyChunk, str], None] | None = None,
             **sampling) -> ChatReply:
        """One user turn (a WAV file, 16 kHz samples, or text) -> the reply's text, units and audio. The
        conversation's state includes the turn and the reply afterwards; save it with `store.save`."""
        if sum(x is not None for x in (wav, text, speech)) != 1:
            raise ValueError("a turn is exactly one of wav=PATH, speech=SAMPLES or text=STRING")
        if audio and self.vocoder is None:
            raise ValueError("no vocoder loaded: pass one to OmniChat (unit HiFi-GAN: g_00500000 + config.json) "
                             "or ask for text and units only (audio=False)")
        if wav is not None:
            speech = load_wav(wav)
        conv = self.store.get(conversation_id)
        content = SPEECH_INSTRUCTION if speech is not None else text
        ids = tokenize_with_speech(self.tokenizer, turn_text(self.tokenizer, content, first=not conv.token_ids))
        pending = conv.pending
        embeds_speech = [self.model.encode_speech(speech)] if speech is not None else []
        inputs_embeds, expanded = self.model.embed(pending + ids, embeds_speech)
        reply = ChatReply("", [], [], chunks=[])
        pieces = []
        for chunk in self.model.stream_reply(conv.cache, inputs_embeds, max_new_tokens=max_new_tokens,
                                             eos_token_ids=stop_tokens(self.tokenizer), chunk_tokens=chunk_tokens,
                                             speech=self.model.speech_generator is not None, **sampling):
            reply.chunks.append(chunk)
            reply.tokens += chunk.tokens
            reply.units += chunk.units
            if audio and chunk.units:
                pieces.append(self.vocoder(torch.tensor(chunk.units)).cpu().numpy())
            if on_chunk is not None:
                on_chunk(chunk, self.tokenizer.decode(chunk.tokens, skip_special_tokens=True))
        conv.token_ids.extend(expanded[len(pending):] + reply.tokens)
        reply.text = self.tokenizer.decode(reply.tokens, skip_special_tokens=True).strip()
        if audio:
            reply.audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
        return reply


__all__ = ["OmniChat", "ChatReply", "turn_text", "tokenize_with_speech", "SYSTEM_PROMPT"]
