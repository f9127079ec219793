"""Documents to evaluate on: the bundled books (by split) or a user corpus (a .txt file, a folder of .txt files, or a
.jsonl file whose lines are objects with a "text" field)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ttt_omni.data_manifest import books

from .errors import CorpusError


@dataclass(frozen=True)
class Document:
    key: str  # unique within the corpus: file name, or "file.jsonl:LINE"
    path: Path
    line: int | None = None  # for .jsonl documents

    def read(self) -> str:
        return self.text(self.raw())

    def text(self, raw: bytes) -> str:
        """The document's text from its raw bytes; an undecodable or empty document is a CorpusError."""
        try:
            text = raw.decode("utf-8") if self.line is None else json.loads(raw)["text"]
        except UnicodeDecodeError as e:
            raise CorpusError(f"corpus document {self.path} is unreadable ({e}); expected UTF-8 text") from None
        if not text.strip():
            raise CorpusError(f"corpus document {self.key} ({self.path}) is empty")
        return text

    def raw(self) -> bytes:
        """The document's bytes as stored (the file, or its JSONL line), undecoded: what its identity is made of."""
        try:
            if self.line is None:
                return self.path.read_bytes()
            return self.path.read_text(encoding="utf-8").splitlines()[self.line - 1].encode()  # as user_corpus split it
        except (OSError, UnicodeDecodeError) as e:
            raise CorpusError(f"corpus document {self.path} is unreadable ({e}); expected UTF-8 text") from None


def corpus_hash(docs: list[Document]) -> str:
    """sha256 (16 hex) over the documents' keys and bytes, in key order: the same documents give the same hash
    wherever they lie (a copy of the eval books is the eval books), any other set or content another. An unreadable or
    empty document is refused here, before a run is made of it."""
    h = hashlib.sha256()
    for doc in sorted(docs, key=lambda d: d.key):
        raw = doc.raw()
        doc.text(raw)
        h.update(doc.key.encode() + b"\0" + hashlib.sha256(raw).digest())
    return h.hexdigest()[:16]


def bundled_books(split: str = "eval") -> list[Document]:
    try:
        found = books(split=split)
    except ValueError as e:
        raise CorpusError(f"bundled books: {e}") from None
    if not found:
        raise CorpusError(f"bundled books: no book in split {split!r} (data/books/MANIFEST.tsv)")
    return [Document(b.file, b.path) for b in found]


def user_corpus(path: str | Path) -> list[Document]:
    path = Path(path).expanduser()
    if path.is_dir():
        docs = [Document(p.name, p) for p in sorted(path.glob("*.txt"))]
        if not docs:
            raise CorpusError(f"corpus {path}: folder has no .txt files (expected one document per .txt file)")
        return docs
    if not path.exists():
        raise CorpusError(f"corpus {path}: no such file or folder (expected a .txt file, a folder of .txt files, "
                          "or a .jsonl file with a 'text' field per line)")
    if path.suffix == ".jsonl":
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise CorpusError(f"corpus {path}: unreadable ({e}); expected UTF-8 JSON lines") from None
        docs = []
        for i, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                ok = isinstance(json.loads(raw).get("text"), str)
            except (json.JSONDecodeError, AttributeError):
                ok = False
            if not ok:
                raise CorpusError(f"corpus {path}:{i}: expected a JSON object with a string 'text' field")
            docs.append(Document(f"{path.name}:{i}", path, i))
        if not docs:
            raise CorpusError(f"corpus {path}: no documents")
        return docs
    return [Document(path.name, path)]
