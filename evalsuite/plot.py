"""`evalsuite plot`: one metric of several runs over their numeric bins (e.g. ppl by context length), one line per
run with its 95% CI band, as a PNG."""
from __future__ import annotations

import re
from pathlib import Path

from .errors import EvalsuiteError

_NUMBER = re.compile(r"^[A-Za-z_]+=(\d+(?:\.\d+)?)$")


def bin_value(bin_label: str) -> float | None:
    """The number of a bin label such as "length=4096" (None for other labels)."""
    m = _NUMBER.match(bin_label or "")
    return float(m.group(1)) if m else None


def length_label(x: float) -> str:
    """1024 -> "1k", 61440 -> "60k" (as --lengths and the tasks write them); other numbers as they are."""
    return f"{int(x) // 1024}k" if x >= 1024 and float(x).is_integer() and int(x) % 1024 == 0 else f"{x:g}"


def plot_runs(store, run_ids: list[int], metric: str, out: str | Path, *, log_x: bool = True) -> Path:
    import matplotlib.pyplot as plt

    fig = figure(store, run_ids, metric, log_x=log_x)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def figure(store, run_ids: list[int], metric: str, *, log_x: bool = True):
    """The matplotlib figure `plot_runs` saves."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    tasks = set()
    for run_id in run_ids:
        run = store.run(run_id)
        rows = store.metrics(run_id=run_id, name=metric)
        rows = rows.assign(x=rows["bin"].map(bin_value)).dropna(subset=["x", "value"]).sort_values("x")
        if rows.empty:
            raise EvalsuiteError(f"run {run_id} ({run['task']}, {run['model_id']}) has no {metric!r} rows over "
                                 f"numeric bins; its metrics: {sorted(store.metrics(run_id=run_id)['name'].unique())}")
        tasks.add(run["task"])
        line, = ax.plot(rows["x"], rows["value"], marker="o", label=f"{run['model_id']} (run {run_id})")
        if rows["ci_low"].notna().all():
            ax.fill_between(rows["x"], rows["ci_low"], rows["ci_high"], color=line.get_color(), alpha=0.2)
    if log_x:
        ax.set_xscale("log", base=2)
    ticks = sorted({x for line in ax.get_lines() for x in line.get_xdata()})
    ax.set_xticks(ticks, [length_label(x) for x in ticks])
    ax.minorticks_off()
    ax.set_xlabel(rows["bin"].iloc[0].split("=")[0])
    ax.set_ylabel(metric)
    ax.set_title(f"{', '.join(sorted(tasks))}: {metric} (95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
