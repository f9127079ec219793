"""Spoken (or typed) multi-turn chat with an OmniSpeechTTT model: `ttt-omni chat`.

Each turn is appended to the conversation's TTT state, kept by `ConversationStore` (saved after every turn, so a
conversation continues across restarts with the same state). The prompt follows LLaMA-Omni's Llama-3 template when
the tokenizer has Llama-3 header tokens (system prompt once, then user / assistant turns; a speech turn is
"<speech>\\nPlease directly answer the questions in the user's speech."), and a plain "User: / Assistant:" template
otherwise. Replies stream: every `chunk_tokens` tokens the text so far is printed and the chunk's units are vocoded,
so audio can start before the reply ends.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ttt_omni.conversation import ConversationStore

from .audio import load_wav, save_wav
from .model import DEFAULT_SPEECH_TOKEN, SPEECH_TOKEN_INDEX, OmniSpeechTTT, ReplyChunk
from .omni_checkpoint import load_omni
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


# ---------------------------------------------------------------- command line
def add_chat_command(subparsers) -> None:
    p = subparsers.add_parser("chat", help="one turn of a spoken/typed conversation with an Omni model",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="LLaMA-Omni checkpoint directory (original or converted)")
    p.add_argument("--conversation", required=True, help="conversation id; its state is kept across calls")
    turn = p.add_mutually_exclusive_group(required=True)
    turn.add_argument("--wav", help="the user's turn as a WAV file (resampled to 16 kHz mono)")
    turn.add_argument("--text", help="the user's turn as text")
    p.add_argument("--conversations", default="conversations", help="directory of saved conversation states")
    p.add_argument("--out", default=None, help="reply WAV (default: CONVERSATIONS/ID-reply.wav)")
    p.add_argument("--vocoder", default=None,
                   help="unit HiFi-GAN directory or generator file (default: MODEL/vocoder)")
    p.add_argument("--no-audio", action="store_true", help="text and units only")
    p.add_argument("--speech-encoder", default=None, help="Whisper .pt or directory, if not in the checkpoint")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--chunk-tokens", type=int, default=8, help="reply tokens per streamed text/audio chunk")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--reset", action="store_true", help="start the conversation over")
    p.set_defaults(func=_run_chat)


def _run_chat(args) -> int:
    from transformers import AutoTokenizer

    try:
        model = load_omni(args.model, speech_encoder=args.speech_encoder)
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        vocoder = None
        if not args.no_audio:
            path = Path(args.vocoder) if args.vocoder else Path(args.model) / "vocoder"
            if not path.exists():
                raise FileNotFoundError(f"no vocoder at {path}: pass --vocoder DIR (g_00500000 + config.json) "
                                        "or --no-audio")
            vocoder = UnitVocoder.from_pretrained(path)
        store = ConversationStore(model.llm, args.conversations)
        if args.reset:
            store.reset(args.conversation)
        chat = OmniChat(model, tokenizer, store, vocoder)
        sampling = {"do_sample": args.temperature > 0, "temperature": args.temperature or 1.0, "top_p": args.top_p}

        def show(chunk, text):
            print(text, end="", flush=True)

        reply = chat.turn(args.conversation, wav=args.wav, text=args.text, max_new_tokens=args.max_new_tokens,
                          chunk_tokens=args.chunk_tokens, audio=not args.no_audio, on_chunk=show, **sampling)
        print()
        store.save(args.conversation)
        print(f"units: {len(reply.units)}")
        if reply.audio is not None:
            out = Path(args.out) if args.out else Path(args.conversations) / f"{args.conversation}-reply.wav"
            save_wav(out, reply.audio, vocoder.sample_rate)
            print(f"audio: {out} ({len(reply.audio)} samples, {len(reply.audio) / vocoder.sample_rate:.3f} s)")
    except (OSError, ValueError) as e:
        print(f"ttt-omni chat: error: {e}", file=sys.stderr)
        return 2
    return 0


__all__ = ["OmniChat", "ChatReply", "add_chat_command", "turn_text", "tokenize_with_speech", "SYSTEM_PROMPT"]
