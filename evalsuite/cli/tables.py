"""Every table the evalsuite CLI prints, in one of four formats: `table` (for people: a wide table when it fits the
terminal, else stacked one value per line, never truncated or wrapped mid-cell), `csv`, `json` (records) and
`markdown` (for programs and documents: the plain numbers, no formatting)."""
from __future__ import annotations

import json
import math

import pandas as pd

FORMATS = ("table", "csv", "json", "markdown")


def add_format_option(parser) -> None:
    parser.add_argument("--format", dest="table_format", choices=FORMATS, default="table",
                        help="how tables are printed: table (for the terminal), csv, json or markdown")


def console():
    from rich.console import Console

    return Console(soft_wrap=False)


def emit(rows: pd.DataFrame, fmt: str, *, title: str = "", wide: pd.DataFrame | None = None) -> None:
    """Print `rows` (one record per row). For `table`, `wide` (the same data pivoted for reading) is printed instead
    when it fits the terminal's width."""
    if fmt == "csv":
        print(rows.to_csv(index=False), end="")
    elif fmt == "json":
        print(json.dumps([{k: _plain(v) for k, v in r.items()} for r in rows.to_dict("records")], indent=1))
    elif fmt == "markdown":
        print(markdown(rows))
    else:
        from rich.measure import Measurement

        out = console()
        for frame in ([wide] if wide is not None else []) + [rows]:
            table = rich_table(frame, title)
            natural = Measurement.get(out, out.options.update_width(10_000), table).maximum  # unwrapped width
            if frame is rows or natural <= out.width:
                out.print(table)
                return


def markdown(rows: pd.DataFrame) -> str:
    cells = [[_text(v) for v in r] for r in rows.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, rows.columns)) + " |", "|" + " --- |" * len(rows.columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])


def rich_table(frame: pd.DataFrame, title: str = ""):
    from rich import box
    from rich.table import Table

    table = Table(title=title or None, box=box.SIMPLE_HEAD, title_justify="left")
    for col in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[col])
        table.add_column(str(col), justify="right" if numeric else "left", overflow="fold")
    for r in frame.itertuples(index=False):
        table.add_row(*[_text(v) for v in r])
    return table


def _text(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _plain(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v.item() if hasattr(v, "item") else v if isinstance(v, (int, float, str, bool)) else str(v)
