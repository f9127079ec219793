"""Retrieval heatmaps as a PNG: depth x context length, one panel per run side by side, the accuracy and n written in
every cell (the dashboard's page as a file, for reports and docs)."""
from __future__ import annotations

from pathlib import Path

from ..errors import EvalsuiteError
from ..metrics.retrieval import parse_cell


def latest_runs(store, task: str) -> list[int]:
    """The latest finished run of `task` per model (content hash), ordered by model id."""
    runs = store.runs(task=task, status="finished")
    if runs.empty:
        raise EvalsuiteError(f"no finished run of task {task!r} in the results store")
    latest = runs.sort_values("id").groupby("model_hash").tail(1).sort_values(["model_id", "id"])
    return [int(i) for i in latest["id"]]


def plot_heatmaps(store, run_ids: list[int], metric: str, out: str | Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize, TwoSlopeNorm

    panels = []
    for run_id in run_ids:
        run = store.run(run_id)
        rows = store.metrics(run_id=run_id, name=metric)
        rows = rows[rows["bin"].str.contains(",depth=", regex=False)]
        if rows.empty:
            raise EvalsuiteError(f"run {run_id} ({run['task']}, {run['model_id']}) has no {metric!r} rows per "
                                 "(length, depth) cell; expected a run of a retrieval task (passkey, niah, ...)")
        cells = {parse_cell(b): (v, int(n)) for b, v, n in zip(rows["bin"], rows["value"], rows["n"])}
        chance = store.metrics(run_id=run_id, name="chance")
        panels.append((run, cells, float(chance["value"].iloc[0]) if not chance.empty else None))
    lengths = sorted({L for _, cells, _ in panels for L, _ in cells})  # one grid for all panels (blank: no sample)
    depths = sorted({d for _, cells, _ in panels for _, d in cells})
    fig, axes = plt.subplots(1, len(panels), squeeze=False, sharey=True,
                             figsize=(1.2 + len(panels) * (0.75 * len(lengths) + 0.6), 1.6 + 0.38 * len(depths)))
    for ax, (run, cells, chance) in zip(axes[0], panels):
        grid = [[cells.get((L, d), (float("nan"), 0))[0] for L in lengths] for d in depths]
        norm = TwoSlopeNorm(vmin=0, vcenter=chance, vmax=1) if chance and 0 < chance < 1 else Normalize(0, 1)
        image = ax.imshow(grid, cmap="RdYlGn", norm=norm, aspect="auto")  # yellow = chance (rank)
        for i, d in enumerate(depths):
            for j, L in enumerate(lengths):
                if (L, d) in cells:
                    value, n = cells[(L, d)]
                    ax.text(j, i, f"{value:.2f}\nn={n}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(lengths)), [_k(L) for L in lengths])
        ax.set_yticks(range(len(depths)), [f"{d}%" for d in depths])
        ax.set_xlabel("context length (tokens)")
        ax.set_title(f"{run['model_id']} (run {run['id']})" + (f"\nchance {chance:.2f}" if chance else ""),
                     fontsize=9)
    axes[0][0].set_ylabel("needle depth")
    fig.colorbar(image, ax=axes[0].tolist(), label=metric, fraction=0.03)
    fig.suptitle(f"{', '.join(sorted({p[0]['task'] for p in panels}))}: {metric}", fontsize=10, y=1.04)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def _k(length: int) -> str:
    return f"{length // 1024}k" if length % 1024 == 0 else str(length)
