"""The curriculum promotion gate: a stage's rules, each evaluated from the results store, and decision records.

A stage of the curriculum YAML (ttt_omni.train.config) carries its rules:

    gate:
      rules:
        - name: ppl degradation at the stage length vs 1k   # optional label
          task: ppl_vs_length          # metric rows of this task...
          metric: degradation_pct      # ...with this name...
          bin: "length={context}"      # ...and bin (glob; {context} = the stage's context, {model_id}); default ""
          op: "<"                      # < <= > >= ==
          threshold: 20
          use: value                   # or ci_low / ci_high: hold a CI bound to the threshold
          optional: false              # true: missing evidence does not block (e.g. human preference)

Evidence is the latest finished run of the task for the checkpoint (by content hash; `human_pref` runs are linked
through the run of the system they rated). When several rows match the bin, every one must pass and the worst is
shown. A rule without evidence is "not evaluated", never a pass: the gate's outcome is `pass` only when every
required rule passes, `fail` when any evaluated rule fails, else `incomplete`.
"""
from __future__ import annotations

import fnmatch
import json
import math
import operator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ttt_omni.train.config import TrainConfig

from . import gate_db
from .environment import describe, differences
from .errors import EvalsuiteError
from .store import Store
from .train_monitor import TASK as MONITOR_TASK

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}
RULE_KEYS = {"name", "task", "metric", "bin", "op", "threshold", "use", "optional"}
HUMAN_PREF = "human_pref"


class GateError(EvalsuiteError, ValueError):
    """A curriculum file, stage or rule that cannot be used."""


@dataclass(frozen=True)
class Rule:
    name: str
    task: str
    metric: str
    bin: str
    op: str
    threshold: float
    use: str = "value"
    optional: bool = False


@dataclass
class RuleResult:
    rule: Rule
    status: str  # pass | fail | not evaluated
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    bin: str | None = None
    run_id: int | None = None
    detail: str = ""

    def as_dict(self) -> dict:
        return {**asdict(self.rule), **{k: v for k, v in asdict(self).items() if k != "rule"}}


@dataclass
class GateResult:
    model_hash: str
    stage: int
    curriculum: str
    rules: list[RuleResult]
    notes: list[str] = field(default_factory=list)  # e.g. the evidence runs were measured in other environments

    @property
    def outcome(self) -> str:
        if any(r.status == "fail" for r in self.rules):
            return "fail"
        if any(r.status == "not evaluated" and not r.rule.optional for r in self.rules):
            return "incomplete"
        return "pass"


# --- rules ---------------------------------------------------------------------------------------------------


def parse_rules(gate: object, where: str) -> list[Rule]:
    """Rules from a stage's `gate:` mapping; errors name the file, stage and rule."""
    if gate is None:
        return []
    if not isinstance(gate, dict) or not isinstance(gate.get("rules"), list):
        raise GateError(f"{where}: gate must be a mapping with a list `rules`, got {gate!r}")
    rules = []
    for i, r in enumerate(gate["rules"], 1):
        at = f"{where}, rule {i}"
        if not isinstance(r, dict):
            raise GateError(f"{at}: expected a mapping, got {r!r}")
        unknown = sorted(set(r) - RULE_KEYS)
        if unknown:
            raise GateError(f"{at}: unknown key(s) {unknown}; expected {sorted(RULE_KEYS)}")
        for key in ("task", "metric", "op", "threshold"):
            if key not in r:
                raise GateError(f"{at}: `{key}` is required")
        if r["op"] not in OPS:
            raise GateError(f"{at}: op {r['op']!r} is not one of {' '.join(OPS)}")
        if isinstance(r["threshold"], bool) or not isinstance(r["threshold"], (int, float)):
            raise GateError(f"{at}: threshold must be a number, got {r['threshold']!r}")
        if r.get("use", "value") not in ("value", "ci_low", "ci_high"):
            raise GateError(f"{at}: use must be value, ci_low or ci_high, got {r['use']!r}")
        name = r.get("name") or f"{r['task']}.{r['metric']} {r['op']} {r['threshold']}"
        rules.append(Rule(str(name), str(r["task"]), str(r["metric"]), str(r.get("bin", "")), r["op"],
                          float(r["threshold"]), r.get("use", "value"), bool(r.get("optional", False))))
    return rules


