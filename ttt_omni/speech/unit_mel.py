"""Units -> log-mel with context: the mel-regression vocoder front end (then Griffin-Lim, `griffin_lim.py`).

`UnitMelRegressor` predicts each frame's log-mel from the units around it (a residual stack of 1-D convolutions
over unit embeddings, +-6 frames of context) as a correction to the unit's centroid: with the correction at zero it
is the codebook reference exactly, so training can only add what context tells about the frame. L1 on the log-mel
of the speech the units came from; CPU-cheap (everything runs at 50 frames per second).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ttt_omni.atomic import write_text

from .logmel_units import LogMelUnitExtractor


class UnitMelRegressor(nn.Module):
    def __init__(self, centroids: torch.Tensor, channels: int = 128, layers: int = 3, kernel: int = 5):
        super().__init__()
        self.config = {"num_units": centroids.shape[0], "n_mels": centroids.shape[1], "channels": channels,
                       "layers": layers, "kernel": kernel}
        self.register_buffer("centroids", centroids.float().clone())
        self.embed = nn.Embedding(centroids.shape[0], channels)
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, kernel, padding=kernel // 2) for _ in range(layers))
        self.out = nn.Conv1d(channels, centroids.shape[1], 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, units: torch.Tensor) -> torch.Tensor:
        """Unit ids [B, T] (or [T]) -> log-mel [B, T, n_mels] (or [T, n_mels])."""
        single = units.dim() == 1
        units = units[None] if single else units
        x = self.embed(units).transpose(1, 2)
        for conv in self.convs:
            x = x + F.relu(conv(x))
        mel = self.centroids[units] + self.out(x).transpose(1, 2)
        return mel[0] if single else mel

    def save_pretrained(self, directory: str | os.PathLike, info: dict | None = None) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(directory / "unit_mel.safetensors"))
        write_text(directory / "config.json", json.dumps({**self.config, **(info or {})}, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "UnitMelRegressor":
        from safetensors.torch import load_file

        directory = Path(directory)
        if not (directory / "unit_mel.safetensors").is_file():
            raise FileNotFoundError(f"{directory}: no unit_mel.safetensors; train one with `ttt-omni units mel`")
        config = json.loads((directory / "config.json").read_text())
        state = load_file(str(directory / "unit_mel.safetensors"))
        model = cls(state["centroids"], config["channels"], config["layers"], config["kernel"])
        model.load_state_dict(state)
        return model.eval()


def train_unit_mel(extractor: LogMelUnitExtractor, wavs: list[np.ndarray], steps: int = 600, batch_size: int = 32,
                   segment_frames: int = 64, lr: float = 1e-3, seed: int = 0, progress=None) -> tuple[UnitMelRegressor, dict]:
    """Fits a regressor on the utterances' (units, log-mel) pairs; returns it and its training record."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    pairs = [(extractor(w), extractor.features(w)) for w in wavs]
    pairs = [p for p in pairs if len(p[0]) >= segment_frames]
    if not pairs:
        raise ValueError(f"no utterance has {segment_frames} frames; expected longer speech")
    model = UnitMelRegressor(extractor.centroids)
    opt = torch.optim.AdamW(model.parameters(), lr)
    cpu, losses = time.process_time(), []
    for step in range(1, steps + 1):
        units, mels = [], []
        for i in torch.randint(len(pairs), (batch_size,), generator=gen).tolist():
            u, m = pairs[i]
            s = int(torch.randint(len(u) - segment_frames + 1, (1,), generator=gen))
            units.append(u[s:s + segment_frames])
            mels.append(m[s:s + segment_frames])
        loss = F.l1_loss(model(torch.stack(units)), torch.stack(mels))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if progress and (step % 20 == 0 or step == steps):
            progress(step, float(np.mean(losses[-20:])))
    record = {"steps": steps, "batch_size": batch_size, "segment_frames": segment_frames, "lr": lr,
              "final_l1": round(float(np.mean(losses[-20:])), 4), "first_l1": round(losses[0], 4),
              "cpu_s": round(time.process_time() - cpu, 1), "utterances": len(pairs)}
    return model.eval(), record


__all__ = ["UnitMelRegressor", "train_unit_mel"]
