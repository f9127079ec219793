"""Calibration text for attention transfer: the bundled train books (never the eval books) or a user corpus, cut
into non-overlapping sequences of tokens; a seeded shuffle splits them into validation and training sequences."""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from ttt_omni.data_manifest import books


@dataclass(frozen=True)
class CalibrationSet:
    train: torch.Tensor  # [n, seq_len] token ids
    validation: torch.Tensor  # [m, seq_len]
    documents: list[str]  # where the text came from
    available: int  # sequences the text holds in all


def corpus_texts(corpus: str | Path | None) -> dict[str, str]:
    """name -> text: the bundled train books when `corpus` is None, else a .txt file or a folder of .txt files."""
    if corpus is None:
        return {b.file: b.read() for b in books("train")}
    path = Path(corpus).expanduser()
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise FileNotFoundError(f"calibration corpus {path}: expected a .txt file or a folder of .txt files")
    texts = {f.name: f.read_text(encoding="utf-8") for f in files}
    empty = [name for name, text in texts.items() if not text.strip()]
    if empty:
        raise ValueError(f"calibration corpus {path}: {empty} hold no text")
    return texts


def calibration_set(tokenizer, corpus: str | Path | None, seq_len: int, sequences: int, validation: int,
                    seed: int = 0) -> CalibrationSet:
    """`sequences` training and `validation` held-out sequences of `seq_len` tokens, each from one document
    (consecutive, non-overlapping chunks), chosen by a seeded shuffle."""
    if seq_len < 2 or sequences < 1 or validation < 0:
        raise ValueError(f"calibration: seq_len={seq_len} must be >= 2, sequences={sequences} >= 1 and "
                         f"validation={validation} >= 0")
    texts = corpus_texts(corpus)
    chunks = []
    for name, text in texts.items():
        ids = tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"]
        chunks += [ids[i:i + seq_len] for i in range(0, len(ids) - seq_len + 1, seq_len)]
    need = sequences + validation
    if len(chunks) < need:
        raise ValueError(f"calibration: the corpus holds {len(chunks)} sequences of {seq_len} tokens; "
                         f"{sequences} + {validation} validation were asked for (use fewer or shorter sequences)")
    random.Random(seed).shuffle(chunks)
    picked = torch.tensor(chunks[:need], dtype=torch.long)
    return CalibrationSet(train=picked[validation:], validation=picked[:validation], documents=sorted(texts),
                          available=len(chunks))
