"""Unit extractor: speech -> discrete units (training targets for the speech generator).

HuBERT features from one transformer layer (transformers' `HubertModel`; LLaMA-Omni's units are mHuBERT layer 11,
1000 k-means clusters, 50 units per second) are assigned to their nearest k-means centroid. Centroids come from a
file the user has: `.npy` / `.pt` / `.safetensors` holding a [K, D] matrix, or a fairseq/sklearn k-means `.bin` /
`.joblib` (read through joblib when installed; it unpickles code, so only load files you trust).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import HubertModel

from .audio import validate_samples


def load_centroids(path: str | os.PathLike) -> torch.Tensor:
    """K-means centroids [K, D] as float32."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"k-means centroids file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        centroids = torch.from_numpy(np.load(str(path), allow_pickle=False))
    elif suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        if len(tensors) != 1:
            raise ValueError(f"{path} holds {sorted(tensors)}; expected a single centroid matrix")
        centroids = next(iter(tensors.values()))
    elif suffix == ".pt":
        centroids = torch.load(str(path), map_location="cpu", weights_only=True)
    elif suffix in (".bin", ".joblib"):
        try:
            import joblib
        except ImportError:
            raise ImportError(f"{path} is a joblib k-means file and joblib is not installed; install joblib and "
                              "scikit-learn, or save its `cluster_centers_` as a .npy file") from None
        centroids = torch.from_numpy(np.asarray(joblib.load(str(path)).cluster_centers_))
    else:
        raise ValueError(f"{path}: unknown centroids format {suffix!r}; expected .npy, .pt, .safetensors, .bin "
                         "or .joblib")
    if not isinstance(centroids, torch.Tensor) or centroids.dim() != 2:
        raise ValueError(f"{path}: expected a [clusters, feature_dim] matrix of centroids")
    return centroids.float()


class UnitExtractor(nn.Module):
    """16 kHz speech -> unit ids, one per HuBERT frame (20 ms)."""

    def __init__(self, hubert: HubertModel, centroids: torch.Tensor, layer: int = 11):
        super().__init__()
        if not 0 <= layer <= hubert.config.num_hidden_layers:
            raise ValueError(f"HuBERT layer {layer} does not exist; the model has layers 1..."
                             f"{hubert.config.num_hidden_layers} (0 = the input to the first layer)")
        if centroids.shape[1] != hubert.config.hidden_size:
            raise ValueError(f"centroids have dimension {centroids.shape[1]} but HuBERT features have "
                             f"{hubert.config.hidden_size}")
        self.hubert = hubert.eval().requires_grad_(False)
        self.layer = layer
        self.register_buffer("centroids", centroids.float(), persistent=False)

    @classmethod
    def from_pretrained(cls, hubert_dir: str | os.PathLike, centroids_path: str | os.PathLike,
                        layer: int = 11) -> "UnitExtractor":
        if not Path(hubert_dir).is_dir():
            raise FileNotFoundError(f"HuBERT checkpoint directory not found: {hubert_dir}")
        return cls(HubertModel.from_pretrained(str(hubert_dir)), load_centroids(centroids_path), layer)

    @property
    def num_units(self) -> int:
        return self.centroids.shape[0]

    @torch.no_grad()
    def features(self, samples) -> torch.Tensor:
        """[T_frames, D] features of the chosen layer (hidden_states[layer]: the output of transformer layer
        `layer`, counting from 1)."""
        wav = torch.from_numpy(validate_samples(samples)).to(self.centroids.device)[None]
        out = self.hubert(wav, output_hidden_states=True)
        return out.hidden_states[self.layer][0].float()

    @torch.no_grad()
    def forward(self, samples) -> torch.Tensor:
        """Unit ids [T_frames] (nearest centroid by Euclidean distance)."""
        return torch.cdist(self.features(samples), self.centroids).argmin(-1)


__all__ = ["UnitExtractor", "load_centroids"]
