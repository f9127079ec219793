"""The bridge to the results store (evalsuite.store): the database URL, system outputs ("samples") for export,
and the summary's metric rows as a run of task `human_pref`."""

from __future__ import annotations

import os

from evalsuite.humaneval.bundle import BundleError, Output

DEFAULT_URL = "sqlite:///evalsuite.db"


def db_url(cli_value: str | None) -> str:
    return cli_value or os.environ.get("EVALSUITE_DB") or DEFAULT_URL


def samples_outputs(url: str, task: str, systems: list[str]) -> dict[str, dict[str, Output]]:
    raise BundleError("--from-jsonl: required (the results store has no samples table yet)")


def write_rows(url: str, key: dict, rows: list[dict]) -> str:
    raise BundleError("--no-store: required (the results store API is not available yet)")
