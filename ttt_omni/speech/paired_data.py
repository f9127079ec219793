"""Paired speech data: sentences of the bundled books (and optional reply texts) spoken by an offline TTS voice.

`build(out_dir, ...)` writes `out_dir/wav/ID.wav` and one manifest line per utterance in `out_dir/manifest.jsonl`:
{"id", "text", "wav" (relative to the manifest), "voice", "words_per_minute", "duration_s", "split", "source"}.
Split `train`: sentences of the train books and the reply texts (what units, vocoder and decoder are fitted on);
split `heldout`: sentences of the eval books, only ever used to measure (resynthesis WER). The selection is
deterministic (evenly spaced over each book, skipping its first tenth of front matter) and so is the speech
(tts.speak), so a rebuild gives the same files. Resumable: an utterance already in the manifest is skipped; each
line is appended (and flushed) only after its WAV is complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ttt_omni.data_manifest import books

from .audio import load_wav
from .tts import speak

MANIFEST = "manifest.jsonl"
_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'", "\u2014": ", ", "\u2013": "-"})
_SPEAKABLE = re.compile(r"[A-Za-z ,.;:'!?\"-]+")


@dataclass(frozen=True)
class Utterance:
    text: str
    split: str  # train | heldout
    source: str  # book file, or "replies"


def book_sentences(text: str, min_words: int = 6, max_words: int = 20) -> list[str]:
    """Speakable sentences of a book in order: plain letters and punctuation only (no digits, underscores or
    brackets: editors' notes and headings), `min_words`..`max_words` words, not all in capitals."""
    text = text.translate(_QUOTES)
    out = []
    for paragraph in re.split(r"\n\s*\n", text):
        flat = " ".join(paragraph.split())
        for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", flat):
            sentence = sentence.strip(" \"'")
            words = sentence.split()
            if (min_words <= len(words) <= max_words and _SPEAKABLE.fullmatch(sentence)
                    and sentence[-1] in ".!?" and not sentence.isupper()):
                out.append(sentence)
    return out


def spaced(items: list, n: int) -> list:
    """`n` items evenly spaced over the list, skipping its first tenth (front matter); all if fewer."""
    items = items[len(items) // 10:]
    if len(items) <= n:
        return items
    return [items[(2 * i + 1) * len(items) // (2 * n)] for i in range(n)]


def select(per_train_book: int = 20, per_eval_book: int = 6, replies: list[str] = (),
           books_dir: Path | None = None) -> list[Utterance]:
    """The utterances to speak, in a fixed order: train-book sentences, reply texts, eval-book sentences."""
    out = [Utterance(s, "train", b.file) for b in books("train", books_dir)
           for s in spaced(book_sentences(b.read()), per_train_book)]
    out += [Utterance(" ".join(r.split()), "train", "replies") for r in replies if r.strip()]
    out += [Utterance(s, "heldout", b.file) for b in books("eval", books_dir)
            for s in spaced(book_sentences(b.read()), per_eval_book)]
    return out


def utterance_id(text: str, voice: str, words_per_minute: int) -> str:
    return hashlib.sha1(f"{voice}|{words_per_minute}|{text}".encode()).hexdigest()[:16]


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Manifest rows; a torn last line (a build killed mid-write) is ignored, any other bad line is an error."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"speech manifest not found: {path} (build one with `ttt-omni units data`)")
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):
                break
            raise ValueError(f"{path}:{n}: not a JSON line; expected a speech manifest row") from None
        missing = {"id", "text", "wav", "split"} - set(row)
        if missing:
            raise ValueError(f"{path}:{n}: manifest row lacks {sorted(missing)}")
        row["wav_path"] = str(path.parent / row["wav"])
        rows.append(row)
    return rows


def build(out_dir: str | os.PathLike, utterances: list[Utterance], voice: str = "espeak:en-us",
          words_per_minute: int = 160, progress=None) -> list[dict]:
    """Speaks every utterance not yet in `out_dir/manifest.jsonl`; returns all manifest rows."""
    out_dir = Path(out_dir)
    (out_dir / "wav").mkdir(parents=True, exist_ok=True)
    manifest = out_dir / MANIFEST
    rows = read_manifest(manifest) if manifest.is_file() else []
    done = {r["id"] for r in rows}
    if rows:  # rewritten without a torn last line before appending
        manifest.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "wav_path"}) + "\n"
                                    for r in rows), encoding="utf-8")
    todo = [u for u in utterances if utterance_id(u.text, voice, words_per_minute) not in done]
    with manifest.open("a", encoding="utf-8") as f:
        for n, u in enumerate(todo, 1):
            uid = utterance_id(u.text, voice, words_per_minute)
            wav = speak(u.text, out_dir / "wav" / f"{uid}.wav", voice, words_per_minute)
            row = {"id": uid, "text": u.text, "wav": f"wav/{uid}.wav", "voice": voice,
                   "words_per_minute": words_per_minute, "duration_s": round(len(load_wav(wav)) / 16000, 3),
                   "split": u.split, "source": u.source}
            f.write(json.dumps(row) + "\n")
            f.flush()
            done.add(uid)
            if progress:
                progress(n, len(todo), row)
    return read_manifest(manifest)


__all__ = ["MANIFEST", "Utterance", "book_sentences", "build", "read_manifest", "select", "spaced", "utterance_id"]
