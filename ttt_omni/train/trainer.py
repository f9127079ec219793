"""The training loop: accelerate on one CPU, one GPU or many; TTT state carried across a conversation's windows.

Batch row b is a lane (see data.LanePacker): its TTT state at the end of one step is the start state of its next
window (detached: truncated backprop through time) unless that window starts a new conversation. The inner-model
parameters are float32 in their own optimizer group; bf16 autocast never touches them (the ops turn autocast
off). Checkpoints hold everything needed to continue bit-identically: weights, optimizer, scheduler, RNG states,
the step, and the carried TTT states.
"""
from __future__ import annotations

import csv
import json
import math
import os
import random
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from ttt_omni.layers import TTTBase, TTTInnerParams, keep_float32
from ttt_omni.ops import TTTState
from ttt_omni.ops.validate import NonFiniteStateError

from .config import TrainConfig
from .data import IGNORE, LanePacker, book_conversations, load_jsonl, tokenize
from .monitor import MonitorAlarm, TTTMonitor
from .tokenizer import load_tokenizer, train_bpe

TTT_CONFIG_KEYS = ("ttt_layers", "ttt_type", "mini_batch_size", "ttt_base_lr", "attention_window",
                   "scan_checkpoint_every")


def build_model(cfg: TrainConfig, vocab_size: int):
    import ttt_omni.models  # noqa: F401  (registers TTT-Llama with the Auto classes)
    from ttt_omni.models.presets import preset_config
    from ttt_omni.models import TTTLlamaForCausalLM

    torch.manual_seed(cfg.seed)
    if cfg.model_from:
        return AutoModelForCausalLM.from_pretrained(cfg.model_from)
    config = preset_config(cfg.preset, vocab_size=vocab_size, **cfg.model_overrides)
    if cfg.baseline:
        plain = {k: v for k, v in config.to_dict().items() if k not in TTT_CONFIG_KEYS and k != "model_type"}
        return LlamaForCausalLM(LlamaConfig(**plain))
    return TTTLlamaForCausalLM(config)


def ttt_layers(model) -> dict[int, TTTBase]:
    """Decoder layer index -> its TTT layer (empty for a plain attention model)."""
    layers = getattr(getattr(model, "model", None), "layers", [])
    return {i: m for i, layer in enumerate(layers) for m in layer.modules() if isinstance(m, TTTBase)}


def param_groups(model, cfg: TrainConfig) -> list[dict]:
    """fp32 inner-model params in their own group (no decay); decay only on matrices; train_only_ttt freezes
    everything outside the TTT layers."""
    ttt_param_ids = {id(p) for layer in ttt_layers(model).values() for p in layer.parameters()}
    inner_ids = {id(p) for m in model.modules() if isinstance(m, TTTInnerParams) for p in m.parameters()}
    inner, decay, no_decay = [], [], []
    for p in model.parameters():
        if cfg.train_only_ttt and id(p) not in ttt_param_ids:
            p.requires_grad_(False)
            continue
        if id(p) in inner_ids:
            inner.append(p)
        elif p.dim() >= 2:
            decay.append(p)
        else:
            no_decay.append(p)
    if cfg.train_only_ttt and not ttt_param_ids:
        raise ValueError("train_only_ttt is set but the model has no TTT layers")
    groups = [{"params": decay, "weight_decay": cfg.weight_decay, "lr": cfg.lr},
              {"params": no_decay, "weight_decay": 0.0, "lr": cfg.lr},
              {"params": inner, "weight_decay": 0.0, "lr": cfg.ttt_lr or cfg.lr, "name": "ttt_inner_fp32"}]
    return [g for g in groups if g["params"]]


