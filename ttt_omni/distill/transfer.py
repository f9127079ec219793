"""Attention transfer: train each TTT layer to reproduce the outputs of the attention it replaces, from the stored
activations (activations.py), before any end-to-end training (LoLCATs, Zhang et al. 2024; "The Mamba in the Llama",
Wang et al. 2024).

The loss of a layer is its relative MSE, ||y_hat - y||^2 / ||y||^2 over the batch (so layers whose outputs differ in
scale weigh alike; 1.0 is what an all-zero output scores), plus `cosine_weight` x (1 - mean cosine similarity of
the per-token outputs). Every parameter of the TTT layer learns (q/k/v/o, the post-norm and the inner model's
parameters, float32 in their own optimizer group), in float32. `schedule` "layerwise" trains one layer after the
other (only one in memory; a finished layer is final at once); "joint" steps all of them on the same sequences
(each shard read once per step for every layer). Both give each layer the same number of steps; the objectives are
the same, since every layer reads the teacher's activations.

Like the trainer: a cosine schedule with warmup, gradient clipping, a CSV log (distill_log.csv), the TTT monitor
(monitor.csv, with its alarms) and checkpoints that hold everything to continue: the layers, the optimizer, the
scheduler and the step; the batch of a step is a function of (seed, step), so a resumed run takes the same batches.
"""
from __future__ import annotations

import csv
import json
import math
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ttt_omni.atomic import replacing_dir, replacing_file, write_json, write_text
from ttt_omni.layers import TTTBase, TTTInnerParams
from ttt_omni.train.monitor import MonitorAlarm, TTTMonitor
from ttt_omni.train.trainer import append_csv, keep_rows

from .activations import ActivationStore

SCHEDULES = ("layerwise", "joint")


@dataclass
class TransferSettings:
    steps: int = 400  # optimizer steps per layer
    lr: float = 1e-3  # projections and post-norm
    inner_lr: float | None = None  # the float32 inner-model parameters (default: lr)
    warmup: int = 20
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    cosine_weight: float = 0.0
    batch_sequences: int = 1  # sequences per step
    schedule: str = "layerwise"
    save_every: int = 50
    monitor_every: int = 25
    validate_every: int = 100
    max_abs: float = 50.0  # monitor alarm on |inner weights|
    seed: int = 0

    def validate(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r} is unknown; expected one of {SCHEDULES}")
        for name in ("steps", "batch_sequences", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.lr <= 0 or (self.inner_lr is not None and self.inner_lr <= 0):
            raise ValueError(f"lr={self.lr} and inner_lr={self.inner_lr} must be > 0")
        if self.cosine_weight < 0:
            raise ValueError(f"cosine_weight={self.cosine_weight} must be >= 0")


def transfer_loss(pred: torch.Tensor, target: torch.Tensor, cosine_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """{"loss", "rel_mse", "cosine"} of predicted vs teacher attention outputs [..., hidden]."""
    rel_mse = (pred - target).pow(2).sum() / target.pow(2).sum().clamp_min(1e-12)
    cosine = F.cosine_similarity(pred, target, dim=-1).mean()
    return {"loss": rel_mse + cosine_weight * (1 - cosine), "rel_mse": rel_mse, "cosine": cosine}


def _lr_factor(s: TransferSettings, step: int) -> float:
    if step < s.warmup:
        return (step + 1) / s.warmup
    progress = min(1.0, (step - s.warmup) / max(1, s.steps - s.warmup))
    return s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _optimizer(layers: list[TTTBase], s: TransferSettings):
    inner = {id(p) for layer in layers for m in layer.modules() if isinstance(m, TTTInnerParams)
             for p in m.parameters()}
    params = [p for layer in layers for p in layer.parameters()]
    groups = [{"params": [p for p in params if id(p) not in inner], "lr": s.lr},
              {"params": [p for p in params if id(p) in inner], "lr": s.inner_lr or s.lr}]
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.95), weight_decay=0.0)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(s, step))


def batch_rows(store: ActivationStore, s: TransferSettings, step: int) -> tuple[Path, list[int]]:
    """(shard, rows) of a step: epochs over the training sequences in a seeded order, up to `batch_sequences`
    consecutive sequences of one shard at a time."""
    slots = [(shard, start) for shard in store.shards("train")
             for start in range(0, store.rows(shard), s.batch_sequences)]
    epoch, i = divmod(step, len(slots))
    order = list(range(len(slots)))
    random.Random(s.seed * 100_003 + epoch).shuffle(order)
    shard, start = slots[order[i]]
    return shard, list(range(start, min(start + s.batch_sequences, store.rows(shard))))


