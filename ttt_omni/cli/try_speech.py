"""`ttt-omni try-speech`: the whole speech pipeline in one command, on tiny random weights (no 8B checkpoint needed).

It writes a tiny LLaMA-Omni checkpoint in the real on-disk layout (Whisper encoder, projector, Llama, CTC unit
generator, unit vocoder), converts it to the TTT hybrid with `ttt-omni convert`'s code, and runs one chat turn:
speech in (a WAV you give, or a question spoken by espeak-ng), text and speech out. The weights are random, so the
reply is meaningless: this shows the parts working together and where the files go, not what a trained model says.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from transformers import AutoTokenizer

from ttt_omni.conversation import ConversationStore
from ttt_omni.speech.audio import save_wav
from ttt_omni.speech.chat import OmniChat
from ttt_omni.speech.omni_checkpoint import convert_omni_checkpoint, load_omni
from ttt_omni.speech.tiny import write_llama_omni
from ttt_omni.speech.vocoder import UnitVocoder

QUESTION = "what is the weather like today?"


def register(subparsers) -> None:
    p = subparsers.add_parser("try-speech", help="the speech pipeline end to end on tiny random weights (replies are "
                              "meaningless)", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default="try-speech", help="where the tiny checkpoints, conversation and reply go "
                   "(default: ./try-speech; must not exist yet)")
    p.add_argument("--wav", default=None, help=f"the spoken turn (default: espeak-ng says {QUESTION!r})")
    p.set_defaults(func=run)


def _question(path: Path) -> Path:
    espeak, sox = shutil.which("espeak-ng"), shutil.which("sox")
    if espeak is None or sox is None:
        raise FileNotFoundError("espeak-ng and sox speak the default question; install them (Debian: apt-get install "
                                "espeak-ng sox) or give a WAV with --wav")
    raw = path.with_suffix(".raw.wav")
    subprocess.run([espeak, "-w", str(raw), QUESTION], check=True, capture_output=True)
    subprocess.run([sox, "-D", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(path)], check=True, capture_output=True)
    raw.unlink()
    return path


def run(args) -> int:
    root = Path(args.dir)
    if root.exists():
        raise FileExistsError(f"{root} exists; choose a new --dir")
    print("writing a tiny random LLaMA-Omni checkpoint (Whisper encoder, projector, Llama, unit generator, vocoder)")
    source = write_llama_omni(root / "llama-omni", speaks=True)
    print(f"converting it to the TTT hybrid (TTT-Linear in layers 2-3): {root / 'ttt-omni'}")
    print(convert_omni_checkpoint(source, root / "ttt-omni", ttt_layers=[2, 3], mini_batch_size=4).summary())
    wav = Path(args.wav) if args.wav else _question(root / "question.wav")
    model = load_omni(root / "ttt-omni")
    chat = OmniChat(model, AutoTokenizer.from_pretrained(root / "ttt-omni"),
                    ConversationStore(model.llm, root / "conversations"),
                    UnitVocoder.from_pretrained(root / "ttt-omni" / "vocoder"))
    print(f"one turn: speech in ({wav}), text and speech out; reply text (random weights, meaningless): ", end="")
    reply = chat.turn("demo", wav=str(wav), max_new_tokens=24, on_chunk=lambda chunk, text: print(text, end="",
                                                                                                    flush=True))
    print()
    out = save_wav(root / "reply.wav", reply.audio, chat.vocoder.sample_rate)
    chat.store.save("demo")
    print(f"reply: {len(reply.tokens)} tokens, {len(reply.units)} speech units, {len(reply.audio)} samples -> {out}")
    print(f"next turns: ttt-omni chat --model {root / 'ttt-omni'} --conversation demo --conversations "
          f"{root / 'conversations'} --text \"Go on.\"")
    return 0
