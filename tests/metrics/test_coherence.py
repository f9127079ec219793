"""Cosines by hand; with the bundled MiniLM, a text's consecutive windows are more coherent than a shuffle of
windows from several books, and stay closer to the text's opening."""

import random

import numpy as np
import pytest

from evalsuite.metrics.coherence import embed, neighbour_cosines, prompt_cosines
from ttt_omni.data_manifest import books


def test_cosines_by_hand():
    w = [[1, 0], [1, 1], [0, 2]]
    np.testing.assert_allclose(neighbour_cosines(w), [1 / np.sqrt(2), 1 / np.sqrt(2)])
    np.testing.assert_allclose(prompt_cosines([3, 0], w), [1, 1 / np.sqrt(2), 0], atol=1e-12)
    with pytest.raises(ValueError, match="zero embedding"):
        neighbour_cosines([[0, 0], [1, 0]])


def _windows(text: str, n: int, words: int = 60) -> list[str]:
    w = text.split()
    return [" ".join(w[i * words:(i + 1) * words]) for i in range(n)]


def test_shuffled_text_is_less_coherent():
    sources = [b.read()[20_000:40_000] for b in books("eval")[:4]]
    coherent = _windows(sources[0], 8)
    mixed = [w for s in sources for w in _windows(s, 2)]
    random.Random(0).shuffle(mixed)
    e_coh, e_mix = embed(coherent), embed(mixed)
    assert neighbour_cosines(e_coh).mean() > neighbour_cosines(e_mix).mean() + 0.05
    prompt = embed([" ".join(sources[0].split()[-300:])])[0]  # the same book, further on
    assert prompt_cosines(prompt, e_coh).mean() > prompt_cosines(prompt, e_mix).mean()
    with pytest.raises(ValueError, match="text 1 is empty"):
        embed(["fine", "  "])
