"""Speech projector: k consecutive encoder frames concatenated, then Linear -> ReLU -> Linear into the LLM width.

LLaMA-Omni's layout (`speech_projector.linear1`, `speech_projector.linear2`; k = `speech_encoder_ds_rate` = 5,
1280*5 -> 2048 -> 4096). Trailing frames that do not fill a group of k are dropped, as there.
"""
from __future__ import annotations

import torch
from torch import nn

PROJECTOR_HIDDEN = 2048


class SpeechProjector(nn.Module):
    def __init__(self, encoder_dim: int, llm_dim: int, k: int = 5, hidden: int = PROJECTOR_HIDDEN):
        super().__init__()
        if k < 1:
            raise ValueError(f"speech_encoder_ds_rate (k) must be >= 1, got {k}")
        self.k = k
        self.encoder_dim = encoder_dim
        self.linear1 = nn.Linear(encoder_dim * k, hidden)
        self.relu = nn.ReLU()
        self.linear2 = nn.Linear(hidden, llm_dim)

    @staticmethod
    def output_length(frames: int, k: int) -> int:
        return frames // k

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, T, encoder_dim] -> [B, T // k, llm_dim]."""
        if frames.dim() != 3 or frames.shape[-1] != self.encoder_dim:
            raise ValueError(f"speech projector expects encoder frames [batch, time, {self.encoder_dim}], "
                             f"got {tuple(frames.shape)}")
        b, t, d = frames.shape
        usable = t - t % self.k
        grouped = frames[:, :usable].reshape(b, usable // self.k, d * self.k)
        return self.linear2(self.relu(self.linear1(grouped)))


__all__ = ["SpeechProjector", "PROJECTOR_HIDDEN"]
