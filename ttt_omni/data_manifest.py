"""The bundled corpus: public-domain books split by book into train and eval sets (data/books/MANIFEST.tsv)."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ttt_omni.resources import bundled



@dataclass(frozen=True)
class Book:
    file: str
    title: str
    author: str
    kind: str  # novel | play | dialogue
    split: str  # train | eval
    path: Path

    def read(self) -> str:
        return self.path.read_text(encoding="utf-8")


def books(split: str | None = None, books_dir: Path | None = None) -> list[Book]:
    """Books of the bundled corpus (or of `books_dir`), optionally only one split ('train' or 'eval'), in manifest
    order."""
    if split not in (None, "train", "eval"):
        raise ValueError(f"split must be 'train', 'eval' or None, got {split!r}")
    books_dir = Path(books_dir) if books_dir is not None else bundled("data", "books")
    manifest = books_dir / "MANIFEST.tsv"
    if not manifest.is_file():
        raise FileNotFoundError(f"corpus manifest not found: {manifest} (expected a TSV with file, title, split columns)")
    out = []
    with manifest.open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            book = Book(row["file"], row["title"], row["author"], row["kind"], row["split"], books_dir / row["file"])
            if split is None or book.split == split:
                out.append(book)
    return out
