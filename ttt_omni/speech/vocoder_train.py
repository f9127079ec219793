"""Trains the project's unit HiFi-GAN (`UnitVocoder`) on paired speech: frame-level units -> the speech they came from.

Losses: mel L1 (HiFi-GAN's reconstruction term, on the units' own 80-bin log-mel) + multi-resolution STFT
(spectral convergence + log magnitude, as Parallel WaveGAN), and the duration predictor's MSE on log(1 + run
length) of the deduplicated units (fairseq's target; `UnitVocoder.durations` inverts it). There are no
discriminators: this is a CPU-sized vocoder, and the adversarial terms are what remains to add (docs/speech.md).

A run directory holds `state.pt` (model, optimiser, step, CPU seconds, RNG: resume continues the same run),
`progress.csv` (one row per log interval) and `vocoder/` (the latest generator in the released layout:
`g_STEP` + `config.json`, whose `trained` entry records data, units, steps and CPU seconds).
"""
from __future__ import annotations

import csv
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ttt_omni.atomic import replacing_file

from .logmel_units import LogMel, LogMelUnitExtractor
from .vocoder import UnitVocoder


def small_config(num_units: int) -> dict:
    """A CPU-sized unit HiFi-GAN: 320 samples per unit frame (5*4*4*4), 128 channels, two ResBlock kernels."""
    return {"num_embeddings": num_units, "embedding_dim": 128, "model_in_dim": 128,
            "upsample_rates": [5, 4, 4, 4], "upsample_kernel_sizes": [11, 8, 8, 8], "upsample_initial_channel": 128,
            "resblock_kernel_sizes": [3, 7], "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]],
            "sampling_rate": 16000,
            "dur_predictor_params": {"encoder_embed_dim": 128, "var_pred_hidden_dim": 128,
                                     "var_pred_kernel_size": 3, "var_pred_dropout": 0.5}}


@dataclass
class VocoderTrainConfig:
    steps: int = 2000
    batch_size: int = 8
    segment_frames: int = 32  # units per training segment (0.64 s)
    lr: float = 2e-4
    log_every: int = 10
    save_every: int = 50
    seed: int = 0
    stft_resolutions: list = field(default_factory=lambda: [[512, 128, 512], [1024, 256, 1024], [256, 64, 256]])