def stage_rules(curriculum: str | Path, stage: int) -> tuple[list[Rule], int]:
    """(rules, context) of `stage` in a curriculum YAML."""
    try:
        cfg = TrainConfig.from_yaml(curriculum, stage=stage)
    except (ValueError, FileNotFoundError) as e:
        raise GateError(f"curriculum: {e}") from None
    return parse_rules(cfg.gate(), f"{curriculum}, stage {stage}"), cfg.context


# --- evidence ------------------------------------------------------------------------------------------------


def _human_pref_runs(store: Store, model_hash: str) -> set[int]:
    """human_pref runs whose candidate (first system) is the checkpoint: the system's outputs came from the
    latest finished run of the rated task with that model_id before the vote summary."""
    out = set()
    pref = store.runs(task=HUMAN_PREF, status="finished")
    for run_id, model_id, config in zip(pref["id"], pref["model_id"], pref["config"]):
        task = json.loads(config).get("task")
        if not task:
            continue
        src = store.runs(task=task, status="finished")
        src = src[(src["model_id"] == model_id) & (src["id"] < run_id)]
        if not src.empty and src["model_hash"].iloc[-1] == model_hash:
            out.add(int(run_id))
    return out


def evaluate_rule(store: Store, rule: Rule, model_hash: str, *, context: int, model_id: str = "") -> RuleResult:
    pattern = rule.bin.format(context=context, model_id=model_id)
    if rule.task == HUMAN_PREF:
        df = store.metrics(task=rule.task, name=rule.metric, finished_only=True)
        df = df[df["run_id"].isin(_human_pref_runs(store, model_hash))]
    else:
        df = store.metrics(task=rule.task, model_hash=model_hash, name=rule.metric, finished_only=True)
    df = df[[fnmatch.fnmatchcase(b, pattern) for b in df["bin"]]] if not df.empty else df
    if df.empty:
        return RuleResult(rule, "not evaluated", detail=f"no finished {rule.task} run with {rule.metric} "
                                                        f"bin {pattern or '(none)'} for this checkpoint")
    df = df[df["run_id"] == df["run_id"].max()]
    check = OPS[rule.op]
    results = []
    for r in df.itertuples():
        x = getattr(r, rule.use)
        nan = x is None or math.isnan(x)
        ok = not nan and bool(check(x, rule.threshold))
        margin = -math.inf if nan else abs(rule.threshold - x) * (1 if ok else -1)  # smallest: the worst row
        results.append((ok, margin, r))
    ok, _, worst = min(results, key=lambda t: (t[0], t[1]))
    x = getattr(worst, rule.use)
    detail = "" if ok else ("value is NaN" if x is None or math.isnan(x) else
                            f"{rule.use} {x:.4g} is not {rule.op} {rule.threshold:g}")
    return RuleResult(rule, "pass" if ok else "fail", _f(worst.value), _f(worst.ci_low), _f(worst.ci_high),
                      None if worst.n is None or worst.n != worst.n else int(worst.n), worst.bin, int(worst.run_id),
                      detail)


def evaluate(store: Store, model_hash: str, curriculum: str | Path, stage: int) -> GateResult:
    rules, context = stage_rules(curriculum, stage)
    runs = store.runs(model_hash=model_hash)
    model_id = str(runs["model_id"].iloc[-1]) if not runs.empty else ""
    results = [evaluate_rule(store, r, model_hash, context=context, model_id=model_id) for r in rules]
    evidence = sorted({r.run_id for r in results if r.run_id is not None})
    measured = (store.run(i) for i in evidence)  # the training monitor is not a measurement of this environment
    diffs = differences({f"run {r['id']}": r["environment"] for r in measured if r["task"] != MONITOR_TASK})
    notes = [f"the evidence was measured in different environments: {describe(diffs)}"] if diffs else []
    return GateResult(model_hash, stage, str(curriculum), results, notes)


def decide(store: Store, result: GateResult, checkpoint: str, *, outcome: str | None = None, by: str = "gate",
           reason: str = "") -> int:
    """Record a decision with the evidence: the gate's own outcome, or a person's (approved / rejected / forced)."""
    outcome = outcome or result.outcome
    if outcome == result.outcome and not reason:
        failing = [f"{r.rule.name}: {r.status}" for r in result.rules if r.status != "pass"]
        reason = "; ".join(failing + result.notes) or "all rules pass"
    return gate_db.record(store, model_hash=result.model_hash, checkpoint=checkpoint, stage=result.stage,
                          curriculum=result.curriculum, outcome=outcome, decided_by=by, reason=reason,
                          rules=[r.as_dict() for r in result.rules])


def _f(x) -> float | None:
    return None if x is None else float(x)
