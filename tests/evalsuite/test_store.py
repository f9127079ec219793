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
    assert store.claim_finalize(run_id) is None  # one unit still missing
    store.add_unit(run_id, "doc-b", [])
    lease = store.claim_finalize(run_id)
    assert lease and store.claim_finalize(run_id) is None  # one finalizer at a time
    rows = [dict(name="ppl", bin="length=8", value=4.0, ci_low=3.5, ci_high=4.5, n=2)]
    assert not store.complete_run(run_id, rows, "not-the-lease")  # only the lease holder completes the run
    assert store.complete_run(run_id, rows, lease)
    assert not store.complete_run(run_id, rows, lease)  # and only once
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
    run_id = _start(store, n_units=0)
    assert store.finalize(run_id, lambda: [dict(name="ppl", bin="length=8", value=4.0, n=2)])
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
store.finalize(run_id, lambda: [dict(name="done", value=float(w))])
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


def test_a_metric_row_never_lands_twice(tmp_path):
    """The unique constraint on (run, task, name, bin) holds whatever writes the row, the API or plain SQL."""
    import sqlite3

    store = Store(tmp_path / "s.db")
    run_id = _start(store, n_units=0)
    assert store.finalize(run_id, lambda: [dict(name="ppl", bin="length=8", value=4.0)])
    with pytest.raises(StoreError, match="already stored; a result is never written twice"):
        store.add_metrics(run_id, [dict(name="ppl", bin="length=8", value=4.0)])
    con = sqlite3.connect(tmp_path / "s.db")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        con.execute("INSERT INTO metrics (run_id, task, task_version, model_id, model_hash, name, bin, value) "
                    "VALUES (?, 't', '1', 'm', 'abc123', 'ppl', 'length=8', 4.0)", (run_id,))
    con.close()
    assert len(store.metrics(run_id=run_id)) == 1


def test_finalize_is_leased_and_a_dead_finalizer_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALSUITE_FINALIZE_LEASE_S", "0.5")
    store = Store(tmp_path / "s.db")
    run_id = _start(store, n_units=0)
    lease = store.claim_finalize(run_id)  # a finalizer that then dies (no heartbeat)
    assert lease and store.run(run_id)["status"] == "finalizing"
    assert _start(store, n_units=0) == run_id and store.run(run_id)["status"] == "finalizing"  # not reset to running
    waited = []
    assert store.finalize(run_id, lambda: [dict(name="ppl", value=1.0)], on_wait=waited.append)
    assert len(waited) == 1 and waited[0]["finalizer"] == lease  # it waited for the lease to run out, then took over
    assert not store.complete_run(run_id, [dict(name="ppl", value=2.0)], lease)  # the dead one's lease is void
    assert store.metrics(run_id=run_id)["value"].tolist() == [1.0] and store.run(run_id)["status"] == "finished"


def test_a_finalizer_that_fails_leaves_the_run_failed_and_resumable(tmp_path):
    store = Store(tmp_path / "s.db")
    run_id = _start(store, n_units=0)
    with pytest.raises(ZeroDivisionError):
        store.finalize(run_id, lambda: [dict(name="x", value=1 / 0)])
    run = store.run(run_id)
    assert run["status"] == "failed" and "ZeroDivisionError" in run["error"] and run["finalizer"] is None
    assert _start(store, n_units=0) == run_id and store.finalize(run_id, lambda: [dict(name="x", value=1.0)])


