"""The curriculum promotion gate: a stage's rules, each evaluated from the results store, and decision records.

A stage of the curriculum YAML (ttt_omni.train.config) carries its rules:

    gate:
      rules:
        - name: ppl degradation at the stage length vs 1k   # optional label
          task: ppl_vs_length          # metric rows of this task...
          metric: degradation_pct      # ...with this name...
          bin: "length={context}"      # ...and bin (glob; {context} = the stage's context, {model_id} = the name
                                       #   the row's run gave the checkpoint); default ""
          op: "<"                      # < <= > >= ==
          threshold: 20
          use: value                   # or ci_low / ci_high: hold a CI bound to the threshold
          optional: false              # true: missing evidence does not block (e.g. human preference)
          # what evidence counts (a run that does not qualify is shown, never used):
          task_version: "1.0"          # default: the version of the task registered now; "any": any version
          data: task                   # task (default): the task's own dataset, complete | books:eval | books:train
                                       #   | a corpus path | sha256:HASH (a run's data_hash) | any
          min_n: 5                     # the metric row stands on at least this many documents / prompts / votes
          lengths: [1k, "{context}"]   # the run measured these lengths, starting at the first (the degradation
                                       #   reference)

Evidence is the latest finished run of the task for the checkpoint (by content hash; a `human_pref` run carries the
hash of the checkpoint its candidate's outputs came from, evalsuite.humaneval.results) that qualifies. A run's data identity is the hash of the documents it read
(evalsuite.corpus.corpus_hash, recorded by the runner): a run on another corpus, on part of the dataset (--limit) or
on changed files never counts as the task's dataset. The training monitor and human preference accept any data by
default (the monitor is bound to the saved weights by evalsuite.train_monitor, a preference to its rated run).
When several rows match the bin, every one must pass and the worst is shown. A rule without qualifying evidence is
"not evaluated", never a pass: the gate's outcome is `pass` only when every required rule passes, `fail` when any
evaluated rule fails, else `incomplete`.
"""
from __future__ import annotations

import fnmatch
import json
import math
import operator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ttt_omni.schema import Number, PositiveInt, Schema, validate
from ttt_omni.train.config import TrainConfig

from . import gate_db
from .corpus import bundled_books, corpus_hash, user_corpus
from .environment import describe, differences
from .errors import EvalsuiteError, TaskSpecError
from .registry import Registry
from .store import Store
from .task import parse_length
from .train_monitor import TASK as MONITOR_TASK

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}
HUMAN_PREF = "human_pref"
ANY_DATA_TASKS = (MONITOR_TASK, HUMAN_PREF)  # their evidence is bound otherwise (saved weights, rated run)


class GateError(EvalsuiteError, ValueError):
    """A curriculum file, stage or rule that cannot be used."""


class RuleSchema(Schema):
    name: str | None = None
    task: str
    metric: str
    bin: str = ""
    op: Literal["<", "<=", ">", ">=", "=="]
    threshold: Number
    use: Literal["value", "ci_low", "ci_high"] = "value"
    optional: bool = False
    task_version: str | int | float | None = None
    data: str = "task"
    min_n: PositiveInt = 1
    lengths: list[int | str] | None = None


class GateSchema(Schema):
    rules: list[dict]


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
    task_version: str | None = None  # None: the registered version; "any": any
    data: str = "task"
    min_n: int = 1
    lengths: tuple = ()  # as written: ints, "8k" or "{context}"


