"""Unit vocoder: discrete units -> 16 kHz waveform, the unit HiFi-GAN with a duration predictor that LLaMA-Omni uses
(fairseq's `CodeHiFiGANVocoder` / `CodeGenerator`).

Layout of its checkpoint, which this module reads as it is:
  * a generator file (`g_00500000`, a torch pickle whose key `generator` holds the state dict) and
  * `config.json` with `upsample_rates`, `upsample_kernel_sizes`, `upsample_initial_channel`,
    `resblock_kernel_sizes`, `resblock_dilation_sizes`, `model_in_dim`, `num_embeddings`, `embedding_dim`,
    `dur_predictor_params` (`encoder_embed_dim`, `var_pred_hidden_dim`, `var_pred_kernel_size`, `var_pred_dropout`).
Convolutions keep weight normalisation as stored (`weight_g`, `weight_v`); the weight is g * v / ||v||.

Per unit the duration predictor gives a log duration; each unit's embedding is repeated round(exp(d) - 1) times
(at least once), and every frame becomes prod(upsample_rates) samples (320 for the released vocoder: 50 units/s).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.1
CONFIG_KEYS = ("upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel", "resblock_kernel_sizes",
               "resblock_dilation_sizes", "num_embeddings", "embedding_dim")


def _padding(kernel: int, dilation: int = 1) -> int:
    return (kernel * dilation - dilation) // 2


class WNConv1d(nn.Module):
    """Conv1d (or ConvTranspose1d) with weight normalisation over every dim but 0, stored as weight_g / weight_v."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, padding: int = 0,
                 transpose: bool = False):
        super().__init__()
        shape = (cin, cout, kernel) if transpose else (cout, cin, kernel)
        self.weight_v = nn.Parameter(torch.randn(shape) * 0.01)
        self.weight_g = nn.Parameter(self.weight_v.detach().flatten(1).norm(dim=1).view(-1, 1, 1).clone())
        self.bias = nn.Parameter(torch.zeros(cout))
        self.stride, self.dilation, self.padding, self.transpose = stride, dilation, padding, transpose

    def weight(self) -> torch.Tensor:
        v = self.weight_v
        return v * (self.weight_g / v.flatten(1).norm(dim=1).view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transpose:
            return F.conv_transpose1d(x, self.weight(), self.bias, self.stride, self.padding)
        return F.conv1d(x, self.weight(), self.bias, self.stride, self.padding, self.dilation)


class ResBlock(nn.Module):
    """HiFi-GAN ResBlock1: three dilated convs, each followed by a plain conv, with residuals."""

    def __init__(self, channels: int, kernel: int, dilations):
        super().__init__()
        self.convs1 = nn.ModuleList(WNConv1d(channels, channels, kernel, dilation=d, padding=_padding(kernel, d))
                                    for d in dilations)
        self.convs2 = nn.ModuleList(WNConv1d(channels, channels, kernel, padding=_padding(kernel))
                                    for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class DurationPredictor(nn.Module):
    """Conv -> ReLU -> LayerNorm -> dropout, twice, then a linear log-duration per unit (fairseq's VariancePredictor;
    tensor names conv1.0, ln1, conv2.0, ln2, proj)."""

    def __init__(self, encoder_embed_dim: int, var_pred_hidden_dim: int, var_pred_kernel_size: int,
                 var_pred_dropout: float = 0.5, **_unused):
        super().__init__()
        k = var_pred_kernel_size
        self.conv1 = nn.Sequential(nn.Conv1d(encoder_embed_dim, var_pred_hidden_dim, k, padding=(k - 1) // 2),
                                   nn.ReLU())
        self.ln1 = nn.LayerNorm(var_pred_hidden_dim)
        self.conv2 = nn.Sequential(nn.Conv1d(var_pred_hidden_dim, var_pred_hidden_dim, k, padding=1), nn.ReLU())
        self.ln2 = nn.LayerNorm(var_pred_hidden_dim)
        self.dropout = nn.Dropout(var_pred_dropout)
        self.proj = nn.Linear(var_pred_hidden_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, C] -> log durations [B, T]."""
        x = self.dropout(self.ln1(self.conv1(x.transpose(1, 2)).transpose(1, 2)))
        x = self.dropout(self.ln2(self.conv2(x.transpose(1, 2)).transpose(1, 2)))
        return self.proj(x).squeeze(-1)


class UnitVocoder(nn.Module):
    """fairseq's CodeGenerator for single-speaker unit vocoders (no speaker or f0 inputs)."""

    def __init__(self, config: dict):
        super().__init__()
        missing = [k for k in CONFIG_KEYS if k not in config]
        if missing:
            raise ValueError(f"vocoder config lacks {missing}; expected a unit HiFi-GAN config.json")
        if config.get("multispkr") or config.get("f0"):
            raise ValueError("multi-speaker or f0-conditioned unit vocoders are not supported; LLaMA-Omni's vocoder "
                             "is single-speaker without f0")
        self.config = dict(config)
        rates, kernels = config["upsample_rates"], config["upsample_kernel_sizes"]
        ch = config["upsample_initial_channel"]
        self.dict = nn.Embedding(config["num_embeddings"], config["embedding_dim"])
        params = config.get("dur_predictor_params")
        self.dur_predictor = DurationPredictor(**params) if params else None
        self.conv_pre = WNConv1d(config.get("model_in_dim", config["embedding_dim"]), ch, 7, padding=3)
        self.ups = nn.ModuleList(
            WNConv1d(ch // 2**i, ch // 2**(i + 1), k, stride=u, padding=(k - u) // 2, transpose=True)
            for i, (u, k) in enumerate(zip(rates, kernels)))
        self.num_kernels = len(config["resblock_kernel_sizes"])
        self.resblocks = nn.ModuleList(
            ResBlock(ch // 2**(i + 1), k, d)
            for i in range(len(rates))
            for k, d in zip(config["resblock_kernel_sizes"], config["resblock_dilation_sizes"]))
        self.conv_post = WNConv1d(ch // 2**len(rates), 1, 7, padding=3)

    @property
    def hop_length(self) -> int:
        """Samples per (duration-expanded) unit frame."""
        n = 1
        for r in self.config["upsample_rates"]:
            n *= r
        return n

    @property
    def sample_rate(self) -> int:
        return int(self.config.get("sampling_rate", 16000))

    def durations(self, units: torch.Tensor) -> torch.Tensor:
        """Frames per unit [T] (all ones without a duration predictor)."""
        x = self.dict(units[None])
        if self.dur_predictor is None:
            return torch.ones_like(units)
        return torch.clamp(torch.round(torch.exp(self.dur_predictor(x)[0]) - 1).long(), min=1)

    def forward(self, units: torch.Tensor, dur_prediction: bool = True) -> torch.Tensor:
        """Unit ids [T] -> waveform [sum(durations) * hop_length] in [-1, 1]."""
        units = torch.as_tensor(units, dtype=torch.long, device=self.dict.weight.device).reshape(-1)
        if units.numel() == 0:
            raise ValueError("the vocoder got no units; expected at least one unit id")
        bad = units[(units < 0) | (units >= self.config["num_embeddings"])]
        if bad.numel():
            raise ValueError(f"unit ids {bad[:5].tolist()} are outside 0..{self.config['num_embeddings'] - 1}")
        x = self.dict(units[None]).transpose(1, 2)
        if dur_prediction and self.dur_predictor is not None:
            x = torch.repeat_interleave(x, self.durations(units), dim=2)
        return self.generate(x).reshape(-1)

    def generate(self, x: torch.Tensor) -> torch.Tensor:
        """Frame embeddings [B, model_in_dim, T] -> waveforms [B, T * hop_length] (training runs batches here)."""
        x = self.conv_pre(x)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        x = self.conv_post(F.leaky_relu(x))  # default slope 0.01 here, as in HiFi-GAN
        return torch.tanh(x).squeeze(1)

    @classmethod
    def from_pretrained(cls, generator_path: str | os.PathLike, config_path: str | os.PathLike | None = None,
                        ) -> "UnitVocoder":
        """Loads `g_00500000` + `config.json` (default: beside the generator file). `generator_path` may also be the
        directory holding both (the only generator file there is taken)."""
        path = Path(generator_path)
        if path.is_dir():
            candidates = sorted(p for p in path.iterdir() if p.is_file() and p.name.startswith("g_"))
            if len(candidates) != 1:
                raise FileNotFoundError(f"{path}: expected exactly one generator file named g_*, found "
                                        f"{[p.name for p in candidates]}")
            config_path = config_path or path / "config.json"
            path = candidates[0]
        if not path.is_file():
            raise FileNotFoundError(f"vocoder generator checkpoint not found: {path}")
        config_path = Path(config_path or path.parent / "config.json")
        if not config_path.is_file():
            raise FileNotFoundError(f"vocoder config not found: {config_path}")
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{config_path} is not valid JSON: {e}") from None
        try:
            ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for non-checkpoint files
            raise ValueError(f"{path} is not a readable vocoder checkpoint ({type(e).__name__}: {e})") from None
        if not isinstance(ckpt, dict) or "generator" not in ckpt:
            raise ValueError(f"{path} has no 'generator' state dict; expected a unit HiFi-GAN generator checkpoint")
        vocoder = cls(config)
        missing, unexpected = vocoder.load_state_dict(ckpt["generator"], strict=False)
        if missing or unexpected:
            raise ValueError(f"{path} does not match {config_path}: missing {missing[:5]}, unexpected {unexpected[:5]}")
        return vocoder.eval()

    def save_pretrained(self, directory: str | os.PathLike, name: str = "g_00500000") -> Path:
        """Writes the checkpoint in the same layout (generator file + config.json)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save({"generator": self.state_dict()}, directory / name)
        (directory / "config.json").write_text(json.dumps(self.config, indent=2))
        return directory


__all__ = ["UnitVocoder", "DurationPredictor", "WNConv1d"]