def test_a_store_with_duplicate_rows_is_migrated(tmp_path, capsys):
    """A store written before the unique constraint may hold the finalize race's duplicates: it asks for
    `evalsuite migrate`, which removes identical copies and adds the constraint; copies that differ are named."""
    import sqlite3

    from evalsuite.cli import main
    from evalsuite.store import migrate

    db = tmp_path / "old.db"
    store = Store(db)
    run_id = _start(store, n_units=0)
    store.finalize(run_id, lambda: [dict(name="ppl", bin="length=8", value=4.0, n=2), dict(name="nan", value=None)])
    con = sqlite3.connect(db)
    con.execute("DROP INDEX uq_metrics_run_task_name_bin")  # as an older version made it
    con.execute("INSERT INTO metrics (run_id, task, task_version, model_id, model_hash, name, bin, value, n) "
                "SELECT run_id, task, task_version, model_id, model_hash, name, bin, value, n FROM metrics")
    con.commit()
    con.close()
    assert main(["show", str(run_id), "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "holds rows that break the unique index" in err and "evalsuite migrate" in err
    assert main(["migrate", "--db", str(db)]) == 0
    assert "2 duplicate metric row(s) removed" in capsys.readouterr().out
    assert Store(db).metrics(run_id=run_id)["name"].tolist() == ["ppl", "nan"]
    assert migrate(db) == {"removed": 0}
    con = sqlite3.connect(db)
    con.execute("DROP INDEX uq_metrics_run_task_name_bin")
    con.execute("INSERT INTO metrics (run_id, task, task_version, model_id, model_hash, name, bin, value) "
                f"VALUES ({run_id}, 't', '1', 'm', 'abc123', 'ppl', 'length=8', 5.0)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match=f"with different values.*run {run_id} ppl length=8"):
        migrate(db)


def test_a_failed_migrate_changes_nothing(tmp_path, capsys):
    """Copies that differ stop `evalsuite migrate` (exit 2) before anything is removed, identical copies included, and
    it says so; once the wrong copy is deleted, the next migrate removes the identical one and says how many."""
    import sqlite3

    from evalsuite.cli import main

    db = tmp_path / "old.db"
    run_id = _start(Store(db), n_units=0)
    Store(db).finalize(run_id, lambda: [dict(name="ppl", bin="length=8", value=4.0, n=2), dict(name="acc", value=0.5)])
    con = sqlite3.connect(db)
    con.execute("DROP INDEX uq_metrics_run_task_name_bin")
    con.execute("INSERT INTO metrics (run_id, task, task_version, model_id, model_hash, name, bin, value, n) "
                "SELECT run_id, task, task_version, model_id, model_hash, name, bin, value, n FROM metrics "
                "WHERE name = 'acc'")  # an identical copy
    con.execute("INSERT INTO metrics (run_id, task, task_version, model_id, model_hash, name, bin, value, n) "
                f"VALUES ({run_id}, 't', '1', 'm', 'abc123', 'ppl', 'length=8', 5.0, 2)")  # a copy that differs
    con.commit()
    before = con.execute("SELECT * FROM metrics ORDER BY id").fetchall()
    assert main(["migrate", "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"run {run_id} ppl length=8" in err
    assert "nothing was changed (1 identical copies are removed once these are resolved)" in err
    assert con.execute("SELECT * FROM metrics ORDER BY id").fetchall() == before
    con.execute("DELETE FROM metrics WHERE value = 5.0")
    con.commit()
    con.close()
    assert main(["migrate", "--db", str(db)]) == 0
    assert "1 duplicate metric row(s) removed" in capsys.readouterr().out
    assert sorted(Store(db).metrics(run_id=run_id)["name"]) == ["acc", "ppl"]


@pytest.mark.parametrize("make, message", [
    ("text", "the file is not an SQLite database"),
    ("inside-a-file", "is a file"),
    ("read-only", "cannot be written (attempt to write a readonly database)"),
    ("immutable", "cannot be written (attempt to write a readonly database)"),
])
def test_a_store_that_cannot_be_written_is_one_line_before_the_model_loads(tmp_path, capsys, monkeypatch, make,
                                                                            message):
    import evalsuite.runner
    from evalsuite.cli import main

    db = str(tmp_path / "s.db")
    if make == "text":
        (tmp_path / "s.db").write_text("these are my notes, not a database\n" * 20)
    elif make == "inside-a-file":
        (tmp_path / "notes").write_text("x")
        db = str(tmp_path / "notes" / "s.db")
    elif make == "read-only":
        Store(db)
        db = f"sqlite:///file:{db}?mode=ro&uri=true"
    else:
        Store(db)
        if subprocess.run(["chattr", "+i", db], capture_output=True).returncode != 0:
            pytest.skip("chattr +i needs root on a filesystem with attributes")
    loads = []
    monkeypatch.setattr(evalsuite.runner, "load_model", lambda *a, **k: loads.append(a))
    try:
        code = main(["run", "--task", "ppl_vs_length", "--db", db, "--no-progress", "--limit", "1"])
    finally:
        if make == "immutable":
            subprocess.run(["chattr", "-i", db])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err and "Traceback" not in err
    assert loads == []  # found before the model loads


def test_urls_are_shown_without_their_password(tmp_path, capsys):
    from evalsuite.cli import main

    for url in ("postgresql://alice:s3cr3t-pw@127.0.0.1:1/evalsuite", "nosuchdialect://alice:s3cr3t-pw@host/db"):
        with pytest.raises(StoreError) as e:
            Store(url)
        assert "s3cr3t-pw" not in str(e.value) and "alice:***@" in str(e.value)
        assert main(["show", "1", "--db", url]) == 2
        err = capsys.readouterr().err
        assert "s3cr3t-pw" not in err and "alice:***@" in err


def test_export_to_an_unwritable_path_is_one_line(tmp_path, capsys):
    from evalsuite.cli import main

    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file" / "m.csv", tmp_path / "dir"):
        (tmp_path / "dir").mkdir(exist_ok=True)
        assert main(["export", "--db", str(tmp_path / "s.db"), "--output", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("evalsuite: error: cannot write the metric rows to") and str(out) in err
        assert "\n" not in err
