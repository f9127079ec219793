"""Speech encoder: transformers' `WhisperEncoder` behind Whisper's own log-mel front end, over fixed windows.

Whisper's encoder only takes a fixed input length (30 s for the released models: 3000 mel frames -> 1500 encoder
frames). Longer speech is cut into consecutive windows of that length, the last one zero-padded as Whisper pads
every input, and the windows are encoded one batch at a time, so an hour of speech never holds more than
`window_batch` windows of activations. LLaMA-Omni pads a short input to one full window and keeps every frame of it;
this encoder does the same for each window.

Weights load from either format the real model ships in:
  * an openai-whisper checkpoint (`large-v3.pt`: `{"dims": ..., "model_state_dict": ...}`), which LLaMA-Omni's
    config names in `speech_encoder`;
  * a transformers Whisper directory (config.json + safetensors; `WhisperModel` or
    `WhisperForConditionalGeneration`).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from .audio import SAMPLE_RATE, validate_samples

HOP_LENGTH = 160  # mel frame hop at 16 kHz (10 ms); the encoder's two convs halve the frame rate
N_FFT = 400

# openai-whisper AudioEncoder names -> transformers WhisperEncoder names (per block prefix "blocks.N." / "layers.N.")
_BLOCK_NAMES = {
    "attn.query": "self_attn.q_proj",
    "attn.key": "self_attn.k_proj",
    "attn.value": "self_attn.v_proj",
    "attn.out": "self_attn.out_proj",
    "attn_ln": "self_attn_layer_norm",
    "mlp.0": "fc1",
    "mlp.2": "fc2",
    "mlp_ln": "final_layer_norm",
}
_TOP_NAMES = {"positional_embedding": "embed_positions.weight", "ln_post": "layer_norm"}


def openai_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """openai-whisper encoder tensors (without the `encoder.` prefix) -> WhisperEncoder state dict."""
    out = {}
    for key, t in state.items():
        m = re.fullmatch(r"blocks\.(\d+)\.(.+)\.(weight|bias)", key)
        if m:
            if m[2] not in _BLOCK_NAMES:
                raise ValueError(f"unknown openai-whisper encoder tensor {key!r}")
            out[f"layers.{m[1]}.{_BLOCK_NAMES[m[2]]}.{m[3]}"] = t
        elif key == "positional_embedding":
            out[_TOP_NAMES[key]] = t
        elif key.startswith("ln_post."):
            out["layer_norm." + key.split(".", 1)[1]] = t
        elif key.startswith(("conv1.", "conv2.")):
            out[key] = t
        else:
            raise ValueError(f"unknown openai-whisper encoder tensor {key!r}")
    return out


def hf_to_openai(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of `openai_to_hf` (used to save in LLaMA-Omni's layout)."""
    back_block = {v: k for k, v in _BLOCK_NAMES.items()}
    out = {}
    for key, t in state.items():
        m = re.fullmatch(r"layers\.(\d+)\.(.+)\.(weight|bias)", key)
        if m:
            out[f"blocks.{m[1]}.{back_block[m[2]]}.{m[3]}"] = t
        elif key == "embed_positions.weight":
            out["positional_embedding"] = t
        elif key.startswith("layer_norm."):
            out["ln_post." + key.split(".", 1)[1]] = t
        else:
            out[key] = t
    return out


def whisper_config(n_mels: int, d_model: int, layers: int, heads: int, n_ctx: int) -> WhisperConfig:
    """Encoder geometry in transformers' terms (openai-whisper dims: n_mels, n_audio_state, n_audio_layer,
    n_audio_head, n_audio_ctx; the MLP is 4x wide and GELU in every released Whisper)."""
    return WhisperConfig(num_mel_bins=n_mels, d_model=d_model, encoder_layers=layers, encoder_attention_heads=heads,
                         encoder_ffn_dim=4 * d_model, max_source_positions=n_ctx, activation_function="gelu",
                         decoder_layers=1, decoder_attention_heads=heads, decoder_ffn_dim=4 * d_model)


def whisper_dims(config: WhisperConfig) -> dict:
    """openai-whisper style encoder dims of a WhisperConfig (what LLaMA-Omni-layout configs record here)."""
    return {"n_mels": config.num_mel_bins, "n_audio_state": config.d_model, "n_audio_layer": config.encoder_layers,
            "n_audio_head": config.encoder_attention_heads, "n_audio_ctx": config.max_source_positions}


def config_from_dims(dims: dict) -> WhisperConfig:
    return whisper_config(dims["n_mels"], dims["n_audio_state"], dims["n_audio_layer"], dims["n_audio_head"],
                          dims["n_audio_ctx"])


