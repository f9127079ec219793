"""What a task is: a versioned spec (YAML: name, version, kind, description, dataset, lengths, metrics, thresholds,
params) and the Python kind that runs it (a `TaskKind` subclass registered by name with `@register_kind`).
`evalsuite.registry` finds the specs; `evalsuite.kinds` holds the built-in kinds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import create_model

from ttt_omni.schema import Number, PositiveInt, PositiveNumber, Schema, validate

from .corpus import Document, corpus_hash
from .errors import TaskSpecError

if TYPE_CHECKING:
    import pandas as pd

    from .models import LoadedModel
    from .registry import Registry

LM_EVAL_PREFIX = "lm_eval:"

KINDS: dict[str, type[TaskKind]] = {}


@dataclass(frozen=True)
class Unit:
    """One resumable piece of work of a run (e.g. one document); `key` is unique within the run."""

    key: str
    payload: Any = None


@dataclass
class TaskSpec:
    name: str
    version: str
    kind: str
    description: str = ""
    dataset: dict = field(default_factory=dict)
    lengths: list[int] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    thresholds: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    source: str = ""  # where the spec came from (a file path, or "lm-eval")


class TaskKind:
    """How a kind of task runs. Subclasses declare `metrics` and implement `units`, `run_unit`, `aggregate`.

    The runner calls `units()` once, `run_unit(unit)` for each unit not yet done (its sample rows are stored with
    the unit, atomically), and `aggregate(samples)` once all units are done, to get the metric rows.
    """

    metrics: ClassVar[frozenset[str]] = frozenset()
    any_metric: ClassVar[bool] = False  # True when the metric names are only known at run time (lm-eval)

    def __init__(self, spec: TaskSpec, model: LoadedModel, *, seed: int = 0, limit: int | None = None,
                 corpus: str | None = None, device: str = "cpu", registry: Registry | None = None):
        self.spec, self.model, self.seed, self.limit, self.corpus, self.device = spec, model, seed, limit, corpus, device
        self.registry = registry  # the task specs visible to this run (kinds that run other tasks look them up)

    @classmethod
    def validate(cls, spec: TaskSpec) -> None:
        """Raise TaskSpecError for a spec this kind cannot run (called when the spec is loaded)."""

    def config(self) -> dict:
        """Everything besides task, model and seed that changes the results; part of the run's identity."""
        return {"dataset": self.spec.dataset, "lengths": self.spec.lengths, "params": self.spec.params,
                "limit": self.limit, "corpus": self.corpus, "device": self.device}

    def data_identity(self, units: list[Unit]) -> dict:
        """What the run reads (recorded with it, so that a gate rule can say which evidence counts): "source"
        (`books:SPLIT` or `corpus:PATH`), "documents" (how many the units read) and "hash" (evalsuite.corpus.
        corpus_hash of those documents; None when the units read no documents). Found from the units' payloads: a
        Document, or a tuple holding Documents."""
        docs: dict[str, Document] = {}
        for unit in units:
            for part in unit.payload if isinstance(unit.payload, tuple) else (unit.payload,):
                if isinstance(part, Document):
                    docs[part.key] = part
        path = self.corpus or self.spec.dataset.get("path")
        if path:
            source = f"corpus:{Path(path).expanduser().resolve()}"
        elif docs and self.spec.dataset.get("source", "books") == "books":
            source = f"books:{self.spec.dataset.get('split', 'eval')}"
        else:
            source = None
        return {"source": source, "documents": len(docs), "hash": corpus_hash(list(docs.values())) if docs else None}

    def subject(self) -> tuple[str, str] | None:
        """(id, hash) of what this run measures when that is not the model: a run that never uses the model (e.g.
        espeak-ng reading corpus passages, the reference of asr_wer) is stored under that system instead."""
        return None

    def notes(self) -> list[str]:
        """Things the person reading the results should know (e.g. the compared sides differ in dtype)."""
        return []

    def units(self) -> list[Unit]:
        raise NotImplementedError

    def run_unit(self, unit: Unit) -> list[dict]:
        """Sample rows (keys: name, bin, value, n, data) for one unit."""
        raise NotImplementedError

    def aggregate(self, samples: pd.DataFrame) -> list[dict]:
        """Metric rows (keys: name, bin, value, ci_low, ci_high, n) from all sample rows of the run."""
        raise NotImplementedError


def register_kind(name: str):
    """Class decorator: make a `TaskKind` subclass available to task specs as `kind: NAME`."""

    def deco(cls: type[TaskKind]) -> type[TaskKind]:
        if not (isinstance(cls, type) and issubclass(cls, TaskKind)):
            raise TypeError(f"@register_kind({name!r}) expects a TaskKind subclass, got {cls!r}")
        known = KINDS.get(name)
        if known is not None and known is not cls:
            raise TaskSpecError(f"kind {name!r} is registered twice: by {known.__module__}.{known.__qualname__} "
                                f"and by {cls.__module__}.{cls.__qualname__}; rename one of them")
        KINDS[name] = cls
        cls.kind_name = name
        return cls

    return deco