@dataclass(frozen=True)
class Accepts:
    """What a rule accepts as evidence, resolved for one stage (None: anything)."""

    task_version: str | None
    data: str  # as shown: "books:eval (sha256 1a2b...)", "any", ...
    data_hash: str | None
    min_n: int
    lengths: tuple[int, ...]
    data_problem: str = ""  # set when the data cannot be known here: every run is refused with this reason

    def refusal(self, run: dict, rows) -> str | None:
        """Why the run (with its matching metric rows) is not evidence for the rule, or None."""
        if self.task_version is not None and run["task_version"] != self.task_version:
            return f"task version {run['task_version']}, expected {self.task_version}"
        if self.data_problem:
            return self.data_problem
        if self.data_hash is not None and run.get("data_hash") != self.data_hash:
            return f"data {data_label(run)}, expected {self.data}"
        if self.lengths:
            have = [int(x) for x in (run["config"] or {}).get("lengths") or []]
            if not have or have[0] != self.lengths[0] or not set(self.lengths) <= set(have):
                return f"lengths {have or 'not recorded'}, expected {list(self.lengths)} (starting at the first)"
        if self.min_n > 1:
            ns = [None if n is None or n != n else int(n) for n in rows["n"]]
            low = min((n for n in ns if n is not None), default=None)
            if None in ns or low < self.min_n:
                return f"n={'unknown' if None in ns else low}, expected at least {self.min_n}"
        return None

    def as_dict(self) -> dict:
        return {"task_version": self.task_version or "any", "data": self.data, "min_n": self.min_n,
                "lengths": list(self.lengths)}


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
    accepts: dict = field(default_factory=dict)  # Accepts.as_dict()
    evidence: dict = field(default_factory=dict)  # the run used: version, data, documents, lengths

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
    """Rules from a stage's `gate:` mapping; errors name the file, stage, rule and field."""
    if gate is None:
        return []
    rules = []
    for i, r in enumerate(validate(GateSchema, gate, f"{where}, gate", GateError).rules, 1):
        at = f"{where}, rule {i}"
        rule = validate(RuleSchema, r, at, GateError)
        for length in rule.lengths or []:
            if length != "{context}":
                try:
                    parse_length(length, f"{at}: lengths")
                except TaskSpecError as e:
                    raise GateError(str(e)) from None
        name = rule.name or f"{rule.task}.{rule.metric} {rule.op} {rule.threshold:g}"
        version = None if rule.task_version is None else str(rule.task_version)
        rules.append(Rule(name, rule.task, rule.metric, rule.bin, rule.op, float(rule.threshold), rule.use,
                          rule.optional, version, rule.data, rule.min_n, tuple(rule.lengths or ())))
    return rules


def stage_rules(curriculum: str | Path, stage: int) -> tuple[list[Rule], int]:
    """(rules, context) of `stage` in a curriculum YAML."""
    try:
        cfg = TrainConfig.from_yaml(curriculum, stage=stage)
    except (ValueError, FileNotFoundError) as e:
        raise GateError(f"curriculum: {e}") from None
    return parse_rules(cfg.gate(), f"{curriculum}, stage {stage}"), cfg.context


# --- what counts as evidence -----------------------------------------------------------------------------------


def resolve(rule: Rule, context: int, registry: Registry) -> Accepts:
    """The rule's evidence requirements for a stage: versions and datasets looked up, corpora hashed."""
    lengths = tuple(context if x == "{context}" else parse_length(x, rule.name) for x in rule.lengths)
    version, data, problem = rule.task_version, rule.data, ""
    spec = registry.specs.get(rule.task)
    if version is None and spec is not None:
        version = spec.version
    if version == "any":
        version = None
    if data == "task":
        if rule.task in ANY_DATA_TASKS:
            data = "any"
        elif spec is None:
            problem = (f"task {rule.task} is not registered here, so its dataset is unknown; say in the rule which "
                       "data counts (data: books:eval | PATH | sha256:HASH | any)")
        elif spec.dataset.get("path"):
            data = str(spec.dataset["path"])
        elif spec.kind == "lm_eval" or spec.dataset.get("source", "books") != "books":
            data = "any"
        else:
            data = f"books:{spec.dataset.get('split', 'eval')}"
    if problem:
        return Accepts(version, "unknown", None, rule.min_n, lengths, problem)
    if data == "any":
        return Accepts(version, "any", None, rule.min_n, lengths)
    where = f"rule {rule.name!r}: data {data!r}"
    try:
        if data.startswith("sha256:"):
            digest = data.removeprefix("sha256:").strip()
            label = f"data hash {digest}"
        elif data.startswith("books:"):
            digest = corpus_hash(bundled_books(data.removeprefix("books:")))
            label = f"{data} (hash {digest})"
        else:
            digest = corpus_hash(user_corpus(data))
            label = f"corpus {data} (hash {digest})"
    except EvalsuiteError as e:
        raise GateError(f"{where}: {e}") from None
    return Accepts(version, label, digest, rule.min_n, lengths)


def data_label(run: dict) -> str:
    data = run.get("data") or {}
    if not run.get("data_hash"):
        return "not recorded" if not data else f"{data.get('source') or 'no documents'}"
    docs = data.get("documents")
    return (f"{data.get('source') or 'documents'} ({docs} document{'s' if docs != 1 else ''}, hash "
            f"{run['data_hash']})")


