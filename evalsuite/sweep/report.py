"""What a study found: one row per counted trial, the mean objective per setting with a 95% t interval over its
seeds, and the best setting against the default paired by seed.

Each point (a grid point x seed, or a trial with its retries) is counted once, by its last try: a complete trial
if there is one, else the pruned or failed one. The t interval (mean +- t_{0.975, n-1} s / sqrt n, scipy) assumes
seed-to-seed variation is roughly normal; with 2-3 seeds it is wide, and with one seed there is none. The paired
comparison takes the seeds both settings completed, and tests the mean difference with the sign-flip permutation
test of evalsuite.metrics.paired (exact for these sizes); it cannot reach p < 0.05 with fewer than 6 paired seeds,
and then says so instead of a verdict. The t interval of the paired differences is reported beside it.

The trial rows are what `evalsuite sweep report --json` writes and `--from-json` reads back, so a study's table
can be regenerated from a committed file without its database.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics.paired import VERDICT_NAMES, decidable, inverted_ci, permutation_p_value, verdict
from .spec import SweepSpec

STATES = ("COMPLETE", "PRUNED", "FAIL")


def trial_rows(study, spec: SweepSpec) -> pd.DataFrame:
    """One row per counted point: number, state, value, seed, the searched fields, setting (their label), the
    evaluation run id, the last intermediate step and the wall time of this try in minutes; retried tries that
    were superseded are left out."""
    from .study import origin

    points: dict = {}
    for t in study.get_trials(deepcopy=False):
        if t.state.name not in STATES:
            continue
        key = t.system_attrs.get("grid_id") if spec.sampler == "grid" else origin(t)
        points.setdefault(key, []).append(t)
    rows = []
    for tries in points.values():
        t = min(tries, key=lambda t: (STATES.index(t.state.name), -t.number))  # complete first, else the last try
        params = {name: _decoded(spec, name, t.params.get(name)) for name in spec.space}
        took = t.datetime_complete - t.datetime_start if t.datetime_complete and t.datetime_start else None
        rows.append({"trial": t.number, "state": t.state.name.lower(), "value": t.value, "seed": t.params.get("seed"),
                     **params, "setting": setting_label(params), "eval_run_id": t.user_attrs.get("eval_run_id"),
                     "last_step": max(t.intermediate_values, default=None),
                     "minutes": None if took is None else round(took.total_seconds() / 60, 1)})
    return pd.DataFrame(rows).sort_values("trial", ignore_index=True) if rows else pd.DataFrame(
        columns=["trial", "state", "value", "seed", *spec.space, "setting", "eval_run_id", "last_step", "minutes"])


def _decoded(spec: SweepSpec, name: str, value):
    from .spec import decode

    return decode(spec.space[name], value)


def setting_label(params: dict) -> str:
    """`ttt_type=mlp, mini_batch_size=16` (model_overrides. left out)."""
    return ", ".join(f"{k.removeprefix('model_overrides.')}={_text(v)}" for k, v in params.items())


def _text(v) -> str:
    return json.dumps(v) if isinstance(v, (list, dict)) or v is None else (f"{v:g}" if isinstance(v, float) else str(v))


def t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval of the mean; NaN bounds with fewer than 2 values."""
    from scipy.stats import t

    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    half = float(t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def settings_table(rows: pd.DataFrame, spec: SweepSpec) -> pd.DataFrame:
    """Per setting over its complete trials: n seeds, mean, 95% t interval, and how many were pruned or failed;
    best first."""
    out = []
    for label, group in rows.groupby("setting", sort=False):
        done = group[group["state"] == "complete"]
        mean, low, high = t_interval(done["value"])
        out.append({"setting": label, "n": len(done), "mean": mean, "ci_low": low, "ci_high": high,
                    "seeds": " ".join(str(s) for s in sorted(done["seed"])),
                    "pruned": int((group["state"] == "pruned").sum()), "failed": int((group["state"] == "fail").sum()),
                    "default": label == default_label(spec)})
    table = pd.DataFrame(out, columns=["setting", "n", "mean", "ci_low", "ci_high", "seeds", "pruned", "failed",
                                       "default"])
    return table.sort_values("mean", ascending=spec.objective.direction == "minimize", na_position="last",
                             ignore_index=True)


def default_label(spec: SweepSpec) -> str | None:
    """The label of the spec's default setting (None when it does not name every searched field)."""
    if set(spec.default) != set(spec.space):
        return None
    return setting_label({name: spec.default[name] for name in spec.space})


@dataclass
class Comparison:
    best: str
    default: str
    n: int  # seeds both completed
    mean_diff: float  # best - default
    t_low: float
    t_high: float
    p_value: float  # sign-flip permutation test; NaN when it cannot decide
    ci_low: float  # the interval that inverts it
    ci_high: float
    decidable: bool
    verdict: str

    def sentence(self, metric: str) -> str:
        if self.best == self.default:
            return f"the default setting ({self.default}) has the best mean {metric}"
        plural = "s" if self.n != 1 else ""
        pairs = f"{self.n} paired seed{plural}"
        interval = (f"95% t interval [{self.t_low:.4g}, {self.t_high:.4g}]" if self.n > 1 else
                    "no interval from one pair")
        head = f"best ({self.best}) - default ({self.default}): {self.mean_diff:+.4g} {metric} over {pairs}; {interval}"
        if not self.decidable:
            return head + (f"; the sign-flip permutation test cannot decide with {self.n} pair{plural} (it needs 6 "
                           "for p < 0.05): more seeds are needed")
        return head + (f"; permutation test p = {self.p_value:.3g}, interval [{self.ci_low:.4g}, {self.ci_high:.4g}]:"
                       f" {self.verdict}")


def best_vs_default(rows: pd.DataFrame, spec: SweepSpec) -> Comparison | None:
    """The best setting against the default, paired by seed (None without a default or complete trials)."""
    table = settings_table(rows, spec)
    default = default_label(spec)
    table = table[table["n"] > 0]
    if default is None or table.empty or default not in set(table["setting"]):
        return None
    best = table["setting"].iloc[0]
    done = rows[rows["state"] == "complete"]
    a = done[done["setting"] == default].set_index("seed")["value"]
    b = done[done["setting"] == best].set_index("seed")["value"]
    seeds = sorted(set(a.index) & set(b.index))
    d = (b[seeds] - a[seeds]).to_numpy(float)
    mean, low, high = t_interval(d)
    can = decidable(d.size)
    p = permutation_p_value(d) if can else math.nan
    ci = inverted_ci(d) if can else (math.nan, math.nan)
    better = verdict(mean, p, higher_is_better=spec.objective.direction == "maximize")
    return Comparison(best, default, int(d.size), mean, low, high, p, ci[0], ci[1], can,
                      "best is " + VERDICT_NAMES[better] if can else "cannot decide")


def write_json(path: str | Path, spec: SweepSpec, rows: pd.DataFrame) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = json.loads(rows.to_json(orient="records"))
    path.write_text(json.dumps({"spec": spec.model_dump(mode="json"), "trials": records}, indent=1) + "\n")
    return path


def read_json(path: str | Path) -> tuple[SweepSpec, pd.DataFrame]:
    from ..errors import EvalsuiteError

    try:
        data = json.loads(Path(path).read_text())
        spec = SweepSpec.model_validate(data["spec"])
        rows = pd.DataFrame(data["trials"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EvalsuiteError(f"{path}: not a study summary written by `evalsuite sweep report --json` ({e})") from None
    return spec, rows


def plot(rows: pd.DataFrame, spec: SweepSpec, out: str | Path) -> Path:
    """The objective of each trial in order, and for each searched field the objective against its value: every
    seed a dot, each setting's mean with its 95% t interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    metric = f"{spec.objective.metric}" + (f" @ {spec.objective.bin}" if spec.objective.bin else "")
    rows = rows.assign(value=pd.to_numeric(rows["value"], errors="coerce"))  # a failed trial's value is None
    fields = list(spec.space)
    fig, axes = plt.subplots(1, 1 + len(fields), figsize=(4.2 * (1 + len(fields)), 3.8), squeeze=False)
    ax = axes[0][0]
    marks = {"complete": ("o", "#0072B2", "complete"), "pruned": ("x", "#E69F00", "pruned (its last report)"),
             "fail": ("s", "#D55E00", "failed")}
    for state, (marker, colour, label) in marks.items():
        part = rows[rows["state"] == state]
        if len(part):
            ax.scatter(part["trial"], part["value"], marker=marker, color=colour, label=label)
    ax.set(title=f"{spec.study}: each trial", xlabel="trial", ylabel=metric)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    done = rows[rows["state"] == "complete"]
    for ax, name in zip(axes[0][1:], fields):
        values = list(dict.fromkeys(_text(v) for v in (spec.space[name].grid or sorted(done[name].dropna()))))
        xs = {v: i for i, v in enumerate(values)}
        labels = done[name].map(_text)
        if spec.space[name].grid is not None:  # categorical: seeds as dots, the mean and its t interval per value
            positions = labels.map(xs).astype(float)  # float even with no complete trial (an empty str column)
            ax.scatter(positions - 0.08, done["value"], color="#999999", s=14, label="one seed")
            for v, i in xs.items():
                mean, low, high = t_interval(done[labels == v]["value"])
                if not math.isnan(mean):
                    err = [[mean - low], [high - mean]] if not math.isnan(low) else None
                    ax.errorbar([i + 0.08], [mean], yerr=err, fmt="o", color="#0072B2", capsize=4,
                                label="mean, 95% t interval" if i == 0 else None)
            ax.legend(fontsize=8)
            ax.set_xticks(range(len(values)), values)
            ax.set_xlim(-0.5, len(values) - 0.5)
        else:
            ax.scatter(done[name], done["value"], color="#0072B2", s=14)
            ax.set_xscale("log" if spec.space[name].log_uniform else "linear")
        ax.set(title=name.removeprefix("model_overrides."), xlabel=name.removeprefix("model_overrides."),
               ylabel=metric)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
