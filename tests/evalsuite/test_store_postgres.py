"""The results store on a real PostgreSQL server (tests/support/postgres.py starts one from the machine's binaries):
a run written and read back, four identical `evalsuite run`s at once writing every row once, two sweep workers
sharing one study, the gate deciding on the stored evidence, and no output of a run showing the URL's password.
The same checks on SQLite live beside them (test_store, test_runner, test_sweep, tests/test_gate.py)."""
import json
import secrets
from concurrent.futures import ThreadPoolExecutor
import subprocess
import sys

import pytest

pytest.importorskip("psycopg", reason="the postgres extra (psycopg 3) is not installed")

from evalsuite.cli import main as evalsuite_main  # noqa: E402
from evalsuite.store import Store  # noqa: E402
from support.postgres import new_database, server  # noqa: E402

from test_sweep import conversations, optuna, write_spec  # noqa: E402,F401 (conversations: a fixture)

RUN = ["run", "--task", "ppl_vs_length", "--model", "tiny", "--lengths", "256,512", "--no-progress"]


@pytest.fixture(scope="session")
def pg_server():
    with server() as found:
        yield found


@pytest.fixture
def pg_url(pg_server):
    """A fresh database on the session's server."""
    return new_database(pg_server[0], f"t_{secrets.token_hex(6)}")


def _cli(*args, timeout=300):
    res = subprocess.run([sys.executable, "-m", "evalsuite.cli", *args], capture_output=True, text=True,
                         timeout=timeout)
    return res.returncode, res.stdout + res.stderr


@pytest.fixture(scope="module")
def demo_run(pg_server):
    """One small demo run stored on PostgreSQL, then its `show` and `runs`: (URL, password, all their output)."""
    url = new_database(pg_server[0], "demo")
    outputs = []
    for args in (RUN + ["--limit", "1", "--db", url], ["show", "1", "--db", url], ["runs", "--db", url]):
        code, out = _cli(*args)
        assert code == 0, out[-3000:]
        outputs.append(out)
    return url, pg_server[1], "\n".join(outputs)


def test_many_first_opens_of_a_new_database_at_once(pg_server):
    """Creating the tables of a new database from several connections at once collided in PostgreSQL's catalog
    ("duplicate key value violates unique constraint pg_type_typname_nsp_index"): the store takes turns."""
    for attempt in range(3):
        url = new_database(pg_server[0], f"open_{attempt}_{secrets.token_hex(4)}")
        with ThreadPoolExecutor(8) as pool:
            stores = list(pool.map(lambda _: Store(url), range(8)))
        assert all(s.runs().empty for s in stores)


def test_a_run_is_stored_and_read_back(demo_run):
    url, _, output = demo_run
    store = Store(url)
    runs = store.runs()
    assert runs["status"].tolist() == ["finished"] and runs["model_id"].tolist() == ["tiny-ttt"]
    m = store.metrics(run_id=1)
    assert {"length=256", "length=512"} <= set(m["bin"]) and "cum_ppl" in set(m["name"])
    assert not m.duplicated(["name", "bin"]).any()
    assert store.done_units(1) and len(store.samples(1)) > 0
    assert "cum_ppl" in output and "length=512" in output  # the table, printed by run and by show


def test_no_output_of_a_run_shows_the_password(demo_run):
    _, password, output = demo_run
    assert "evalsuite:***@" in output
    assert password not in output


def test_four_identical_runs_at_once_write_every_row_once(pg_url):
    """Four `evalsuite run`s of one task, model and config start together: they share one run (creating it races on
    PostgreSQL: the losers of the insert resume it), each document is stored once, the metrics are written once."""
    args = [sys.executable, "-m", "evalsuite.cli", *RUN, "--limit", "2", "--db", pg_url]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [o[-2000:] for o in outputs]
    store = Store(pg_url)
    runs = store.runs()
    assert len(runs) == 1 and runs["status"].tolist() == ["finished"]
    samples = store.samples(1)
    assert len(store.done_units(1)) == 2 and len(set(samples["unit"])) == 2
    assert not samples.duplicated(["unit", "name", "bin"]).any()
    m = store.metrics()
    assert len(m) > 0 and not m.duplicated(["run_id", "name", "bin"]).any()
    assert all("length=512" in o for o in outputs)  # each shows the finished run's table


def test_two_workers_share_one_study_and_run_each_point_once(tmp_path, conversations, pg_url):  # noqa: F811
    spec_path = write_spec(tmp_path, conversations, study="pair")
    workers = [subprocess.Popen([sys.executable, "-m", "ttt_omni.cli", "sweep", str(spec_path), "--db", pg_url,
                                 "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs, errors = zip(*(w.communicate(timeout=600) for w in workers))
    assert [w.returncode for w in workers] == [0, 0], [e[-3000:] for e in errors]
    assert all("2/2 trials settled" in out for out in outputs)
    trials = optuna.load_study(study_name="pair", storage=pg_url).trials
    assert sorted(t.params["model_overrides.ttt_type"] for t in trials) == ["linear", "mlp"]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    finals = [json.loads(c)["sweep"] for c in Store(pg_url).runs(task="ppl_vs_length")["config"]]
    assert sorted(b["trial"] for b in finals if b["step"] == 4) == [0, 1]


GATE = """
output_dir: runs/x
stages:
  - stage: 1
    gate:
      rules:
        - {name: finite ppl, task: ppl_vs_length, metric: cum_ppl, bin: length=512, op: "<", threshold: 1.0e+6,
           data: any}
  - stage: 2
    gate:
      rules:
        - {name: perfect ppl, task: ppl_vs_length, metric: cum_ppl, bin: length=512, op: "<", threshold: 1,
           data: any}
"""


def test_the_gate_decides_on_the_stored_evidence(demo_run, tmp_path, capsys):
    from evalsuite import gate_db

    url = demo_run[0]
    config = tmp_path / "curriculum.yaml"
    config.write_text(GATE)
    assert evalsuite_main(["gate", "--checkpoint", "tiny", "--stage", "1", "--config", str(config), "--db", url]) == 0
    assert evalsuite_main(["gate", "--checkpoint", "tiny", "--stage", "2", "--config", str(config), "--db", url]) == 1
    out = capsys.readouterr().out
    assert "decision 1: pass" in out and "decision 2: fail" in out
    store = Store(url)
    model_hash = store.runs()["model_hash"][0]
    assert gate_db.latest(store, model_hash, 1)["outcome"] == "pass"
    assert gate_db.latest(store, model_hash, 2)["outcome"] == "fail"