@torch.no_grad()
def validation_loss(layer: TTTBase, layer_idx: int, store: ActivationStore, cosine_weight: float = 0.0) -> dict:
    """Mean relative MSE and cosine of `layer` over the validation shards (token-weighted over sequences)."""
    totals = {"err": 0.0, "norm": 0.0, "cos": 0.0, "n": 0}
    device = next(layer.parameters()).device
    for shard in store.shards("validation"):
        x, y = (t.to(device) for t in store.read(shard, layer_idx))
        for row in range(x.shape[0]):
            pred, _ = layer(x[row:row + 1])
            totals["err"] += float((pred - y[row:row + 1]).pow(2).sum())
            totals["norm"] += float(y[row:row + 1].pow(2).sum())
            totals["cos"] += float(F.cosine_similarity(pred, y[row:row + 1], dim=-1).sum())
            totals["n"] += x.shape[1]
    if not totals["n"]:
        return {}
    return {"val_rel_mse": totals["err"] / totals["norm"], "val_cosine": totals["cos"] / totals["n"]}


class LayerTransfer:
    """Trains the TTT layers {layer index: TTTBase} against `store`, in `work` (checkpoints, logs, finished layers).
    `run()` resumes from what `work` holds and returns {layer: validation metrics before and after}."""

    def __init__(self, layers: dict[int, TTTBase], store: ActivationStore, work: str | Path,
                 settings: TransferSettings):
        settings.validate()
        if not layers:
            raise ValueError("no TTT layers to train")
        missing = sorted(set(layers) - set(store.settings.layers))
        if missing:
            raise ValueError(f"layers {missing} have no stored activations (the store holds {store.settings.layers})")
        if not store.complete():
            raise ValueError(f"{store.folder} is incomplete ({[p.name for p in store.missing()[:5]]} missing); "
                             "collect first")
        self.layers, self.store, self.work, self.s = layers, store, Path(work), settings
        self.device = next(next(iter(layers.values())).parameters()).device  # the shards are read onto it
        self.jobs = [[i] for i in sorted(layers)] if settings.schedule == "layerwise" else [sorted(layers)]

    def finished_path(self, layer: int) -> Path:
        return self.work / f"layer-{layer}.safetensors"

    def result_path(self, layer: int) -> Path:
        """A finished layer's validation before and after, written just before its weights."""
        return self.work / f"layer-{layer}.json"

    def run(self) -> dict[int, dict]:
        self.work.mkdir(parents=True, exist_ok=True)
        recorded = self.work / "settings.json"
        mine = {**asdict(self.s), "layers": sorted(self.layers), "train_sequences": self.store.settings.train_sequences}
        if recorded.is_file() and json.loads(recorded.read_text()) != mine:
            raise ValueError(f"{self.work} holds a transfer run with other settings ({recorded}); use another work "
                             "directory to train with these")
        write_json(recorded, mine)
        results = {}
        for job_index, job in enumerate(self.jobs):
            if all(self.finished_path(i).is_file() for i in job):
                for i in job:
                    self.layers[i].load_state_dict(load_file(str(self.finished_path(i))))
                    if self.result_path(i).is_file():  # absent in a work folder of an older version
                        results[i] = json.loads(self.result_path(i).read_text())
                continue
            results.update(self._train(job_index, job))
        rows = [{"layer": i, **row} for i, row in sorted(results.items())]
        with replacing_file(self.work / "summary.csv") as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
            writer.writeheader()
            writer.writerows(rows)
        return results

    # --- one job: a layer (layerwise) or all of them (joint) ---
    def _train(self, job_index: int, job: list[int]) -> dict[int, dict]:
        s = self.s
        modules = [self.layers[i] for i in job]
        for m in modules:
            m.float().train()
        optimizer, scheduler = _optimizer(modules, s)
        monitor = TTTMonitor(torch.nn.ModuleDict({f"layer{i}": self.layers[i] for i in job}),
                             self.work / "monitor.csv", s.monitor_every, s.max_abs)
        step, before = self._resume(job_index, job, optimizer, scheduler)
        self._cut_logs(job_index, job, step)
        if before is None:
            before = {i: validation_loss(self.layers[i], i, self.store, s.cosine_weight) for i in job}
        log = self.work / "distill_log.csv"
        bar = tqdm(total=s.steps, initial=step, desc=f"distill layer{'s' * (len(job) > 1)} "
                   f"{','.join(map(str, job))}", unit="step")
        while step < s.steps:
            shard, rows = batch_rows(self.store, s, step)
            watch = monitor.wants(step)
            optimizer.zero_grad(set_to_none=True)
            parts = {}
            started = time.perf_counter()
            with monitor.capture(job_index * s.steps + step) if watch else nullcontext():
                for i in job:
                    x, y = (t.to(self.device) for t in self.store.read(shard, i, rows))
                    pred, _ = self.layers[i](x)
                    parts[i] = transfer_loss(pred, y, s.cosine_weight)
                    parts[i]["loss"].backward()
            if watch:
                try:
                    monitor.record()
                except MonitorAlarm as e:
                    path = self._save(job_index, job, step, optimizer, scheduler, before, name="last-good")
                    raise MonitorAlarm(f"{e}. Distillation stopped; the layers before this step are at {path}") \
                        from None
            for i, p in parts.items():
                if not torch.isfinite(p["loss"]):
                    raise MonitorAlarm(f"layer {i}, step {step}: the distillation loss is {p['loss'].item()}")
            grad_norms = {i: float(torch.nn.utils.clip_grad_norm_(self.layers[i].parameters(), s.grad_clip))
                          for i in job}  # per layer, so that both schedules take the same steps
            optimizer.step()
            scheduler.step()
            step += 1
            tokens = len(rows) * self.store.settings.seq_len
            for i, p in parts.items():
                append_csv(log, {"layer": i, "step": step, "loss": p["loss"].item(), "rel_mse": p["rel_mse"].item(),
                                 "cosine": p["cosine"].item(), "grad_norm": grad_norms[i],
                                 "lr": scheduler.get_last_lr()[0],
                                 "tokens_per_s": tokens * len(job) / (time.perf_counter() - started)})
            bar.update(1)
            bar.set_postfix(rel_mse=f"{sum(p['rel_mse'].item() for p in parts.values()) / len(parts):.3f}")
            if step % s.validate_every == 0 and step < s.steps:
                for i in job:
                    append_csv(self.work / "validation.csv", {"layer": i, "step": step,
                                                              **validation_loss(self.layers[i], i, self.store)})
            if step % s.save_every == 0 or step == s.steps:
                self._save(job_index, job, step, optimizer, scheduler, before)
        bar.close()
        results = {}
        for i in job:
            after = validation_loss(self.layers[i], i, self.store, s.cosine_weight)
            append_csv(self.work / "validation.csv", {"layer": i, "step": step, **after})
            results[i] = {**{f"before_{k}": v for k, v in before[i].items()},
                          **{f"after_{k}": v for k, v in after.items()}, "steps": s.steps,
                          "tokens": s.steps * s.batch_sequences * self.store.settings.seq_len}
            write_json(self.result_path(i), results[i])
            with replacing_file(self.finished_path(i)) as tmp:
                save_file({k: v.detach().contiguous() for k, v in self.layers[i].state_dict().items()}, str(tmp))
        return results

    def _cut_logs(self, job_index: int, job: list[int], step: int) -> None:
        """The job's log rows as they stood at `step`, where it resumes: a killed run may have logged steps after
        its last checkpoint, which are trained (and logged) again."""
        mine = {str(i) for i in job}
        keep_rows(self.work / "distill_log.csv", lambda row: row["layer"] not in mine or int(row["step"]) <= step)
        last = self.s.steps  # the row of the end of the job is written after its last checkpoint
        keep_rows(self.work / "validation.csv", lambda row: row["layer"] not in mine or int(row["step"]) < step
                  or int(row["step"]) == step < last)
        first = job_index * self.s.steps  # the monitor numbers the steps of all jobs in one sequence
        keep_rows(self.work / "monitor.csv", lambda row: int(row["step"]) < first + step)

    def _checkpoints(self) -> Path:
        return self.work / "checkpoints"

    def _save(self, job_index, job, step, optimizer, scheduler, before, name: str | None = None) -> Path:
        path = self._checkpoints() / (name or f"job{job_index}-step-{step:07d}")
        with replacing_dir(path) as tmp:
            torch.save({"job": job_index, "layers": job, "step": step,
                        "weights": {i: self.layers[i].state_dict() for i in job},
                        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "before": before}, tmp / "state.pt")
        if name is None:
            write_text(self._checkpoints() / "latest", path.name)
            for old in self._checkpoints().glob(f"job{job_index}-step-*"):
                if old != path:
                    shutil.rmtree(old, ignore_errors=True)
        return path

    def _resume(self, job_index, job, optimizer, scheduler) -> tuple[int, dict | None]:
        latest = self._checkpoints() / "latest"
        if not latest.is_file():
            return 0, None
        state = torch.load(self._checkpoints() / latest.read_text().strip() / "state.pt", weights_only=False)
        if state["job"] != job_index or state["layers"] != job:
            return 0, None
        for i in job:
            self.layers[i].load_state_dict(state["weights"][i])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        return state["step"], state["before"]
