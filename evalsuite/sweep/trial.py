"""One trial: train a setting for the spec's budget, evaluate it through the runner, land both in the store.

The trial's training run lives in OUTPUT_DIR/trial-NNNN (NNNN: the number of the trial it retries, if it is a retry),
so a trial retried after its worker was killed continues the killed one's training from its latest checkpoint. Every
evaluation is an ordinary run of the objective's task on the checkpoint (model `ttt:` or `hf:` of the checkpoint
directory), its config holding a `sweep` block (study, trial, parameters, training step): the dashboard, `compare`
and the leaderboards read it like any run, and an evaluation already finished is found by that block, not redone.
The training monitor (monitor.csv and train_log.csv) is stored as a `train_monitor` run of the final checkpoint.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ttt_omni.train.trainer import Trainer

from ..errors import EvalsuiteError
from ..runner import run_task
from ..store import Store
from ..task import parse_length
from ..train_monitor import ingest
from .spec import SweepSpec, train_config


class TrialPruned(Exception):
    """The pruner stopped this trial at an intermediate evaluation."""


@dataclass
class TrialResult:
    value: float
    eval_run_id: int
    monitor_run_id: int | None
    train_dir: str
    intermediate_runs: dict[int, int] = field(default_factory=dict)  # training step -> evaluation run id


def trial_dir(spec: SweepSpec, number: int) -> Path:
    return spec.out_dir() / f"trial-{number:04d}"


def run_trial(spec: SweepSpec, number: int, params: dict, store: Store, *,
              report: Callable[[int, float], bool] | None = None, reported: dict[int, float] | None = None,
              progress: bool = True) -> TrialResult:
    """Train and evaluate one setting. `params` are the trial's field values (with `seed`); `report(step, value)` gets
    each intermediate objective value and returns True to prune (TrialPruned is raised); steps in `reported` (the
    values a killed try of this trial already reported) are not evaluated again."""
    out = trial_dir(spec, number)
    cfg = train_config(spec, params, out)
    every = spec.pruning.every if report is not None else None
    if every:
        cfg.save_every = every  # a checkpoint at each intermediate evaluation
    trainer = Trainer(cfg)
    trainer.resume()  # a retried trial continues the killed try's training
    result = TrialResult(math.nan, -1, None, str(out))
    for step in range(every, cfg.steps, every) if every else ():
        if step in (reported or {}):
            continue
        if trainer.step < step:
            trainer.train(until=step)
        run_id, value = evaluate(spec, store, out / "checkpoints" / f"step-{step:07d}" / "model", cfg.baseline,
                                 number, params, step, progress)
        result.intermediate_runs[step] = run_id
        if report(step, value):
            raise TrialPruned(f"pruned at step {step} ({spec.objective.metric} {value:.4g})")
    final = Path(trainer.train()["final"])
    result.eval_run_id, result.value = evaluate(spec, store, final, cfg.baseline, number, params, cfg.steps, progress)
    monitor = out / "monitor.csv"
    if monitor.is_file():
        run = store.run(result.eval_run_id)
        result.monitor_run_id = ingest(store, monitor, model_id=run["model_id"], model_hash=run["model_hash"],
                                       checkpoint=str(final))
    return result


def sweep_block(spec: SweepSpec, number: int, params: dict, step: int) -> dict:
    """What a trial's evaluation run records in its config (and identity)."""
    return {"study": spec.study, "trial": number, "params": params, "step": step}


def evaluate(spec: SweepSpec, store: Store, checkpoint: Path, baseline: bool, number: int, params: dict, step: int,
             progress: bool = True) -> tuple[int, float]:
    """(run id, objective value) of the objective's task on `checkpoint`: a finished run with the same sweep block
    is reused, else the runner runs (or resumes) one."""
    obj = spec.objective
    block = sweep_block(spec, number, params, step)
    run_id = stored_run(store, obj.task, block)
    if run_id is None:
        lengths = [parse_length(x, f"sweep {spec.study}: objective.lengths") for x in obj.lengths or []]
        model = f"{'hf' if baseline else 'ttt'}:{checkpoint}"
        device = obj.device or ("cuda" if torch.cuda.is_available() else "cpu")
        run_id = run_task(obj.task, model, store=store, include_paths=obj.include_paths, limit=obj.limit,
                          device=device, lengths=lengths or None, seed=params.get("seed", 0), progress=progress,
                          name=f"{spec.study}/trial-{number}@{step}", extra_config={"sweep": block}).run_id
    return run_id, objective_value(store, run_id, spec)


def stored_run(store: Store, task: str, block: dict) -> int | None:
    runs = store.runs(task=task, status="finished")
    want = json.dumps(block, sort_keys=True, default=str)
    for run_id, config in zip(runs["id"], runs["config"]):
        if json.dumps(json.loads(config).get("sweep"), sort_keys=True, default=str) == want:
            return int(run_id)
    return None


def objective_value(store: Store, run_id: int, spec: SweepSpec) -> float:
    obj = spec.objective
    rows = store.metrics(run_id=run_id)
    hit = rows[(rows["name"] == obj.metric) & (rows["bin"] == obj.bin)]
    if hit.empty:
        have = sorted({f"{n}@{b}" if b else n for n, b in zip(rows["name"], rows["bin"])})
        raise EvalsuiteError(f"sweep {spec.study}: run {run_id} of {obj.task} has no metric {obj.metric!r} in bin "
                             f"{obj.bin!r}; it has {', '.join(have[:12])}")
    value = hit["value"].iloc[0]
    return math.nan if value is None else float(value)
