"""Haystacks: exactly n token ids of text to hide sentences in, in the model's tokenizer.

  filler   the passkey test's repeated sentences ("The grass is green. The sky is blue. ...")
  books    a corpus (the bundled eval books, or any `evalsuite.corpus` corpus) from a seeded paragraph start,
           running on into the next documents (blank line between) when one ends
The text a seed picks does not depend on the tokenizer; only where its n tokens end does.
"""
from __future__ import annotations

import random
from collections.abc import Callable

from ..corpus import Document
from ..errors import CorpusError

FILLER = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
KINDS = ("books", "filler")

Haystack = Callable[[int], list[int]]  # n -> exactly n token ids


def filler(tokenizer) -> Haystack:
    ids = tokenizer(FILLER, add_special_tokens=False)["input_ids"]
    return lambda n: (ids * (n // len(ids) + 1))[:n]


class Corpus:
    """Documents read once; `haystack(tokenizer, rng)` starts at a paragraph the rng picks."""

    def __init__(self, docs: list[Document], name: str):
        self.name = name
        self.texts = [d.read() for d in docs]
        if not self.texts:
            raise CorpusError(f"corpus {name}: no documents to build a haystack from")

    def start(self, rng: random.Random) -> tuple[int, int]:
        """(document, character offset) of a paragraph start chosen by `rng`."""
        doc = rng.randrange(len(self.texts))
        text = self.texts[doc]
        offset = text.find("\n\n", rng.randrange(len(text)))
        if offset == -1:
            return doc, 0
        while offset < len(text) and text[offset].isspace():
            offset += 1
        return (doc, offset) if offset < len(text) else (doc, 0)

    def text(self, doc: int, offset: int, chars: int) -> tuple[str, bool]:
        """Up to `chars` characters from (doc, offset) on, through the next documents (each once); and whether
        that is all the corpus holds from there."""
        parts, size, first = [], 0, True
        for i in range(len(self.texts)):
            t = self.texts[(doc + i) % len(self.texts)]
            piece = t[offset:] if first else t
            if not first:
                piece = "\n\n" + piece
            parts.append(piece[: chars - size])
            size += len(parts[-1])
            first = False
            if size >= chars:
                return "".join(parts), False
        return "".join(parts), True

    def haystack(self, tokenizer, rng: random.Random) -> Haystack:
        doc, offset = self.start(rng)

        def tokens(n: int) -> list[int]:
            chars = 4 * n + 256
            while True:
                text, whole = self.text(doc, offset, chars)
                ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
                if len(ids) > n + 16 or whole:  # the last tokens of a cut text may differ; keep a margin
                    break
                chars *= 2
            if len(ids) < n:
                raise CorpusError(f"corpus {self.name}: {len(ids)} tokens in all, but the haystack needs {n}; give "
                                  "a larger corpus or shorter lengths")
            return ids[:n]

        return tokens
