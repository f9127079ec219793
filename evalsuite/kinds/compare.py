"""Kind `compare`: a candidate (`--model`, e.g. the TTT model) against a baseline (`params.baseline`, a model spec) on
one metric of any task, per bin, paired over the task's units (documents, prompts).

Each unit runs the inner task on both models (samples stored as "candidate/NAME" and "baseline/NAME"); at the end
the inner task's own aggregation is applied to each unit alone, which gives the metric per unit and bin for both
systems. Rows per bin: `baseline`, `candidate` (means), `diff` (candidate - baseline: the mean, or the median with `test: sign`, with the confidence interval that inverts
the test, so it excludes 0 exactly when p < alpha), `p_value` (paired sign-flip permutation or sign test), `verdict`
(1 better, 0 no detectable difference at alpha, -1 worse, for the candidate, by `higher_is_better`) and `decidable`
(0 when there are too few units for the test ever to reach p < alpha: then there is no interval and no verdict).
`params.bins` keeps only those bins (e.g. the needle distances beyond an attention window), each alone and pooled
as bin "selected" (a unit counts once per bin it has a value in).
"""
from __future__ import annotations

import dataclasses
from functools import cached_property
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from ttt_omni.schema import Number, PositiveInt, Schema

from ..errors import TaskSpecError
from ..metrics.paired import (decidable, inverted_ci, paired_differences, permutation_p_value, sign_test_p_value,
                              smallest_p_value, verdict)
from ..models import load_model
from ..task import KINDS, TaskKind, TaskSpec, Unit, check_section, register_kind

OPTIONAL = {"alpha": 0.05, "test": "permutation", "bins": None}
SELECTED = "selected"  # the bin of the pooled comparison over params.bins
SIDES = ("candidate", "baseline")


class Params(Schema):
    task: str
    metric: str
    baseline: str  # a model spec
    higher_is_better: bool
    alpha: Annotated[Number, Field(gt=0, lt=1)] = OPTIONAL["alpha"]
    test: Literal["permutation", "sign"] = OPTIONAL["test"]
    bins: list[str] | None = None  # only these bins of the inner task's metric, each alone and pooled ("selected")


