"""Kind `lm_eval`: run an lm-eval task (`--task lm_eval:NAME`) through the `ttt-omni` lm-eval model and store its
results like ours. Built-in lm-eval tasks download their data, so offline use means local task YAMLs (for instance
`dataset_path: json`) given with `--include-path`. The whole lm-eval task is one unit of work."""
from __future__ import annotations

import difflib
import json
import math

import pandas as pd

from ..errors import UnknownTaskError
from ..metrics.preference import Z_95, wilson_interval
from ..task import LM_EVAL_PREFIX, TaskKind, TaskSpec, Unit, register_kind


def lm_eval_spec(name: str, include_paths: list[str]) -> TaskSpec:
    import lm_eval

    return TaskSpec(name=f"{LM_EVAL_PREFIX}{name}", version=f"lm-eval-{lm_eval.__version__}", kind="lm_eval",
                    description=f"lm-eval task {name}", params={"task": name, "include_path": list(include_paths)},
                    source="lm-eval")


@register_kind("lm_eval")
class LmEvalTask(TaskKind):
    any_metric = True

    def units(self) -> list[Unit]:
        return [Unit(self.spec.params["task"])]

    def run_unit(self, unit: Unit) -> list[dict]:
        from lm_eval import simple_evaluate
        from lm_eval.tasks import TaskManager

        from ..lm_eval_adapter import TTTOmniLM

        manager = TaskManager(include_path=self.spec.params["include_path"] or None)
        known = manager.all_tasks
        if unit.key not in known:
            close = difflib.get_close_matches(unit.key, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownTaskError(f"lm-eval has no task {unit.key!r}{hint} (local task YAMLs come from an include path)")
        lm = TTTOmniLM(loaded=self.model, chunk_size=self.spec.params.get("chunk_size", 2048))
        res = simple_evaluate(model=lm, tasks=[unit.key], task_manager=manager, limit=self.limit,
                              random_seed=self.seed, numpy_random_seed=self.seed, torch_random_seed=self.seed,
                              fewshot_random_seed=self.seed, log_samples=False, bootstrap_iters=1000)
        rows = []
        for task, metrics in res["results"].items():
            n = res.get("n-samples", {}).get(task, {}).get("effective")
            for key, value in metrics.items():
                metric, _, filt = key.partition(",")
                if metric.endswith("_stderr") or not filt or not isinstance(value, (int, float)):
                    continue
                stderr = metrics.get(f"{metric}_stderr,{filt}")
                bin_ = f"task={task}" + (f",filter={filt}" if filt != "none" else "")
                rows.append(dict(name=metric, bin=bin_, value=float(value), n=n,
                                 data={"stderr": stderr if isinstance(stderr, (int, float)) else None}))
        return rows

    def aggregate(self, samples: pd.DataFrame) -> list[dict]:
        rows = []
        for s in samples.itertuples():
            stderr = json.loads(s.data)["stderr"] if s.data else None
            n = None if pd.isna(s.n) else int(s.n)
            low, high = _interval(s.value, stderr, n)
            rows.append(dict(name=s.name, bin=s.bin, value=s.value, n=n, ci_low=low, ci_high=high))
        return rows


def _interval(value: float, stderr: float | None, n: int | None) -> tuple[float | None, float | None]:
    """95% interval: Wilson for a proportion of n 0/1 scores (accuracy, exact match: it stays inside [0, 1]), else
    value +- 1.96 stderr. lm-eval reports a proportion's stderr as sqrt(p(1-p)/(n-1)), which identifies one."""
    if stderr is None or not math.isfinite(stderr):
        return None, None
    if n and n > 1 and 0 <= value <= 1 and math.isclose(stderr ** 2, value * (1 - value) / (n - 1), rel_tol=1e-3,
                                                        abs_tol=1e-12):
        return wilson_interval(value * n, n)
    return value - Z_95 * stderr, value + Z_95 * stderr
