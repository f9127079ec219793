import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from evalsuite.errors import StoreError
from evalsuite.store import Store

SECOND_URL = os.environ.get("EVALSUITE_TEST_DB_URL")  # e.g. postgresql+psycopg://user@localhost/evalsuite_test


def _urls(tmp_path):
    urls = [str(tmp_path / "store.db"), f"sqlite+pysqlite:///{tmp_path / 'second.db'}"]
    return urls + ([SECOND_URL] if SECOND_URL else [])


def _start(store, seed=0, **kw):
    args = dict(task="t", task_version="1", task_kind="k", model_id="m", model_hash="abc123", model_spec="tiny",
                config={"lengths": [8]}, seed=seed, n_units=2, code_version="test")
    return store.start_run(**{**args, **kw})


@pytest.mark.parametrize("which", [0, 1] + ([2] if SECOND_URL else []))
def test_round_trip(tmp_path, which):
    store = Store(_urls(tmp_path)[which])
    run_id = _start(store, seed=len(store.runs()) + 1000)  # unique identity on a shared external database
    assert store.add_unit(run_id, "doc-a", [dict(name="nll_sum", bin="length=8", value=1.5, n=7, data={"x": 1})])
    assert not store.add_unit(run_id, "doc-a", [])  # stored once only
    assert store.done_units(run_id) == {"doc-a"}
    assert not store.claim_finalize(run_id)  # one unit still missing
    store.add_unit(run_id, "doc-b", [])
    assert store.claim_finalize(run_id) and not store.claim_finalize(run_id)
    store.complete_run(run_id, [dict(name="ppl", bin="length=8", value=4.0, ci_low=3.5, ci_high=4.5, n=2)])
    run = store.run(run_id)
    assert run["status"] == "finished" and run["config"] == {"lengths": [8]} and run["finished_at"] is not None
    m = store.metrics(run_id=run_id)
    assert m[["task", "model_hash", "name", "bin", "value", "ci_low", "ci_high", "n"]].iloc[0].tolist() == [
        "t", "abc123", "ppl", "length=8", 4.0, 3.5, 4.5, 2]
    assert len(store.metrics(model_hash="abc123", name="ppl", bin="length=8", finished_only=True)) >= 1
    s = store.samples(run_id)
    assert json.loads(s["data"].iloc[0]) == {"x": 1} and s["value"].iloc[0] == 1.5


def test_resume_returns_the_unfinished_run_and_new_starts_another(tmp_path):
    store = Store(tmp_path / "s.db")
    first = _start(store)
    assert _start(store) == first
    store.finish_run(first, status="failed", error="boom")
    assert _start(store) == first and store.run(first)["status"] == "running"
    fresh = _start(store, resume=False)
    assert fresh != first and _start(store) == fresh


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_export(tmp_path, fmt):
    store = Store(tmp_path / "s.db")
    run_id = _start(store)
    store.complete_run(run_id, [dict(name="ppl", bin="length=8", value=4.0, n=2)])
    path = store.export(tmp_path / f"out.{fmt}", fmt)
    df = {"csv": pd.read_csv, "json": pd.read_json, "parquet": pd.read_parquet}[fmt](path)
    assert df["value"].tolist() == [4.0] and df["task"].tolist() == ["t"]


def test_bad_url_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="nosuchdialect"):
        Store("nosuchdialect://x/y")
    with pytest.raises(StoreError, match="no run 99"):
        Store(tmp_path / "s.db").run(99)


WRITER = """
import sys
from evalsuite.store import Store
store = Store(sys.argv[1])
w = int(sys.argv[2])
run_id = store.start_run(task="t", task_version="1", task_kind="k", model_id="m", model_hash="h", model_spec="x",
                         config={}, seed=w, n_units=40, code_version="test")
for i in range(40):
    store.add_unit(run_id, f"u{i}", [dict(name="v", bin=f"b{j}", value=float(i), n=1) for j in range(5)], shard=w)
if store.claim_finalize(run_id):
    store.complete_run(run_id, [dict(name="done", value=float(w))])
"""


def test_four_writer_processes_lose_no_row(tmp_path):
    db = tmp_path / "shared.db"
    Store(db)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(w)]) for w in range(4)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    store = Store(db)
    runs = store.runs()
    assert len(runs) == 4 and set(runs["status"]) == {"finished"}
    for run_id in runs["id"]:
        assert len(store.done_units(run_id)) == 40 and len(store.samples(run_id)) == 200
    assert len(store.metrics()) == 4
    with store.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
