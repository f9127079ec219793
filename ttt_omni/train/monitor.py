"""Watches the TTT inner models during training: weight statistics, inner loss before/after, eta; CSV, PNG, alarms.

Every `every` steps, for each TTT layer, the monitor records mean/std/max-abs of the fast weights at the end of
the step's window (W1, b1[, W2, b2]), the inner reconstruction loss of the window's tokens under the window's
start and end weights (after < before means the inner model is learning), the learning-rate gate eta, and the
last position's token scale (the step size of the update carried to the next mini-batch).
NaN/Inf anywhere, or a max-abs above `max_abs`, raises MonitorAlarm; the trainer then saves the last good
checkpoint and stops.
"""
from __future__ import annotations

import csv
import math
from contextlib import contextmanager
from pathlib import Path

import torch

from ttt_omni.layers import TTTBase
from ttt_omni.layers.ttt import restart


class MonitorAlarm(RuntimeError):
    pass


class TTTMonitor:
    def __init__(self, model: torch.nn.Module, csv_path: str | Path, every: int = 10, max_abs: float = 10.0):
        self.layers = {name: m for name, m in model.named_modules() if isinstance(m, TTTBase)}
        self.csv_path, self.every, self.max_abs = Path(csv_path), every, max_abs
        self._rows: list[dict] = []
        self._hooks = []

    def wants(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    @contextmanager
    def capture(self, step: int):
        """Records each TTT layer's statistics during one forward. They are computed inside the layer's forward
        hook, while its parameters are materialised (under FSDP they are sharded outside it)."""
        self._rows = []
        self._hooks = [layer.register_forward_hook(self._hook(name, step), with_kwargs=True)
                       for name, layer in self.layers.items()]
        try:
            yield
        finally:
            for h in self._hooks:
                h.remove()
            self._hooks = []

    def _hook(self, name: str, step: int):
        def hook(layer, args, kwargs, output):
            hidden = args[0] if args else kwargs["hidden_states"]
            state_in = args[1] if len(args) > 1 else kwargs.get("state")
            fresh = layer.init_state(hidden.shape[0])
            rows = kwargs.get("restart_rows")
            if state_in is None:
                state_in = fresh
            elif rows is not None:  # the layer started these rows' conversations afresh: so does "before"
                state_in = restart(state_in, fresh, rows, layer.mini_batch_size)
            self._rows.append(self._stats(step, name, layer, hidden.detach(), state_in, output[1]))
        return hook

    @torch.no_grad()
    def _stats(self, step: int, name: str, layer: TTTBase, hidden, state_in, state_out) -> dict:
        row = {"step": step, "layer": name}
        for field, t in state_out.detach().tensors().items():
            if field.startswith("grad_"):
                continue
            t = t.float()
            row.update({f"{field}_mean": t.mean().item(), f"{field}_std": t.std().item(),
                        f"{field}_maxabs": t.abs().max().item()})
        start = state_in.seen
        row["inner_loss_before"] = layer.reconstruction_loss(hidden, state_in.detach(), start).item()
        row["inner_loss_after"] = layer.reconstruction_loss(hidden, state_out.detach(), start).item()
        _, _, _, lr, token_scale = layer._scan_inputs(hidden, start, layer.inner())
        row.update({"eta_mean": lr.mean().item(), "eta_std": lr.std().item(), "eta_max": lr.max().item(),
                    # the weight carried to the next mini-batch moves by this times the summed gradients: 0 means the
                    # layer has learned to keep nothing across mini-batches
                    "token_scale_last": token_scale[-1].item()})
        return row

    def record(self, write: bool = True) -> list[dict]:
        """Appends the captured rows to the CSV (on the main process) and checks the alarms (everywhere)."""
        rows, self._rows = self._rows, []
        if write:
            self._append(rows)
        self._check(rows)
        return rows

    def _append(self, rows: list[dict]) -> None:
        if not rows:
            return
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        fields = list(rows[0])
        for r in rows[1:]:
            fields += [k for k in r if k not in fields]
        new = not self.csv_path.exists()
        with self.csv_path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            if new:
                writer.writeheader()
            writer.writerows(rows)

    def _check(self, rows: list[dict]) -> None:
        for row in rows:
            bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
            if bad:
                raise MonitorAlarm(f"step {row['step']}: NaN/Inf in TTT layer {row['layer']}: {', '.join(bad)}")
            big = {k: v for k, v in row.items() if k.endswith("_maxabs") and v > self.max_abs}
            if big:
                raise MonitorAlarm(f"step {row['step']}: TTT layer {row['layer']} weights above the bound "
                                   f"max_abs={self.max_abs}: " + ", ".join(f"{k}={v:.3g}" for k, v in big.items()))


def plot(csv_path: str | Path, png_path: str | Path | None = None) -> Path:
    """One PNG with a panel per quantity (weight max-abs, inner loss before/after, eta, the last position's token
    scale), a line per layer."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"monitor CSV not found: {csv_path} (a training run writes RUN/monitor.csv)")
    df = pd.read_csv(csv_path)
    png_path = Path(png_path) if png_path else csv_path.with_suffix(".png")
    weight_cols = [c for c in df.columns if c.endswith("_maxabs")]
    panels = [("max |weight|", weight_cols), ("inner loss", ["inner_loss_before", "inner_loss_after"]),
              ("eta (lr gate)", ["eta_mean", "eta_max"]),
              ("carried update scale", [c for c in ["token_scale_last"] if c in df.columns])]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6))
    for ax, (title, cols) in zip(axes, panels):
        for layer, part in df.groupby("layer"):
            for col in cols:
                short = layer.replace("model.layers.", "layer ").replace(".self_attn.ttt", "")
                ax.plot(part["step"], part[col], label=f"{short} {col}")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path