def cosine_schedule(cfg: TrainConfig):
    def factor(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def merge_states(fresh: TTTState, carried: TTTState, reset: torch.Tensor) -> TTTState:
    """Row-wise: the fresh state where `reset`, else the carried one. Windows are whole mini-batches, so every
    row sits at a mini-batch boundary and `seen` restarts at 0."""
    mask = reset.view(-1, 1, 1, 1).to(fresh.W1.device)
    parts = {k: torch.where(mask, f, carried.tensors()[k]) for k, f in fresh.tensors().items()}
    params = tuple(parts[k] for k in ("W1", "b1", "W2", "b2") if k in parts)
    grads = tuple(parts[k] for k in ("grad_W1", "grad_b1", "grad_W2", "grad_b2") if k in parts)
    return TTTState.from_parts(params, grads, seen=0)


def assert_inner_fp32(model) -> None:
    bad = [n for n, m in model.named_modules() if isinstance(m, TTTInnerParams)
           for pn, p in m.named_parameters() if p.dtype != torch.float32]
    if bad:
        raise RuntimeError(f"TTT inner parameters are not float32 after wrapping: {bad[:4]}...; the training setup "
                           "(mixed precision / FSDP) must not cast them")


class Trainer:
    def __init__(self, cfg: TrainConfig, accelerator: Accelerator | None = None):
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.accelerator = accelerator or Accelerator(mixed_precision="bf16" if cfg.bf16 else "no")
        self._set_seed(cfg.seed)
        convs = book_conversations(cfg.books_split) if cfg.books_split else load_jsonl(cfg.jsonl)
        self.tokenizer = self._tokenizer(convs)
        model = build_model(cfg, len(self.tokenizer))
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        self.ttt = ttt_layers(model)
        mb = next(iter(self.ttt.values())).mini_batch_size if self.ttt else 1
        self.packer = LanePacker([tokenize(c, self.tokenizer) for c in convs], cfg.batch_size, cfg.context, mb,
                                 seed=cfg.seed, pad_id=self.tokenizer.pad_token_id or 0)
        optimizer = torch.optim.AdamW(param_groups(model, cfg), betas=(0.9, 0.95))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_schedule(cfg))
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        keep_float32(self.accelerator.unwrap_model(self.model))
        assert_inner_fp32(self.model)
        self.monitor = TTTMonitor(self.unwrapped, self.out / "monitor.csv", cfg.monitor_every, cfg.max_abs)
        self.step = 0
        self.carried: dict[int, TTTState] = {}

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    def _tokenizer(self, convs):
        cfg = self.cfg
        if cfg.tokenizer:
            return load_tokenizer(cfg.tokenizer)
        if cfg.model_from:
            return load_tokenizer(cfg.model_from)
        return train_bpe(["\n\n".join(t.text for t in c.turns) for c in convs], cfg.bpe_vocab_size)

    @staticmethod
    def _set_seed(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def loss(self, batch: dict) -> torch.Tensor:
        device = self.accelerator.device
        input_ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)
        kwargs = {}
        if self.ttt:
            cache = self.unwrapped.make_cache()
            for i, layer in self.ttt.items():
                fresh = layer.init_state(input_ids.shape[0])
                state = fresh if i not in self.carried else merge_states(fresh, self.carried[i], batch["reset"])
                cache.update_ttt_state(state, i)
            kwargs = {"past_key_values": cache, "use_cache": True}
        with self.accelerator.autocast():
            logits = self.model(input_ids=input_ids, **kwargs).logits
        if self.ttt:
            self.carried = {i: cache.get_ttt_state(i).detach() for i in self.ttt}
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE)

    def train(self, until: int | None = None) -> dict:
        """Trains to cfg.steps (or stops early at step `until`; the schedule still targets cfg.steps)."""
        cfg = self.cfg
        stop = min(cfg.steps, until or cfg.steps)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
        log_path = self.out / "train_log.csv"
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", disable=not self.accelerator.is_main_process)
        last = {}
        while self.step < stop:
            batch = self.packer.batch(self.step)
            watch = self.monitor.wants(self.step) and bool(self.ttt)
            try:
                if watch:
                    with self.monitor.capture():
                        loss = self.loss(batch)
                else:
                    loss = self.loss(batch)
            except NonFiniteStateError as e:
                self._alarm(f"step {self.step}: {e}")
            if not torch.isfinite(loss):
                self._alarm(f"step {self.step}: training loss is {loss.item()}")
            if watch:
                try:
                    self.monitor.record(self.step)
                except MonitorAlarm as e:
                    self._alarm(str(e))
            self.accelerator.backward(loss)
            grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            last = {"step": self.step, "loss": loss.item(), "grad_norm": float(grad_norm),
                    "lr": self.scheduler.get_last_lr()[0]}
            self._log(log_path, last)
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.3f}")
            if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                self.save_checkpoint()
        bar.close()
        if self.step < cfg.steps:
            return {**last, "final": None}
        return {**last, "final": str(self.export(self.out / "final"))}

    def _alarm(self, message: str):
        path = self.save_checkpoint(name="last-good")
        raise MonitorAlarm(f"{message}. Training stopped; the weights before this step are saved at {path}")

    def _log(self, path: Path, row: dict) -> None:
        if not self.accelerator.is_main_process:
            return
        new = not path.exists()
        with path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    # --- checkpoints ---
    def export(self, path: Path) -> Path:
        """The model and tokenizer as an HF directory (safetensors), written atomically."""
        tmp = path.with_name(path.name + ".tmp")
        if self.accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            self.unwrapped.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            _replace_dir(tmp, path)
        return path

    def save_checkpoint(self, name: str | None = None) -> Path:
        path = self.out / "checkpoints" / (name or f"step-{self.step:07d}")
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            tmp = path.with_name(path.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            self.unwrapped.save_pretrained(tmp / "model", safe_serialization=True)
            self.tokenizer.save_pretrained(tmp / "model")
            torch.save({
                "step": self.step,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "carried": {i: s.to_dict() for i, s in self.carried.items()},
                "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                        "torch": torch.get_rng_state()},
                "config": asdict(self.cfg),
            }, tmp / "trainer_state.pt")
            _replace_dir(tmp, path)
            if name is None:
                _atomic_write(self.out / "checkpoints" / "latest", path.name)
        return path

    def resume(self, path: str | Path | None = None) -> bool:
        """Loads a checkpoint (default: the latest of this run). Returns False when there is none."""
        ckpts = self.out / "checkpoints"
        if path is None:
            latest = ckpts / "latest"
            if not latest.is_file():
                return False
            path = ckpts / latest.read_text().strip()
        path = Path(path)
        state_file = path / "trainer_state.pt"
        if not state_file.is_file():
            raise FileNotFoundError(f"not a training checkpoint (no trainer_state.pt): {path}")
        from safetensors.torch import load_file
        weights = {}
        for f in sorted((path / "model").glob("*.safetensors")):
            weights.update(load_file(str(f)))
        missing, unexpected = self.unwrapped.load_state_dict(weights, strict=False)
        missing = [k for k in missing if not k.endswith("lm_head.weight") or not self.unwrapped.config.tie_word_embeddings]
        if missing or unexpected:
            raise ValueError(f"checkpoint {path} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
        state = torch.load(state_file, weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.carried = {int(i): TTTState.from_dict(d) for i, d in state["carried"].items()}
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        self.step = state["step"]
        return True


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _replace_dir(tmp: Path, final: Path) -> None:
    """Moves a finished directory into place; the previous one is removed only after the new one is complete."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
