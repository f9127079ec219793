"""`ttt-omni chat`: one turn of a spoken or typed conversation with an Omni model; the conversation's TTT state is
kept on disk between calls."""
from __future__ import annotations

import argparse
from pathlib import Path

from transformers import AutoTokenizer

from ttt_omni.conversation import ConversationStore
from ttt_omni.speech.audio import save_wav
from ttt_omni.speech.chat import OmniChat
from ttt_omni.speech.chat import __doc__ as chat_doc
from ttt_omni.speech.omni_checkpoint import load_omni
from ttt_omni.speech.vocoder import UnitVocoder


def register(subparsers) -> None:
    p = subparsers.add_parser("chat", help="one turn of a spoken/typed conversation with an Omni model",
                              description=chat_doc, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.set_defaults(func=run)


def run(args) -> int:
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
    return 0
