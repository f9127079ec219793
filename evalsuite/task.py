"""What a task is: a versioned spec (YAML: name, version, kind, description, dataset, lengths, metrics, thresholds,
params) and the Python kind that runs it (a `TaskKind` subclass registered by name with `@register_kind`).
`evalsuite.registry` finds the specs; `evalsuite.kinds` holds the built-in kinds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

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


def parse_length(value: Any, where: str) -> int:
    """`8192`, `"8k"` (= 8192) or `"60k"` (= 61440) -> a number of tokens."""
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
    return n


_REQUIRED = {"name": str, "version": (str, int, float), "kind": str}
_OPTIONAL = {"description": str, "dataset": dict, "lengths": list, "metrics": list, "thresholds": dict,
             "params": dict}


def spec_from_dict(data: Any, source: str) -> TaskSpec:
    """Validate a parsed YAML mapping into a TaskSpec; every problem is a TaskSpecError naming `source`."""
    if not isinstance(data, dict):
        raise TaskSpecError(f"{source}: a task spec must be a YAML mapping with name, version, kind; got "
                            f"{type(data).__name__}")
    for key, typ in _REQUIRED.items():
        if key not in data:
            raise TaskSpecError(f"{source}: missing required field {key!r} (a task spec needs name, version, kind)")
        if not isinstance(data[key], typ):
            raise TaskSpecError(f"{source}: field {key!r} must be a {_type_names(typ)}, got {data[key]!r}")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise TaskSpecError(f"{source}: unknown field(s) {unknown}; expected {sorted({**_REQUIRED, **_OPTIONAL})}")
    for key, typ in _OPTIONAL.items():
        if key in data and data[key] is not None and not isinstance(data[key], typ):
            raise TaskSpecError(f"{source}: field {key!r} must be a {_type_names(typ)}, got {data[key]!r}")
    spec = TaskSpec(
        name=data["name"], version=str(data["version"]), kind=data["kind"],
        description=data.get("description") or "", dataset=data.get("dataset") or {},
        lengths=[parse_length(v, f"{source}: lengths") for v in data.get("lengths") or []],
        metrics=[str(m) for m in data.get("metrics") or []], thresholds=data.get("thresholds") or {},
        params=data.get("params") or {}, source=source)
    if spec.lengths != sorted(set(spec.lengths)):
        raise TaskSpecError(f"{source}: lengths must be strictly increasing, got {spec.lengths}")
    validate_spec(spec)
    return spec


def _type_names(typ) -> str:
    types = typ if isinstance(typ, tuple) else (typ,)
    return " or ".join({"str": "string", "dict": "mapping", "list": "list"}.get(t.__name__, t.__name__) for t in types)


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
    for metric, rule in spec.thresholds.items():
        if metric not in spec.metrics:
            raise TaskSpecError(f"{spec.source}: threshold on {metric!r}, which is not in metrics {spec.metrics}")
        if not (isinstance(rule, dict) and rule and set(rule) <= {"min", "max"}
                and all(isinstance(v, (int, float)) for v in rule.values())):
            raise TaskSpecError(f"{spec.source}: threshold for {metric!r} must be a mapping like "
                                f"{{max: 10}} or {{min: 0.5}}, got {rule!r}")
    kind.validate(spec)
