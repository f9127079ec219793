"""The reference unit vocoder: each unit's mean log-mel (its k-means centroid) -> linear magnitudes -> Griffin-Lim.

No training beyond the units' k-means; it is the row a trained vocoder (`UnitVocoder`) has to beat. Magnitudes come
from the mel filterbank's pseudo-inverse (negatives clipped to 0); phases from fast Griffin-Lim (momentum 0.99)
started from a seeded random phase, so the output is deterministic.
"""
from __future__ import annotations

import torch

from .logmel_units import LogMelUnitExtractor


def griffin_lim(magnitude: torch.Tensor, n_fft: int, hop_length: int, win_length: int, iters: int = 60,
                momentum: float = 0.99, seed: int = 0) -> torch.Tensor:
    """[n_fft // 2 + 1, T] linear magnitudes -> waveform [(T - 1) * hop_length] (centred frames)."""
    window = torch.hann_window(win_length)
    length = (magnitude.shape[-1] - 1) * hop_length
    gen = torch.Generator().manual_seed(seed)
    angles = torch.exp(2j * torch.pi * torch.rand(magnitude.shape, generator=gen))
    previous = torch.zeros_like(angles)
    for _ in range(iters):
        wav = torch.istft(magnitude * angles, n_fft, hop_length, win_length, window, center=True, length=length)
        rebuilt = torch.stft(wav, n_fft, hop_length, win_length, window, center=True, return_complex=True)
        angles = rebuilt - previous * (momentum / (1 + momentum))
        angles = angles / angles.abs().clamp(min=1e-16)
        previous = rebuilt
    return torch.istft(magnitude * angles, n_fft, hop_length, win_length, window, center=True, length=length)


class CodebookGriffinLim:
    """Unit ids (one per 20 ms frame) -> 16 kHz waveform in [-1, 1], peak-normalised to 0.9. Each frame's log-mel is
    its unit's centroid, or with `regressor` (a `unit_mel.UnitMelRegressor`) predicted from the units around it."""

    def __init__(self, extractor: LogMelUnitExtractor, iters: int = 60, regressor=None):
        self.extractor, self.iters, self.regressor = extractor, iters, regressor
        self.inverse = torch.linalg.pinv(extractor.logmel.filters)  # [n_mels, freq]
        self.sample_rate = extractor.mel_config["sample_rate"]

    @torch.no_grad()
    def __call__(self, units) -> torch.Tensor:
        units = torch.as_tensor(units, dtype=torch.long).reshape(-1)
        if units.numel() == 0 or int(units.min()) < 0 or int(units.max()) >= self.extractor.num_units:
            raise ValueError(f"unit ids must be a non-empty sequence in 0..{self.extractor.num_units - 1}")
        log_mel = self.extractor.centroids[units] if self.regressor is None else self.regressor(units)
        mel = torch.exp(log_mel)  # [T, n_mels]
        magnitude = (mel @ self.inverse).clamp(min=0).T
        cfg = self.extractor.mel_config
        wav = griffin_lim(magnitude, cfg["n_fft"], cfg["hop_length"], cfg["win_length"], self.iters)
        return 0.9 * wav / wav.abs().max().clamp(min=1e-8)


__all__ = ["CodebookGriffinLim", "griffin_lim"]
