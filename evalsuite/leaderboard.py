"""Leaderboards: tables of stored metric rows, defined in leaderboards/*.yaml, written as Markdown and CSV.

    name: ppl_by_length                # output files leaderboards/NAME.md and NAME.csv
    title: Perplexity at each context length
    description: one line under the title
    task: ppl_vs_length
    metrics: [ppl]                     # one or more metric names
    bins: ["length=1024", ...]         # optional: only these bins (default: every bin found, in numeric order)
    digits: 2                          # optional, decimals in the Markdown
    sort_by: "ppl length=1024"         # optional: a column label; ascending unless `descending: true`

One row per model (content hash): the latest finished run of the task for it. A cell is "value [ci_low, ci_high]";
the CSV holds the raw numbers. Output depends only on the store's contents (no times, stable order), so a rebuild
of an unchanged store gives identical files.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pandas as pd
from pydantic import Field

from ttt_omni.atomic import write_text
from ttt_omni.resources import bundled
from ttt_omni.schema import Schema, read_mapping, validate

from .errors import EvalsuiteError
from .store import Store


class LeaderboardError(EvalsuiteError, ValueError):
    """A leaderboard definition that cannot be used."""


class BoardSchema(Schema):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]  # a file-name-safe word
    title: str
    task: str
    metrics: list[str] | str
    description: str = ""
    bins: list[str] | None = None
    digits: Annotated[int, Field(ge=0, le=12)] = 3
    sort_by: str | None = None
    descending: bool = False


@dataclass
class Board:
    name: str
    title: str
    task: str
    metrics: list[str]
    description: str = ""
    bins: list[str] | None = None
    digits: int = 3
    sort_by: str | None = None
    descending: bool = False
    source: str = ""


def load_definitions(directory: str | Path | None = None) -> list[Board]:
    """The leaderboard YAMLs of `directory` (default: the bundled leaderboards/)."""
    directory = Path(directory) if directory is not None else bundled("leaderboards")
    if not directory.is_dir():
        raise LeaderboardError(f"leaderboard folder not found: {directory} (expected leaderboards/*.yaml)")
    return [load_definition(p) for p in sorted(directory.glob("*.yaml"))]


def load_definition(path: Path) -> Board:
    data = read_mapping(path, LeaderboardError, "a mapping with name, title, task, metrics")
    b = validate(BoardSchema, data, str(path), LeaderboardError)
    return Board(name=b.name, title=b.title, task=b.task, metrics=b.metrics if isinstance(b.metrics, list) else
                 [b.metrics], description=b.description, bins=b.bins or None, digits=b.digits, sort_by=b.sort_by,
                 descending=b.descending, source=str(path))


def bin_key(b: str):
    """Natural order: "length=2048" before "length=16384"; non-numeric bins by text."""
    m = re.search(r"(-?\d+(?:\.\d+)?)", b)
    return (0, float(m.group(1)), b) if m else (1, 0.0, b)


def _label(metric: str, b: str, board: Board) -> str:
    return metric if not b else (b if len(board.metrics) == 1 else f"{metric} {b}")


def rows(store: Store, board: Board) -> pd.DataFrame:
    """Long table: model_id, model_hash, run_id, column, metric, bin, value, ci_low, ci_high, n."""
    cols = ["model_id", "model_hash", "run_id", "column", "metric", "bin", "value", "ci_low", "ci_high", "n"]
    df = store.metrics(task=board.task, finished_only=True)
    df = df[df["name"].isin(board.metrics)] if not df.empty else df
    if board.bins is not None and not df.empty:
        df = df[df["bin"].isin(board.bins)]
    if df.empty:
        return pd.DataFrame(columns=cols)
    latest = df.groupby("model_hash")["run_id"].transform("max")
    df = df[df["run_id"] == latest].rename(columns={"name": "metric"})
    df = df.assign(column=[_label(m, b, board) for m, b in zip(df["metric"], df["bin"])])
    order = {m: i for i, m in enumerate(board.metrics)}
    df = df.assign(_m=df["metric"].map(order), _b=df["bin"].map(bin_key))
    return df.sort_values(["model_id", "model_hash", "_m", "_b"])[cols].reset_index(drop=True)


def table(store: Store, board: Board) -> pd.DataFrame:
    """Wide display table: model, hash, n (documents), then one "value [low, high]" column per metric/bin, in the
    board's metric order and numeric bin order (1k before 16k, whichever model has which)."""
    long = rows(store, board)
    if long.empty:
        return pd.DataFrame(columns=["model", "hash", "n"])
    order = {m: i for i, m in enumerate(board.metrics)}
    first = long.drop_duplicates("column")
    columns = [c for _, c in sorted(((order[m], bin_key(b)), c) for c, m, b in
                                    zip(first["column"], first["metric"], first["bin"]))]
    d = board.digits

    def cell(r) -> str:
        if pd.isna(r.value):
            return "nan"
        ci = "" if pd.isna(r.ci_low) or pd.isna(r.ci_high) else f" [{r.ci_low:.{d}f}, {r.ci_high:.{d}f}]"
        return f"{r.value:.{d}f}{ci}"

    out = []
    sort_values = []
    for (model_id, model_hash), part in long.groupby(["model_id", "model_hash"], sort=False):
        cells = {r.column: cell(r) for r in part.itertuples()}
        n = part["n"].max()
        out.append({"model": model_id, "hash": model_hash, "n": "" if pd.isna(n) else int(n),
                    **{c: cells.get(c, "") for c in columns}})
        values = dict(zip(part["column"], part["value"]))
        sort_values.append(values.get(board.sort_by, float("nan")))
    wide = pd.DataFrame(out, columns=["model", "hash", "n", *columns])
    if board.sort_by:
        if board.sort_by not in columns:
            raise LeaderboardError(f"{board.source}: sort_by {board.sort_by!r} is not a column; columns: {columns}")
        wide = (wide.assign(_s=sort_values).sort_values("_s", ascending=not board.descending, kind="stable",
                                                        na_position="last").drop(columns="_s"))
    return wide.reset_index(drop=True)


def markdown(board: Board, wide: pd.DataFrame) -> str:
    lines = [f"# {board.title}", ""]
    if board.description:
        lines += [board.description, ""]
    lines += [f"Task `{board.task}`, metric(s) {', '.join(f'`{m}`' for m in board.metrics)}; value [95% CI]. "
              "Generated by `evalsuite leaderboard build` from the results store; do not edit.", ""]
    if wide.empty:
        return "\n".join(lines + ["No finished runs of this task in the store yet.", ""])
    header = list(wide.columns)
    lines.append("| " + " | ".join(header) + " |")
    lines.append("| " + " | ".join("---" if i < 2 else "---:" for i in range(len(header))) + " |")
    for r in wide.itertuples(index=False):
        lines.append("| " + " | ".join(str(x) for x in r) + " |")
    return "\n".join(lines) + "\n"


DEFAULT_OUT = Path("results") / "leaderboards"  # beside the default store, under the working directory


def build(store: Store, directory: str | Path | None = None, out_dir: str | Path | None = None) -> list[Path]:
    """Write NAME.md and NAME.csv for every definition (default: the bundled ones) into `out_dir` (default
    results/leaderboards/ under the working directory: generated files, never the installed package's folder);
    returns the paths written."""
    directory = Path(directory) if directory is not None else bundled("leaderboards")
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for board in load_definitions(directory):
        long = rows(store, board)
        for path, text in ((out_dir / f"{board.name}.md", markdown(board, table(store, board))),
                           (out_dir / f"{board.name}.csv", long.to_csv(index=False, float_format="%.10g"))):
            written.append(write_text(path, text))
    return written