def dims_from_weights(state: dict[str, torch.Tensor], head_dim: int = 64) -> dict:
    """Encoder dims read off openai-whisper tensors; heads are not in the shapes: every released Whisper uses
    64-dimensional heads."""
    d_model, n_mels, _ = state["conv1.weight"].shape
    layers = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    return {"n_mels": n_mels, "n_audio_state": d_model, "n_audio_layer": layers,
            "n_audio_head": max(1, d_model // head_dim), "n_audio_ctx": state["positional_embedding"].shape[0]}


class SpeechEncoder(nn.Module):
    """16 kHz samples -> Whisper encoder frames, window by window. Frozen (no gradients, eval mode) by default."""

    def __init__(self, config: WhisperConfig, frozen: bool = True, window_batch: int = 8):
        super().__init__()
        self.config = config
        window_samples = config.max_source_positions * 2 * HOP_LENGTH
        if window_samples % SAMPLE_RATE:
            raise ValueError(f"max_source_positions={config.max_source_positions} gives a {window_samples}-sample "
                             "window; it must be a whole number of seconds (a multiple of 50 positions)")
        self.window_samples = window_samples
        self.window_batch = window_batch
        self.feature_extractor = WhisperFeatureExtractor(
            feature_size=config.num_mel_bins, sampling_rate=SAMPLE_RATE, hop_length=HOP_LENGTH, n_fft=N_FFT,
            chunk_length=window_samples // SAMPLE_RATE)
        self.encoder = WhisperEncoder(config)
        self.frozen = frozen
        if frozen:
            self.encoder.requires_grad_(False)

    @property
    def hidden_size(self) -> int:
        return self.config.d_model

    @property
    def frames_per_window(self) -> int:
        return self.config.max_source_positions

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.encoder.eval()  # a frozen encoder never runs dropout / layerdrop
        return self

    def windows(self, samples: np.ndarray) -> list[np.ndarray]:
        """Consecutive windows of the encoder's input length (the last one shorter; padded by the front end)."""
        samples = validate_samples(samples, "speech input")
        return [samples[i:i + self.window_samples] for i in range(0, len(samples), self.window_samples)]

    def features(self, windows: list[np.ndarray]) -> torch.Tensor:
        """Log-mel features [W, n_mels, 2 * frames_per_window] of windows (each padded to a full window)."""
        out = self.feature_extractor(windows, sampling_rate=SAMPLE_RATE, return_tensors="pt",
                                     padding="max_length", truncation=True)
        return out.input_features

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        """[W, n_mels, frames] -> [W, frames_per_window, d_model]."""
        param = next(self.encoder.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return self.encoder(input_features.to(param.device, param.dtype)).last_hidden_state

    def encode_batches(self, samples: np.ndarray):
        """Yields encoder frames [w, frames_per_window, d_model] for up to `window_batch` windows at a time."""
        windows = self.windows(samples)
        for i in range(0, len(windows), self.window_batch):
            yield self(self.features(windows[i:i + self.window_batch]))

    # ------------------------------------------------------------ loading
    @classmethod
    def from_openai_checkpoint(cls, path: str | os.PathLike, **kwargs) -> "SpeechEncoder":
        """An openai-whisper `.pt` file (e.g. large-v3.pt); only its encoder is kept."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Whisper checkpoint not found: {path}")
        try:
            ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for non-checkpoint files
            raise ValueError(f"{path} is not a readable openai-whisper checkpoint ({type(e).__name__}: {e})") from None
        if not isinstance(ckpt, dict) or "dims" not in ckpt or "model_state_dict" not in ckpt:
            raise ValueError(f"{path} is not an openai-whisper checkpoint (expected keys 'dims' and "
                             "'model_state_dict')")
        state = {k[len("encoder."):]: v for k, v in ckpt["model_state_dict"].items() if k.startswith("encoder.")}
        return cls.from_openai_state(state, ckpt["dims"], **kwargs)

    @classmethod
    def from_openai_state(cls, state: dict[str, torch.Tensor], dims: dict | None = None, **kwargs) -> "SpeechEncoder":
        """openai-whisper encoder tensors (no `encoder.` prefix), e.g. LLaMA-Omni's `model.speech_encoder.*`."""
        if "conv1.weight" not in state:
            raise ValueError("no Whisper encoder tensors found (expected conv1.weight, blocks.N.*, ln_post.*)")
        encoder = cls(config_from_dims(dims or dims_from_weights(state)), **kwargs)
        encoder.load_hf_state(openai_to_hf(state))
        return encoder

    @classmethod
    def from_hf_directory(cls, path: str | os.PathLike, **kwargs) -> "SpeechEncoder":
        """A transformers Whisper checkpoint directory (its encoder part)."""
        from ttt_omni.checkpoint_files import load_weights

        path = Path(path)
        config = WhisperConfig.from_pretrained(str(path))
        weights = load_weights(path)
        for prefix in ("model.encoder.", "encoder."):
            state = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
            if state:
                break
        else:
            raise ValueError(f"{path} holds no Whisper encoder weights (expected model.encoder.* or encoder.*)")
        encoder = cls(config, **kwargs)
        encoder.load_hf_state(state)
        return encoder

    def load_hf_state(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.encoder.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"Whisper encoder weights do not match the encoder: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")


def load_speech_encoder(path: str | os.PathLike, **kwargs) -> SpeechEncoder:
    """An openai-whisper `.pt` file or a transformers Whisper directory."""
    path = Path(path)
    if path.is_dir():
        return SpeechEncoder.from_hf_directory(path, **kwargs)
    if path.is_file():
        return SpeechEncoder.from_openai_checkpoint(path, **kwargs)
    raise FileNotFoundError(f"speech encoder not found: {path} (expected an openai-whisper .pt file such as "
                            "large-v3.pt, or a transformers Whisper directory)")


__all__ = ["SpeechEncoder", "load_speech_encoder", "openai_to_hf", "hf_to_openai", "whisper_config",
           "whisper_dims", "config_from_dims", "dims_from_weights"]