@register_kind("compare")
class Compare(TaskKind):
    metrics = frozenset({"baseline", "candidate", "diff", "p_value", "verdict", "decidable"})
    undecided: dict[str, int]  # bin -> number of units, where the test cannot decide (for the notes)

    @classmethod
    def validate(cls, spec: TaskSpec) -> None:
        p = check_section(spec, "params", Params)
        if p.task == spec.name or p.task.startswith("lm_eval:"):
            raise TaskSpecError(f"{spec.source}: params.task must name another evalsuite task, got {p.task!r}")

    def param(self, key: str):
        return self.spec.params.get(key, OPTIONAL.get(key))

    @cached_property
    def inner_spec(self) -> TaskSpec:
        if self.registry is None:
            raise TaskSpecError(f"{self.spec.source}: kind compare runs another task and needs the registry")
        inner = self.registry.get(self.param("task"))
        if inner.kind == "compare":
            raise TaskSpecError(f"{self.spec.source}: params.task {inner.name!r} is itself a comparison")
        if self.spec.lengths:
            inner = dataclasses.replace(inner, lengths=self.spec.lengths)
        metric = self.param("metric")
        declared = inner.metrics or sorted(KINDS[inner.kind].metrics)
        if metric not in declared:
            raise TaskSpecError(f"{self.spec.source}: params.metric {metric!r} is not a metric of task "
                                f"{inner.name!r}; expected one of {sorted(declared)}")
        return inner

    def _kind(self, model) -> TaskKind:
        return KINDS[self.inner_spec.kind](self.inner_spec, model, seed=self.seed, limit=self.limit,
                                           corpus=self.corpus, device=self.device, registry=self.registry)

    @cached_property
    def sides(self) -> dict[str, TaskKind]:
        baseline = load_model(self.param("baseline"), device=self.device)
        return {"candidate": self._kind(self.model), "baseline": self._kind(baseline)}

    def config(self) -> dict:
        baseline = self.sides["baseline"].model
        return {**super().config(), "inner_task": self.inner_spec.name, "inner_version": self.inner_spec.version,
                "baseline_hash": baseline.model_hash, "baseline_dtype": _dtype(baseline.model),
                "candidate_dtype": _dtype(self.model.model)}

    def notes(self) -> list[str]:
        config, notes = self.config(), []
        if config["baseline_dtype"] != config["candidate_dtype"]:
            notes.append(f"the two sides run in different dtypes: candidate {config['candidate_dtype']}, baseline "
                         f"{config['baseline_dtype']} (their difference includes the precision's)")
        for bin_, n in getattr(self, "undecided", {}).items():
            notes.append(f"{bin_ or 'overall'}: {n} paired units are too few to decide (the {self.param('test')} test "
                         f"cannot reach p < {self.param('alpha')}: its smallest p is "
                         f"{smallest_p_value(n, self.param('test')):.3g}); no interval, no verdict")
        return notes

    def units(self) -> list[Unit]:
        return self._kind(self.model).units()

    def run_unit(self, unit: Unit) -> list[dict]:
        return [{**row, "name": f"{side}/{row['name']}"} for side in SIDES
                for row in self.sides[side].run_unit(unit)]

    def per_unit(self, samples: pd.DataFrame, side: str) -> pd.DataFrame:
        """The metric of each unit alone on one side: columns unit, bin, value."""
        mine = samples[samples["name"].str.startswith(f"{side}/")]
        mine = mine.assign(name=mine["name"].str.slice(len(side) + 1))
        inner = self._kind(self.model)
        rows = []
        for unit, part in mine.groupby("unit", sort=True):
            for r in inner.aggregate(part.reset_index(drop=True)):
                if r["name"] == self.param("metric"):
                    rows.append(dict(unit=unit, bin=r.get("bin", ""), value=r["value"]))
        return pd.DataFrame(rows, columns=["unit", "bin", "value"])

    def aggregate(self, samples: pd.DataFrame) -> list[dict]:
        cand, base = self.per_unit(samples, "candidate"), self.per_unit(samples, "baseline")
        paired = cand.merge(base, on=["unit", "bin"], suffixes=("_c", "_b"))
        if self.param("bins") is not None:
            chosen = paired[paired["bin"].isin(self.param("bins"))]
            paired = pd.concat([chosen, chosen.assign(bin=SELECTED)], ignore_index=True)
        alpha, test, rows = self.param("alpha"), self.param("test"), []
        self.undecided = {}
        for bin_, part in paired.groupby("bin", sort=False):
            d = paired_differences(part["value_b"], part["value_c"])
            n = int(d.size)
            centre = float(np.median(d)) if test == "sign" else float(d.mean()) if n else float("nan")
            low, high = inverted_ci(d, test, alpha, seed=self.seed)
            p = permutation_p_value(d, seed=self.seed) if test == "permutation" else sign_test_p_value(d)
            can = decidable(n, alpha, test)
            if not can:
                self.undecided[bin_] = n
            rows += [dict(name=side, bin=bin_, value=float(np.nanmean(part[f"value_{side[0]}"])), n=n)
                     for side in SIDES]
            rows += [dict(name="diff", bin=bin_, value=centre, ci_low=low, ci_high=high, n=n),
                     dict(name="p_value", bin=bin_, value=p, n=n),
                     dict(name="verdict", bin=bin_, n=n,
                          value=float(verdict(centre, p, alpha, self.param("higher_is_better")) if can else 0)),
                     dict(name="decidable", bin=bin_, value=float(can), n=n)]
        wanted = set(self.spec.metrics or self.metrics)
        return [r for r in rows if r["name"] in wanted]


def _dtype(model) -> str:
    return str(getattr(model, "dtype", next(model.parameters()).dtype)).removeprefix("torch.")
