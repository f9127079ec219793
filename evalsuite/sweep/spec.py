"""A sweep's YAML spec, validated with pydantic v2 (strict types, unknown keys refused, messages naming the file and
field), and what it means for one trial: the training config of a parameter setting.

    study: ablation-ttt-type          # the study's name in the database (letters, digits, . _ -)
    train: tiny-ttt                   # training YAML or bundled config name (TrainConfig.from_yaml)
    set: {steps: 150, context: 256}   # fixed overrides of the training config for every trial
    space:                            # the searched fields: TrainConfig options, or model_overrides.FIELD
      model_overrides.ttt_type: {grid: [linear, mlp]}
      ttt_lr: {log_uniform: [1.0e-5, 1.0e-2]}
    sampler: tpe                      # grid (every field a grid) | random | tpe (Bayesian)
    trials: 12                        # random / tpe: how many; grid: left out (every point x every seed)
    seeds: [0, 1, 2]                  # the training seed is one more searched parameter, `seed`
    default: {model_overrides.ttt_type: linear}   # the reference setting the report compares the best with
    objective: {task: ppl_vs_length, metric: cum_ppl, bin: length=4096, direction: minimize, lengths: [4k], limit: 5}
    pruning: {pruner: median, every: 50, startup_trials: 2}

A value in `set` written `bundled:PATH` is the path of a bundled file (ttt_omni.resources), e.g.
`tokenizer: bundled:checkpoints/tiny-ttt`, so a preset works from any directory.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

from huggingface_hub.errors import StrictDataclassError
from pydantic import Field, model_validator

from ttt_omni.models.presets import preset_config
from ttt_omni.resources import bundled
from ttt_omni.schema import Number, Schema, read_mapping, validate
from ttt_omni.train.config import TrainConfig

from ..errors import EvalsuiteError

MODEL_PREFIX = "model_overrides."
# set per trial by the sweep itself
RESERVED = {"output_dir", "seed", "stage", "stages", "model_overrides"}
Scalar = str | int | float | bool | None


class SweepSpecError(EvalsuiteError, ValueError):
    """A sweep YAML that is malformed or names fields the trainer does not have."""


class Space(Schema):
    """One searched field: exactly one of `grid` (values; a list value such as a layer list is one choice),
    `uniform` / `log_uniform` [low, high] (floats) or `int_range` [low, high]."""

    grid: list[Any] | None = Field(default=None, min_length=1)
    uniform: list[Number] | None = None  # lists, not tuples: strict pydantic takes no YAML list for a tuple
    log_uniform: list[Number] | None = None
    int_range: list[int] | None = None

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in ("grid", "uniform", "log_uniform", "int_range") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"expected exactly one of grid, uniform, log_uniform, int_range, got {given or 'none'}")
        bounds = getattr(self, given[0])
        if given[0] != "grid" and len(bounds) != 2:
            raise ValueError(f"{given[0]}: expected [low, high], got {bounds}")
        if given[0] != "grid" and not bounds[0] < bounds[1]:
            raise ValueError(f"{given[0]}: expected [low, high] with low < high, got {list(bounds)}")
        if given[0] == "log_uniform" and bounds[0] <= 0:
            raise ValueError(f"log_uniform: expected low > 0, got {bounds[0]}")
        if self.grid is not None and len({encode(v) for v in self.grid}) != len(self.grid):
            raise ValueError(f"grid: values repeat: {self.grid}")
        return self


class Objective(Schema):
    task: str = "ppl_vs_length"
    metric: str = "cum_ppl"
    bin: str = ""  # the metric row's bin, e.g. "length=4096"; "" for a metric without bins
    direction: Literal["minimize", "maximize"] = "minimize"
    lengths: list[str | int] | None = None  # the task's --lengths (1k, 2048, ...)
    limit: int | None = Field(default=None, ge=1)  # the task's --limit (first N documents)
    include_paths: list[str] = []
    device: str | None = None  # where evaluations run; None: cuda when torch sees a GPU, else cpu


class Pruning(Schema):
    pruner: Literal["none", "median"] = "none"
    every: int | None = Field(default=None, ge=1)  # evaluate (and report to the pruner) every N training steps
    startup_trials: int = Field(default=2, ge=0)  # the median pruner prunes nothing before this many trials finished


class SweepSpec(Schema):
    study: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    train: str
    stage: int | None = None
    set: dict[str, Any] = {}
    space: dict[str, Space] = Field(min_length=1)
    sampler: Literal["grid", "random", "tpe"] = "grid"
    trials: int | None = Field(default=None, ge=1)
    seeds: list[int] = Field(default=[0], min_length=1)
    default: dict[str, Any] = {}
    objective: Objective = Objective()
    pruning: Pruning = Pruning()
    output_dir: str = "runs/sweeps/{study}"
    heartbeat_s: int = Field(default=60, ge=1)  # a killed worker's trial is failed (and retried) after 2x this
    max_retries: int = Field(default=2, ge=0)  # how often a killed trial is retried before it stays failed

    @model_validator(mode="after")
    def _consistent(self):
        known = {f.name for f in fields(TrainConfig)}
        for where, names in (("space", self.space), ("set", self.set)):
            for name in names:
                field = name.removeprefix(MODEL_PREFIX)
                if name.startswith(MODEL_PREFIX) and field:
                    continue
                if name in RESERVED or name not in known:
                    raise ValueError(f"{where}: {name!r} is not a training option a sweep can set; expected one of "
                                     f"{sorted(known - RESERVED)} or model_overrides.FIELD"
                                     + (" (seeds: use `seeds`)" if name == "seed" else ""))
        both = sorted(set(self.space) & set(self.set))
        if both:
            raise ValueError(f"set and space both name {both}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds repeat: {self.seeds}")
        if self.sampler == "grid":
            loose = [n for n, s in self.space.items() if s.grid is None]
            if loose:
                raise ValueError(f"sampler grid needs a grid for every field; {loose} have ranges (use random or tpe)")
            if self.trials is not None:
                raise ValueError(f"trials: a grid runs every point x every seed ({self.grid_size()}); leave it out")
        elif self.trials is None:
            raise ValueError(f"trials: required with sampler {self.sampler} (how many trials to run)")
        elif all(s.grid is not None for s in self.space.values()) and self.trials > self.grid_size():
            raise ValueError(f"trials: {self.trials} is more than the {self.grid_size()} settings x seeds of this "
                             f"space (every field a grid), so trials would repeat; at most {self.grid_size()}, or "
                             "sampler grid to run each once")
        for name, value in self.default.items():
            if name not in self.space:
                raise ValueError(f"default: {name!r} is not a field of `space` ({sorted(self.space)})")
            grid = self.space[name].grid
            if grid is not None and encode(value) not in {encode(v) for v in grid}:
                raise ValueError(f"default: {name}={value!r} is not one of its grid values {grid}")
        if self.pruning.pruner != "none" and self.pruning.every is None:
            raise ValueError("pruning.every: required with a pruner (evaluate every N training steps)")
        return self

    def grid_size(self) -> int:
        return math.prod(len(s.grid) for s in self.space.values() if s.grid is not None) * len(self.seeds)

    def n_trials(self) -> int:
        """How many trials settle the study: the grid's points x seeds, or `trials`."""
        return self.grid_size() if self.sampler == "grid" else self.trials

    def digest(self) -> str:
        """What makes two specs the same study (a resumed study must not change its space or budget)."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]

    def out_dir(self) -> Path:
        return Path(self.output_dir.replace("{study}", self.study))

    def grid_points(self) -> list[dict]:
        """Every setting of a grid (without the seed), in the spec's order."""
        names = list(self.space)
        return [dict(zip(names, values)) for values in itertools.product(*(self.space[n].grid for n in names))]