# --- evidence ------------------------------------------------------------------------------------------------


def evaluate_rule(store: Store, rule: Rule, model_hash: str, *, context: int, model_id: str = "",
                  accepts: Accepts | None = None) -> RuleResult:
    accepts = accepts or resolve(rule, context, Registry())
    pattern = rule.bin.format(context=context, model_id=model_id)
    df = store.metrics(task=rule.task, model_hash=model_hash, name=rule.metric, finished_only=True)
    if not df.empty:  # {model_id}: the name the row's own run gave the checkpoint (a rated system's name, say)
        runs = store.runs(model_hash=model_hash)
        names = dict(zip(runs["id"].astype(int), runs["model_id"].astype(str)))
        df = df[[fnmatch.fnmatchcase(b, rule.bin.format(context=context, model_id=names.get(int(r), model_id)))
                 for b, r in zip(df["bin"], df["run_id"])]]
    shown = accepts.as_dict()
    if df.empty:
        return RuleResult(rule, "not evaluated", detail=f"no finished {rule.task} run with {rule.metric} "
                                                        f"bin {pattern or '(none)'} for this checkpoint", accepts=shown)
    refused, run = [], None
    for run_id in sorted(set(df["run_id"]), reverse=True):  # the latest qualifying run is the evidence
        candidate = store.run(int(run_id))
        why = accepts.refusal(candidate, df[df["run_id"] == run_id])
        if why is None:
            run = candidate
            break
        refused.append(f"run {run_id}: {why}")
    if run is None:
        more = f" (and {len(refused) - 1} older run(s) refused)" if len(refused) > 1 else ""
        return RuleResult(rule, "not evaluated", detail=f"no run qualifies as evidence: {refused[0]}{more}",
                          accepts=shown)
    df = df[df["run_id"] == run["id"]]
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
    if refused:
        detail = "; ".join(filter(None, [detail, f"newer run(s) not qualifying: {', '.join(refused)}"]))
    evidence = {"run_id": int(run["id"]), "task_version": run["task_version"], "data": data_label(run),
                "data_hash": run.get("data_hash"), "lengths": (run["config"] or {}).get("lengths"),
                "units": run["n_units"]}
    return RuleResult(rule, "pass" if ok else "fail", _f(worst.value), _f(worst.ci_low), _f(worst.ci_high),
                      None if worst.n is None or worst.n != worst.n else int(worst.n), worst.bin, int(worst.run_id),
                      detail, shown, evidence)


def evaluate(store: Store, model_hash: str, curriculum: str | Path, stage: int) -> GateResult:
    rules, context = stage_rules(curriculum, stage)
    runs = store.runs(model_hash=model_hash)
    model_id = str(runs["model_id"].iloc[-1]) if not runs.empty else ""
    registry = Registry()
    results = [evaluate_rule(store, r, model_hash, context=context, model_id=model_id,
                             accepts=resolve(r, context, registry)) for r in rules]
    evidence = sorted({r.run_id for r in results if r.run_id is not None})
    measured = (store.run(i) for i in evidence)  # the training monitor is not a measurement of this environment
    diffs = differences({f"run {r['id']}": r["environment"] for r in measured if r["task"] != MONITOR_TASK})
    notes = [f"the evidence was measured in different environments: {describe(diffs)}"] if diffs else []
    return GateResult(model_hash, stage, str(curriculum), results, notes)


def decide(store: Store, result: GateResult, checkpoint: str, *, outcome: str | None = None, by: str = "gate",
           reason: str = "", verified: bool = False) -> int:
    """Record a decision with the evidence: the gate's own outcome, or a person's (approved / rejected / forced).
    `verified`: the caller read every byte of `checkpoint` and its hash is result.model_hash (recorded as such)."""
    outcome = outcome or result.outcome
    if outcome == result.outcome and not reason:
        failing = [f"{r.rule.name}: {r.status}" for r in result.rules if r.status != "pass"]
        reason = "; ".join(failing + result.notes) or "all rules pass"
    return gate_db.record(store, model_hash=result.model_hash, checkpoint=checkpoint, stage=result.stage,
                          curriculum=result.curriculum, outcome=outcome, decided_by=by, reason=reason,
                          rules=[r.as_dict() for r in result.rules], verified=verified)


def _f(x) -> float | None:
    return None if x is None else float(x)
