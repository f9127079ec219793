"""Units fitted here, with no hub weights: 80-bin log-mel frames at 50 Hz -> nearest of K k-means centroids.

The same interface as `units.UnitExtractor` (mHuBERT + k-means, kept for real checkpoints): `features(samples)`,
`forward(samples)` -> unit ids (one per 20 ms frame), `num_units`, `from_pretrained(dir)`; `fit(...)` makes one
from speech. A checkpoint is a directory: `config.json` (feature settings and how it was fitted) and
`centroids.safetensors` ([K, 80] float32, a few hundred KB). Because the features are log-mels, each centroid is
also that unit's mean spectrum, which `CodebookGriffinLim` turns back into audio (the reference vocoder).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ttt_omni.atomic import write_text

from .audio import SAMPLE_RATE, validate_samples

KIND = "logmel-kmeans"
MEL = {"sample_rate": SAMPLE_RATE, "n_fft": 1024, "win_length": 1024, "hop_length": 320, "n_mels": 80,
       "f_min": 0.0, "f_max": 8000.0, "log_floor": 1e-5}


class LogMel(nn.Module):
    """Samples -> [T, n_mels] natural-log mel magnitudes (Hann window, centred frames: T = len // hop + 1)."""

    def __init__(self, sample_rate: int, n_fft: int, win_length: int, hop_length: int, n_mels: int, f_min: float,
                 f_max: float, log_floor: float):
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        self.n_fft, self.win_length, self.hop_length, self.log_floor = n_fft, win_length, hop_length, log_floor
        fb = mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=f_min,
                             max_frequency=f_max, sampling_rate=sample_rate, norm="slaney", mel_scale="slaney")
        self.register_buffer("filters", torch.from_numpy(np.asarray(fb, dtype=np.float32)), persistent=False)
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

    def magnitude(self, wav: torch.Tensor) -> torch.Tensor:
        """[..., samples] -> linear STFT magnitudes [..., n_fft // 2 + 1, T]."""
        spec = torch.stft(wav, self.n_fft, self.hop_length, self.win_length, self.window, center=True,
                          pad_mode="reflect", return_complex=True)
        return spec.abs()

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """[..., samples] -> [..., T, n_mels]."""
        mel = torch.matmul(self.magnitude(wav).transpose(-1, -2), self.filters)
        return torch.log(torch.clamp(mel, min=self.log_floor))


def kmeans(x: torch.Tensor, k: int, iters: int = 20, seed: int = 0, chunk: int = 16384) -> tuple[torch.Tensor, float]:
    """Lloyd's k-means with k-means++ seeding (deterministic for a seed): centroids [k, D] and the final mean
    squared distance to the nearest centroid. An empty cluster takes the point farthest from its centroid."""
    x = x.float()
    n = x.shape[0]
    if n < k:
        raise ValueError(f"k-means needs at least K={k} frames, got {n}; use more speech or a smaller K")
    gen = torch.Generator().manual_seed(seed)
    centroids = torch.empty(k, x.shape[1])
    centroids[0] = x[torch.randint(n, (1,), generator=gen)]
    nearest = ((x - centroids[0]) ** 2).sum(1)
    for i in range(1, k):
        centroids[i] = x[torch.multinomial(nearest + 1e-12, 1, generator=gen)]
        nearest = torch.minimum(nearest, ((x - centroids[i]) ** 2).sum(1))

    def assign(c):
        ids, dist = torch.empty(n, dtype=torch.long), torch.empty(n)
        for s in range(0, n, chunk):
            d = torch.cdist(x[s:s + chunk], c) ** 2
            dist[s:s + chunk], ids[s:s + chunk] = d.min(1)
        return ids, dist

    for _ in range(iters):
        ids, dist = assign(centroids)
        sums = torch.zeros_like(centroids).index_add_(0, ids, x)
        counts = torch.bincount(ids, minlength=k)
        empty = (counts == 0).nonzero().flatten()
        centroids = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centroids)
        if len(empty):
            centroids[empty] = x[dist.topk(len(empty)).indices]
    _, dist = assign(centroids)
    return centroids, float(dist.mean())


class LogMelUnitExtractor(nn.Module):
    """16 kHz speech -> unit ids, one per 20 ms log-mel frame (nearest centroid)."""

    def __init__(self, centroids: torch.Tensor, mel: dict | None = None, info: dict | None = None):
        super().__init__()
        self.mel_config = dict(MEL if mel is None else mel)
        self.logmel = LogMel(**self.mel_config)
        if centroids.dim() != 2 or centroids.shape[1] != self.mel_config["n_mels"]:
            raise ValueError(f"centroids have shape {tuple(centroids.shape)}; expected [K, {self.mel_config['n_mels']}]")
        self.register_buffer("centroids", centroids.float(), persistent=False)
        self.info = dict(info or {})

    @property
    def num_units(self) -> int:
        return self.centroids.shape[0]

    @property
    def hop_length(self) -> int:
        return self.mel_config["hop_length"]

    @torch.no_grad()
    def features(self, samples) -> torch.Tensor:
        """[T_frames, n_mels] log-mel features."""
        return self.logmel(torch.from_numpy(validate_samples(samples)))

    @torch.no_grad()
    def forward(self, samples) -> torch.Tensor:
        """Unit ids [T_frames] (nearest centroid by Euclidean distance)."""
        return torch.cdist(self.features(samples), self.centroids).argmin(-1)

    @classmethod
    def fit(cls, wavs, k: int = 500, iters: int = 20, seed: int = 0, mel: dict | None = None,
            info: dict | None = None) -> "LogMelUnitExtractor":
        """Fits K centroids on the frames of `wavs` (sample arrays); `info` (e.g. the data it came from) and the
        fit's own numbers (frames, seconds of speech, iterations, mean squared distance, CPU seconds) are saved in
        its config."""
        cpu = time.process_time()
        mel = dict(MEL if mel is None else mel)
        logmel = LogMel(**mel)
        with torch.no_grad():
            frames = torch.cat([logmel(torch.from_numpy(validate_samples(w))) for w in wavs])
        centroids, msd = kmeans(frames, k, iters, seed)
        fitted = {"frames": int(frames.shape[0]), "speech_s": round(frames.shape[0] * mel["hop_length"] / SAMPLE_RATE, 1),
                  "k": k, "iters": iters, "seed": seed, "mean_sq_distance": round(msd, 4),
                  "cpu_s": round(time.process_time() - cpu, 1)}
        return cls(centroids, mel, {**(info or {}), "fit": fitted})

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({"centroids": self.centroids.contiguous()}, str(directory / "centroids.safetensors"))
        write_text(directory / "config.json", json.dumps({"kind": KIND, "num_units": self.num_units,
                                                          "mel": self.mel_config, **self.info}, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "LogMelUnitExtractor":
        from safetensors.torch import load_file

        directory = Path(directory)
        config_path, weights = directory / "config.json", directory / "centroids.safetensors"
        if not config_path.is_file() or not weights.is_file():
            raise FileNotFoundError(f"{directory}: not a unit extractor directory (expected config.json and "
                                    "centroids.safetensors; fit one with `ttt-omni units fit`)")
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{config_path} is not valid JSON: {e}") from None
        if config.get("kind") != KIND:
            raise ValueError(f"{config_path}: kind {config.get('kind')!r}; expected {KIND!r}")
        info = {k: v for k, v in config.items() if k not in ("kind", "num_units", "mel")}
        return cls(load_file(str(weights))["centroids"], config["mel"], info)


__all__ = ["KIND", "MEL", "LogMel", "LogMelUnitExtractor", "kmeans"]