MAX_LENGTH = 1 << 27  # 128Mi tokens: far beyond any context this project evaluates; larger is a typo


def parse_length(value: Any, where: str) -> int:
    """`8192`, `"8k"` (= 8192) or `"60k"` (= 61440) -> a number of tokens, 1..MAX_LENGTH."""
    if isinstance(value, bool):
        raise TaskSpecError(f"{where}: length {value!r} is not a number of tokens (e.g. 8192 or '8k')")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and value.strip().lower().rstrip("k").isdigit():
        s = value.strip().lower()
        n = int(s[:-1]) * 1024 if s.endswith("k") else int(s)
    else:
        raise TaskSpecError(f"{where}: length {value!r} is not a number of tokens (e.g. 8192 or '8k')")
    if n < 1:
        raise TaskSpecError(f"{where}: length {value!r} must be at least 1 token")
    if n > MAX_LENGTH:
        raise TaskSpecError(f"{where}: length {value!r} is {n} tokens; expected at most {MAX_LENGTH} "
                            f"({MAX_LENGTH // 1024}k)")
    return n


class Threshold(Schema):
    min: Number | None = None
    max: Number | None = None


class SpecSchema(Schema):
    """A task YAML. `dataset` and `params` are the kind's to check (TaskKind.validate, e.g. with `check_section`)."""

    name: str
    version: str | int | float
    kind: str
    description: str | None = None
    dataset: dict[str, Any] | None = None
    lengths: list[int | str] | None = None
    metrics: list[str] | None = None
    thresholds: dict[str, Threshold] | None = None
    params: dict[str, Any] | None = None


class CorpusDataset(Schema):
    """`dataset:` of the kinds that read documents: the bundled books of a split, or a corpus at `path`."""

    source: str = "books"
    split: Literal["train", "eval"] = "eval"
    path: str | None = None


def params_schema(defaults: dict, choices: dict[str, tuple] | None = None) -> type[Schema]:
    """A `params:` schema from the defaults: a bool stays a bool, an int is a positive integer, a float a positive
    number, a string a string or one of `choices[key]`."""
    fields = {}
    for key, default in defaults.items():
        if choices and key in choices:
            typ = Literal[tuple(choices[key])]
        elif isinstance(default, bool):
            typ = bool
        elif isinstance(default, int):
            typ = PositiveInt
        elif isinstance(default, float):
            typ = PositiveNumber
        else:
            typ = type(default)
        fields[key] = (typ, default)
    return create_model("Params", __base__=Schema, **fields)


def check_section(spec: TaskSpec, section: str, schema: type[Schema]) -> Schema:
    """The spec's `dataset` or `params` mapping checked against a kind's schema (types, ranges, unknown keys),
    with the uniform message: `SOURCE: SECTION.FIELD: expected ..., got VALUE`."""
    return validate(schema, getattr(spec, section), spec.source, TaskSpecError, section)


def spec_from_dict(data: Any, source: str) -> TaskSpec:
    """Validate a parsed YAML mapping into a TaskSpec; every problem is a TaskSpecError naming `source`."""
    if not isinstance(data, dict):
        raise TaskSpecError(f"{source}: a task spec must be a YAML mapping with name, version, kind; got "
                            f"{type(data).__name__}")
    checked = validate(SpecSchema, data, source, TaskSpecError)
    if not checked.name.strip():
        raise TaskSpecError(f"{source}: name: expected a non-empty task name")
    thresholds = {m: {k: v for k, v in t.model_dump().items() if v is not None}
                  for m, t in (checked.thresholds or {}).items()}
    for metric, rule in thresholds.items():
        if not rule:
            raise TaskSpecError(f"{source}: thresholds.{metric}: expected a mapping like {{max: 10}} or {{min: 0.5}}")
    spec = TaskSpec(
        name=checked.name, version=str(checked.version), kind=checked.kind, description=checked.description or "",
        dataset=checked.dataset or {}, lengths=[parse_length(v, f"{source}: lengths") for v in checked.lengths or []],
        metrics=list(checked.metrics or []), thresholds=thresholds, params=checked.params or {}, source=source)
    if spec.lengths != sorted(set(spec.lengths)):
        raise TaskSpecError(f"{source}: lengths must be strictly increasing, got {spec.lengths}")
    validate_spec(spec)
    return spec


def validate_spec(spec: TaskSpec) -> None:
    """Kind registered, metrics known to the kind, thresholds on declared metrics, plus the kind's own checks."""
    kind = KINDS.get(spec.kind)
    if kind is None:
        raise TaskSpecError(f"{spec.source}: unknown kind {spec.kind!r}; registered kinds: {sorted(KINDS)}")
    if not kind.any_metric:
        bad = [m for m in spec.metrics if m not in kind.metrics]
        if bad:
            raise TaskSpecError(f"{spec.source}: unknown metric(s) {bad} for kind {spec.kind!r}; "
                                f"expected some of {sorted(kind.metrics)}")
    for metric in spec.thresholds:
        if metric not in spec.metrics:
            raise TaskSpecError(f"{spec.source}: threshold on {metric!r}, which is not in metrics {spec.metrics}")
    kind.validate(spec)