def run_lengths(units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Deduplicated units and how many frames each run lasted."""
    return torch.unique_consecutive(units, return_counts=True)


def stft_loss(fake: torch.Tensor, real: torch.Tensor, resolutions) -> torch.Tensor:
    loss = fake.new_zeros(())
    for n_fft, hop, win in resolutions:
        window = torch.hann_window(win)
        f = torch.stft(fake, n_fft, hop, win, window, return_complex=True).abs().clamp(min=1e-7)
        r = torch.stft(real, n_fft, hop, win, window, return_complex=True).abs().clamp(min=1e-7)
        loss = loss + torch.linalg.norm(r - f) / torch.linalg.norm(r) + F.l1_loss(f.log(), r.log())
    return loss / len(resolutions)


class Segments:
    """Training speech and its frame units, sampled as random aligned segments."""

    def __init__(self, wavs: list[np.ndarray], extractor: LogMelUnitExtractor, segment_frames: int):
        hop = extractor.hop_length
        self.items = []
        for wav in wavs:
            units = extractor(wav)
            frames = min(len(units), len(wav) // hop)
            if frames >= segment_frames:
                self.items.append((torch.from_numpy(wav[:frames * hop]), units[:frames]))
        if not self.items:
            raise ValueError(f"no training utterance has {segment_frames} unit frames; expected longer speech")
        self.hop, self.segment_frames = hop, segment_frames

    def batch(self, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        wavs, units = [], []
        for i in torch.randint(len(self.items), (size,), generator=gen).tolist():
            wav, u = self.items[i]
            start = int(torch.randint(len(u) - self.segment_frames + 1, (1,), generator=gen))
            units.append(u[start:start + self.segment_frames])
            wavs.append(wav[start * self.hop:(start + self.segment_frames) * self.hop])
        return torch.stack(wavs), torch.stack(units)


def duration_loss(vocoder: UnitVocoder, units: torch.Tensor) -> torch.Tensor:
    losses = []
    for u in units:
        dedup, counts = run_lengths(u)
        pred = vocoder.dur_predictor(vocoder.dict(dedup[None]))[0]
        losses.append(F.mse_loss(pred, torch.log1p(counts.float())))
    return torch.stack(losses).mean()


class VocoderTrainer:
    def __init__(self, run_dir: str | os.PathLike, extractor: LogMelUnitExtractor, wavs: list[np.ndarray],
                 cfg: VocoderTrainConfig | None = None, vocoder_config: dict | None = None, info: dict | None = None):
        self.run_dir = Path(run_dir)
        self.cfg = cfg or VocoderTrainConfig()
        self.extractor = extractor
        self.info = dict(info or {})
        torch.manual_seed(self.cfg.seed)
        self.vocoder = UnitVocoder(vocoder_config or small_config(extractor.num_units))
        if self.vocoder.config["num_embeddings"] != extractor.num_units:
            raise ValueError(f"vocoder has {self.vocoder.config['num_embeddings']} unit embeddings but the units "
                             f"have K={extractor.num_units}")
        if self.vocoder.hop_length != extractor.hop_length:
            raise ValueError(f"vocoder makes {self.vocoder.hop_length} samples per unit but units are "
                             f"{extractor.hop_length} samples apart")
        self.data = Segments(wavs, extractor, self.cfg.segment_frames)
        self.logmel = LogMel(**extractor.mel_config)
        self.opt = torch.optim.AdamW(self.vocoder.parameters(), self.cfg.lr, betas=(0.8, 0.99))
        self.gen = torch.Generator().manual_seed(self.cfg.seed)
        self.step, self.cpu_s = 0, 0.0
        state = self.run_dir / "state.pt"
        if state.is_file():
            saved = torch.load(str(state), map_location="cpu", weights_only=False)
            self.vocoder.load_state_dict(saved["model"])
            self.opt.load_state_dict(saved["opt"])
            self.gen.set_state(saved["gen"])
            torch.set_rng_state(saved["torch_rng"])  # the duration predictor's dropout
            self.step, self.cpu_s = saved["step"], saved["cpu_s"]

    def train_step(self) -> dict:
        self.vocoder.train()
        wav, units = self.data.batch(self.cfg.batch_size, self.gen)
        fake = self.vocoder.generate(self.vocoder.dict(units).transpose(1, 2))
        mel = F.l1_loss(self.logmel(fake), self.logmel(wav))
        stft = stft_loss(fake, wav, self.cfg.stft_resolutions)
        dur = duration_loss(self.vocoder, units)
        loss = 45 * mel + 2.5 * stft + dur
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.vocoder.parameters(), 10.0)
        self.opt.step()
        return {"loss": loss.item(), "mel_l1": mel.item(), "stft": stft.item(), "dur_mse": dur.item()}

    def train(self, until_step: int | None = None, max_cpu_s: float | None = None, progress=None) -> Path:
        """Trains to `until_step` (default cfg.steps) or until `max_cpu_s` more CPU seconds, saving as it goes;
        returns the exported vocoder directory."""
        until = self.cfg.steps if until_step is None else until_step
        start_cpu = self.cpu_s
        log = self.run_dir / "progress.csv"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while self.step < until and (max_cpu_s is None or self.cpu_s - start_cpu < max_cpu_s):
            t0, w0 = time.process_time(), time.time()
            parts = self.train_step()
            self.step += 1
            self.cpu_s += time.process_time() - t0
            if self.step % self.cfg.log_every == 0 or self.step == until:
                row = {"step": self.step, **{k: round(v, 5) for k, v in parts.items()},
                       "cpu_s": round(self.cpu_s, 1), "step_wall_s": round(time.time() - w0, 3)}
                new = not log.is_file()
                with log.open("a", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=list(row))
                    if new:
                        writer.writeheader()
                    writer.writerow(row)
                if progress:
                    progress(row)
            if self.step % self.cfg.save_every == 0:
                self.save()
        self.save()
        return self.export()

    def save(self) -> None:
        state = {"model": self.vocoder.state_dict(), "opt": self.opt.state_dict(), "gen": self.gen.get_state(),
                 "torch_rng": torch.get_rng_state(),
                 "step": self.step, "cpu_s": self.cpu_s}
        with replacing_file(self.run_dir / "state.pt") as tmp:
            torch.save(state, tmp)

    def export(self) -> Path:
        out = self.run_dir / "vocoder"
        self.vocoder.config["trained"] = {**self.info, "steps": self.step, "cpu_s": round(self.cpu_s, 1),
                                          "train": asdict(self.cfg), "losses": "mel L1 + multi-resolution STFT + "
                                          "duration MSE; no discriminators"}
        name = f"g_{self.step:08d}"
        self.vocoder.eval().save_pretrained(out, name)
        for old in out.glob("g_*"):
            if old.name != name:
                old.unlink()
        return out


__all__ = ["VocoderTrainConfig", "VocoderTrainer", "duration_loss", "run_lengths", "small_config", "stft_loss"]