def encode(value: Any) -> Scalar:
    """A grid value as Optuna stores it: scalars as they are, a list or mapping as its JSON text."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def decode(space: Space, value: Scalar) -> Any:
    """The grid value that `encode` gave `value`."""
    if space.grid is not None:
        for v in space.grid:
            if encode(v) == value:
                return v
    return value


def load_spec(path: str | Path) -> SweepSpec:
    """The sweep spec at `path` (a YAML file, or a bundled preset name: ablation-ttt-type, configs/sweeps/...)."""
    path = spec_path(path)
    data = read_mapping(path, SweepSpecError, "a mapping (study, train, space, ...)")
    spec = validate(SweepSpec, data, str(path), SweepSpecError)
    points = spec.grid_points() if spec.sampler == "grid" else [{n: _first(s) for n, s in spec.space.items()}]
    for point in points:  # every setting must be one the trainer and the model accept
        try:
            cfg = train_config(spec, {**point, "seed": spec.seeds[0]}, Path("."))
            if cfg.preset is not None:
                preset_config(cfg.preset, **cfg.model_overrides)
        except (ValueError, TypeError, FileNotFoundError, StrictDataclassError) as e:
            raise SweepSpecError(f"{path}: the training config does not take the setting {point}: "
                                 f"{' '.join(str(e).split())}") from None
    return spec


def spec_path(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if p.is_file():
        return p
    name = p.name if p.suffix in (".yaml", ".yml") else f"{p.name}.yaml"
    try:
        folder = bundled("configs", "sweeps")
    except FileNotFoundError:
        folder = None
    if folder is not None and (folder / name).is_file():
        return folder / name
    presets = sorted(q.stem for q in folder.glob("*.yaml")) if folder is not None and folder.is_dir() else []
    raise SweepSpecError(f"sweep spec {str(path)!r} not found: expected a YAML file or a bundled preset "
                         f"({', '.join(presets) or 'none installed'})")


def _first(space: Space) -> Any:
    if space.grid is not None:
        return space.grid[0]
    if space.int_range is not None:
        return space.int_range[0]
    return (space.uniform or space.log_uniform)[0]


def _resolve(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("bundled:"):
        return str(bundled(*Path(value.removeprefix("bundled:")).parts))
    return value


def train_config(spec: SweepSpec, params: dict, out: Path) -> TrainConfig:
    """The training config of one trial: the spec's `train` config, its `set`, then the trial's `params` (with
    `seed`); model_overrides.FIELD entries merge into the config's model_overrides."""
    base = TrainConfig.from_yaml(spec.train, stage=spec.stage)
    overrides = {"output_dir": str(out), "model_overrides": dict(base.model_overrides)}
    for name, value in {**spec.set, **params}.items():
        value = _resolve(value)
        if name.startswith(MODEL_PREFIX):
            overrides["model_overrides"][name.removeprefix(MODEL_PREFIX)] = value
        else:
            overrides[name] = value
    return TrainConfig.from_yaml(spec.train, stage=spec.stage, overrides=overrides)
