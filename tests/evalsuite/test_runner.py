import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from evalsuite.cli import main
from evalsuite.store import Store

SLOW_KIND = textwrap.dedent('''
    import os, time
    from evalsuite.registry import TaskKind, Unit, register_kind

    @register_kind("slow_count")
    class SlowCount(TaskKind):
        """Units u0..u7; each appends its key to params.log and takes params.delay_ms. With $SLOW_HANG_AFTER=N the
        process hangs once N units are logged (to be killed there, whatever the machine's load)."""
        metrics = frozenset({"total"})

        def units(self):
            return [Unit(f"u{i}") for i in range(8)]

        def run_unit(self, unit):
            hang_after = int(os.environ.get("SLOW_HANG_AFTER", 0))
            if hang_after and len(open(self.spec.params["log"]).read().split()) >= hang_after:
                time.sleep(3600)
            time.sleep(self.spec.params["delay_ms"] / 1000)
            with open(self.spec.params["log"], "a") as f:
                f.write(unit.key + "\\n")
            return [dict(name="one", value=1.0, n=1)]

        def aggregate(self, samples):
            return [dict(name="total", value=float(samples["value"].sum()), n=len(samples))]
''')


def _cli(*args):
    return [sys.executable, "-m", "evalsuite.cli", *args]


def test_kill_9_then_resume_redoes_only_unfinished_units(tmp_path):
    log, db = tmp_path / "ran.log", tmp_path / "s.db"
    (tmp_path / "slow.py").write_text(SLOW_KIND)
    (tmp_path / "slow.yaml").write_text(
        f"name: slow\nversion: 1\nkind: slow_count\nmetrics: [total]\nparams: {{log: '{log}', delay_ms: 400}}\n")
    args = ["run", "--task", "slow", "--include-path", str(tmp_path), "--db", str(db), "--no-progress"]
    log.write_text("")
    proc = subprocess.Popen(_cli(*args), env={**os.environ, "SLOW_HANG_AFTER": "3"})
    store = Store(db)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        runs = store.runs()
        if len(runs) and len(store.done_units(int(runs["id"][0]))) >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run_id = int(store.runs()["id"][0])
    done_before = store.done_units(run_id)
    assert len(done_before) == 3 and store.run(run_id)["status"] == "running"
    log.write_text("")
    assert main(args) == 0
    rerun = log.read_text().split()
    assert sorted(rerun) == sorted({f"u{i}" for i in range(8)} - done_before)
    assert len(store.runs()) == 1 and store.run(run_id)["status"] == "finished"
    assert store.metrics(run_id=run_id)["value"].tolist() == [8.0]


def test_four_shards_in_four_processes_merge_into_one_run(tmp_path, micro_llama_dir, small_corpus):
    db = tmp_path / "s.db"
    corpus = tmp_path / "corpus8"
    corpus.mkdir()
    for i, doc in enumerate(sorted(small_corpus.glob("*.txt")) * 2):
        (corpus / f"{i}_{doc.name}").write_text(doc.read_text())
    args = ["run", "--task", "ppl_vs_length", "--model", f"hf:{micro_llama_dir}", "--corpus", str(corpus),
            "--lengths", "32,64,128", "--db", str(db), "--no-progress", "--world-size", "4"]
    procs = [subprocess.Popen(_cli(*args, "--rank", str(r)), stdout=subprocess.DEVNULL) for r in range(4)]
    assert [p.wait(timeout=400) for p in procs] == [0, 0, 0, 0]
    store = Store(db)
    runs = store.runs()
    assert len(runs) == 1 and runs["status"][0] == "finished"
    run_id = int(runs["id"][0])
    assert len(store.done_units(run_id)) == 8
    assert set(store.samples(run_id)["unit"]) == {p.name for p in corpus.glob("*.txt")}
    m = store.metrics(run_id=run_id)
    assert len(m) == 4 * 3 and (m[m["bin"] == "length=32"]["n"] == 8).all()


def test_demo_defaults_with_a_small_limit_print_table_and_where_results_are(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EVALSUITE_DB", str(tmp_path / "demo.db"))
    assert main(["run", "--task", "ppl_vs_length", "--limit", "1", "--lengths", "256,512", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "tiny-ttt" in out and "length=512" in out and "evalsuite show 1" in out
    assert main(["show", "1"]) == 0
    out = capsys.readouterr().out
    assert "cum_ppl" in out and "'source': 'books:eval'" in out and "data_hash" in out  # what the run read
    assert main(["export", "--format", "json", "--output", str(tmp_path / "m.json")]) == 0


@pytest.mark.parametrize("args, message", [
    (["--corpus", "/nonexistent/corpus"], "corpus /nonexistent/corpus: no such file or folder"),
    (["--model", "gpt:foo"], "model spec 'gpt:foo' not understood"),
    (["--model", "hf:/nonexistent"], "not a Hugging Face model directory"),
    (["--lengths", "1k,abc"], "length 'abc' is not a number"),
    (["--limit", "-1"], "--limit -1: expected a positive number of documents"),
    (["--limit", "0"], "--limit 0: expected a positive number of documents"),
    (["--lengths", ","], "--lengths ',': expected comma-separated context lengths"),
    (["--lengths", "99999999999999999999k"], "expected at most 134217728 (131072k)"),
    (["--seed", "1180591620717411303424"], "seed 1180591620717411303424: expected a whole number from 0 to 4294967295"),
    (["--seed", "-1"], "seed -1: expected a whole number from 0 to 4294967295"),
    (["--device", "cuda:99"], "device 'cuda:99': "),
    (["--device", "gpu"], "device 'gpu': expected cpu, cuda, cuda:N or mps"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    code = main(["run", "--task", "ppl_vs_length", "--db", str(tmp_path / "s.db"), "--no-progress", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err
    assert Store(tmp_path / "s.db").runs().empty  # refused before a run is made


def test_cuda_without_a_gpu_is_one_line(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(["run", "--task", "ppl_vs_length", "--db", str(tmp_path / "s.db"), "--no-progress", "--device", "cuda"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "device 'cuda': no CUDA GPU is available here" in err and "\n" not in err


@pytest.mark.parametrize("store_full_too", [False, True])
def test_a_full_disk_mid_run_is_one_line_and_the_same_command_resumes(tmp_path, capsys, monkeypatch, store_full_too):
    """The 4th unit's write fails with ENOSPC: one line, exit 2, the run marked failed (or, when the store cannot be
    written either, the line says it still reads running); the same command then resumes it."""
    import errno
    import sqlite3

    from sqlalchemy.exc import OperationalError

    args, store = _slow_task(tmp_path), Store(tmp_path / "s.db")
    real_add = Store.add_unit

    def add_until_full(self, run_id, key, samples, shard=0):
        if len(self.done_units(run_id)) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_add(self, run_id, key, samples, shard)

    def store_full(self, *a, **k):
        raise OperationalError("UPDATE runs", {}, sqlite3.OperationalError("database or disk is full"))

    monkeypatch.setattr(Store, "add_unit", add_until_full)
    if store_full_too:
        monkeypatch.setattr(Store, "finish_run", store_full)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err  # above the error: transformers' weight-loading progress bar
    line = err.splitlines()[-1]
    assert line.startswith("evalsuite: error: run 1 stopped: the disk is full ([Errno 28] No space left on device)")
    assert ("could not be marked failed either" if store_full_too else "is marked failed") in line
    assert store.run(1)["status"] == ("running" if store_full_too else "failed") and len(store.done_units(1)) == 3
    monkeypatch.undo()
    assert main(args) == 0 and store.run(1)["status"] == "finished"
    assert "3 finished units kept, 5 run now" in capsys.readouterr().out


def test_runs_last_must_not_be_negative(tmp_path, capsys):
    assert main(["runs", "--last", "-1", "--db", str(tmp_path / "s.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--last -1: expected how many of the newest runs to list (0: all)" in err and "\n" not in err


def test_unreadable_corpus_document_is_a_clear_error(tmp_path, capsys, micro_llama_dir):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "binary.txt").write_bytes(b"\xff\xfe\x00\x81 not utf-8")
    code = main(["run", "--task", "ppl_vs_length", "--model", f"hf:{micro_llama_dir}", "--corpus", str(corpus),
                 "--lengths", "32", "--db", str(tmp_path / "s.db"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "binary.txt" in err and "UTF-8" in err
    assert Store(tmp_path / "s.db").runs().empty  # refused before a run is made of it


def test_an_empty_corpus_document_makes_no_failed_run(tmp_path, capsys):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Some text to read.")
    (corpus / "empty.txt").write_text("  \n")
    code = main(["run", "--task", "ppl_vs_length", "--corpus", str(corpus), "--lengths", "32",
                 "--db", str(tmp_path / "s.db"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and "corpus document empty.txt" in err.splitlines()[-1]
    assert Store(tmp_path / "s.db").runs().empty


def test_bad_input_met_mid_run_says_the_run_is_stored_as_failed(tmp_path, capsys):
    """A length too short for a retrieval sample shows only when the sample is built: the line says what became of the
    run (a failed row) instead of leaving it to be found."""
    db = str(tmp_path / "s.db")
    code = main(["run", "--task", "passkey", "--lengths", "16", "--limit", "1", "--db", db, "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err  # above the error: transformers' weight-loading progress bar
    assert "length 16 is too short" in err.splitlines()[-1]
    assert err.endswith("(run 1 is stored as failed with this error: evalsuite runs --status failed)")
    assert Store(db).run(1)["status"] == "failed"


def _slow_task(tmp_path, delay_ms=0):
    log = tmp_path / "ran.log"
    (tmp_path / "slow.py").write_text(SLOW_KIND)
    (tmp_path / "slow.yaml").write_text(
        f"name: slow\nversion: 1\nkind: slow_count\nmetrics: [total]\nparams: {{log: '{log}', delay_ms: {delay_ms}}}\n")
    return ["run", "--task", "slow", "--include-path", str(tmp_path), "--db", str(tmp_path / "s.db"),
            "--model", "tiny-baseline", "--no-progress"]


def test_every_run_records_its_environment_and_show_prints_it(tmp_path, capsys):
    import torch
    import transformers

    assert main(_slow_task(tmp_path)) == 0
    env = Store(tmp_path / "s.db").run(1)["environment"]
    assert env["transformers"] == transformers.__version__ and env["torch"] == torch.__version__
    assert env["device"].startswith("cpu: ") and env["dtype"] == "float32" and len(env["code_hash"]) == 16
    assert {"python", "lm_eval", "triton", "ttt_backend", "triton_precision"} <= set(env)
    capsys.readouterr()
    assert main(["show", "1", "--db", str(tmp_path / "s.db")]) == 0
    assert f"transformers {transformers.__version__}" in capsys.readouterr().out


def test_an_interrupted_run_is_not_resumed_under_other_libraries(tmp_path, capsys, monkeypatch):
    """Units scored under transformers X are never mixed with units scored under Y in one run."""
    import evalsuite.runner

    args, store = _slow_task(tmp_path), Store(tmp_path / "s.db")
    real_env, real_add = evalsuite.runner.environment, Store.add_unit
    monkeypatch.setattr(evalsuite.runner, "environment", lambda m: {**real_env(m), "transformers": "0.0-older"})
    calls = []

    def add_then_interrupt(self, *a, **k):  # Ctrl-C while the second unit is stored
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_add(self, *a, **k)

    monkeypatch.setattr(Store, "add_unit", add_then_interrupt)
    assert main(args) == 130
    assert store.run(1)["status"] == "failed" and len(store.done_units(1)) == 1
    monkeypatch.setattr(Store, "add_unit", real_add)
    monkeypatch.setattr(evalsuite.runner, "environment", real_env)
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert store.runs()["status"].tolist() == ["failed", "finished"]
    assert len(store.done_units(2)) == 8 and store.run(1)["environment"]["transformers"] == "0.0-older"
    assert "run 1 " in out and "not resumed" in out and "0.0-older" in out


def test_a_store_from_before_environments_gains_the_column(tmp_path):
    import sqlite3

    db = tmp_path / "old.db"
    Store(db)
    con = sqlite3.connect(db)
    con.execute("ALTER TABLE runs DROP COLUMN environment")
    con.commit()
    con.close()
    store = Store(db)
    run = store.start_run(task="t", task_version="1", task_kind="k", model_id="m", model_hash="h", model_spec="m",
                          config={}, seed=0, n_units=1, code_version="x", environment={"torch": "1"})
    assert store.run(run)["environment"] == {"torch": "1"}


def test_nan_weights_in_a_checkpoint_are_one_line_before_any_run(tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file, save_file

    from ttt_omni.resources import bundled

    ckpt = tmp_path / "nan-ttt"
    shutil.copytree(bundled("checkpoints", "tiny-ttt"), ckpt)
    weights = load_file(ckpt / "model.safetensors")
    weights["model.layers.3.self_attn.ttt.inner.W1"][0, 0, 0] = float("nan")
    save_file(weights, ckpt / "model.safetensors", metadata={"format": "pt"})
    code = main(["run", "--task", "ppl_vs_length", "--model", f"ttt:{ckpt}", "--db", str(tmp_path / "s.db"),
                 "--no-progress", "--limit", "1", "--lengths", "64"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err  # above the error: transformers' weight-loading progress bar
    assert "weight model.layers.3.self_attn.ttt.inner.W1 holds 1 NaN/Inf values" in err.splitlines()[-1]
    assert Store(tmp_path / "s.db").runs().empty


@pytest.mark.parametrize("spec, weight", [("tiny", "model.layers.0.self_attn.o_proj.weight"),
                                          ("tiny-baseline", "model.layers.3.mlp.down_proj.weight")])
def test_a_model_that_turns_nan_fails_its_run_with_the_reason(tmp_path, spec, weight):
    """TTT layers refuse NaN inputs; any model's NaN logits are refused: never a finished run with NaN metrics."""
    import torch

    from evalsuite.errors import NonFiniteModelError
    from evalsuite.models import load_model
    from evalsuite.runner import run_task

    loaded = load_model(spec)
    with torch.no_grad():
        loaded.model.get_parameter(weight)[0, 0] = float("inf")
    store = Store(tmp_path / "s.db")
    with pytest.raises(NonFiniteModelError, match="NaN/Inf"):
        run_task("ppl_vs_length", loaded, store=store, limit=1, lengths=[64, 128], progress=False)
    run = store.runs().iloc[0]
    assert run["status"] == "failed" and "NaN/Inf" in run["error"] and store.metrics().empty


SLOW_AGGREGATE = textwrap.dedent('''
    import os, time
    from pathlib import Path
    from evalsuite.registry import TaskKind, Unit, register_kind

    @register_kind("slow_aggregate")
    class SlowAggregate(TaskKind):
        """Units u0..u3; aggregate() notes that it started (params.dir/aggregating-PID) and waits for
        params.dir/release, then gives 8 metric rows."""
        metrics = frozenset({f"m{i}" for i in range(8)})

        def units(self):
            return [Unit(f"u{i}") for i in range(4)]

        def run_unit(self, unit):
            return [dict(name="one", value=1.0, n=1)]

        def aggregate(self, samples):
            folder = Path(self.spec.params["dir"])
            (folder / f"aggregating-{os.getpid()}").write_text("")
            deadline = time.monotonic() + 240
            while not (folder / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            return [dict(name=f"m{i}", value=float(len(samples)), n=len(samples)) for i in range(8)]
''')


def _wait_for(predicate, what: str, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _aggregate_task(tmp_path):
    (tmp_path / "agg.py").write_text(SLOW_AGGREGATE)
    (tmp_path / "agg.yaml").write_text(
        f"name: agg\nversion: 1\nkind: slow_aggregate\nmetrics: [m0]\nparams: {{dir: '{tmp_path}'}}\n")
    return ["run", "--task", "agg", "--include-path", str(tmp_path), "--db", str(tmp_path / "s.db"),
            "--model", "tiny-baseline", "--no-progress"]


@pytest.mark.slow
def test_a_second_run_while_the_first_finalizes_waits_and_writes_nothing_twice(tmp_path):
    """The probe: a second identical `evalsuite run` started while the first is finalizing used to reset the run to
    running and aggregate it again: every metric row twice. Now it waits for the finalizer; the rows land once."""
    args = _aggregate_task(tmp_path)
    first = subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: list(tmp_path.glob("aggregating-*")), "the first run to finalize")
    second = subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = Store(tmp_path / "s.db")
    _wait_for(lambda: second.poll() is not None or "waiting for it" in (second.stderr.readline() or ""),
              "the second run to wait")
    assert store.runs()["status"].tolist() == ["finalizing"]
    (tmp_path / "release").write_text("")
    assert first.wait(timeout=240) == 0 and second.wait(timeout=240) == 0, first.stderr.read() + second.stderr.read()
    assert len(list(tmp_path.glob("aggregating-*"))) == 1  # aggregated once, by the first
    assert len(store.runs()) == 1 and store.runs()["status"].tolist() == ["finished"]
    assert len(store.metrics()) == 8
    assert "m0" in second.stdout.read()  # the second shows the finished run's table


@pytest.mark.slow
def test_a_finalizer_killed_with_9_is_taken_over_once_its_lease_runs_out(tmp_path):
    args = _aggregate_task(tmp_path)
    env = {**os.environ, "EVALSUITE_FINALIZE_LEASE_S": "2"}
    first = subprocess.Popen(_cli(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: list(tmp_path.glob("aggregating-*")), "the first run to finalize")
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    store = Store(tmp_path / "s.db")
    assert store.runs()["status"].tolist() == ["finalizing"]
    (tmp_path / "release").write_text("")
    second = subprocess.run(_cli(*args), env=env, capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, second.stderr
    assert len(list(tmp_path.glob("aggregating-*"))) == 2  # the second aggregated after the lease ran out
    assert store.runs()["status"].tolist() == ["finished"] and len(store.metrics()) == 8


@pytest.mark.parametrize("damage, message", [
    ("empty", "model.safetensors is not a readable safetensors file (Error while deserializing header: header too "
              "small); the checkpoint is corrupt, truncated or empty"),
    ("truncated", "model.safetensors is not a readable safetensors file (Error while deserializing header: incomplete "
                  "metadata, file not fully covered)"),
    ("corrupt", "model.safetensors is not a readable safetensors file"),
    ("config", "config.json is not valid JSON"),
    ("model_type", "names model_type 'ttt_llamax', which no installed model class provides"),
    ("hidden_size", "cannot be loaded (Validation error for field 'hidden_size'"),
])
def test_a_broken_checkpoint_is_one_line_naming_the_file(tmp_path, capsys, damage, message):
    import json
    import shutil

    from ttt_omni.resources import bundled

    ckpt = tmp_path / "ckpt"
    shutil.copytree(bundled("checkpoints", "tiny-ttt"), ckpt)
    weights, config = ckpt / "model.safetensors", ckpt / "config.json"
    if damage == "empty":
        weights.write_bytes(b"")
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:100_000])
    elif damage == "corrupt":
        weights.write_bytes(os.urandom(5000))
    elif damage == "config":
        config.write_text(config.read_text()[:200])
    else:
        data = json.loads(config.read_text())
        data.update({"model_type": "ttt_llamax"} if damage == "model_type" else {"hidden_size": "big"})
        config.write_text(json.dumps(data))
    for spec in (f"ttt:{ckpt}", f"hf:{ckpt}"):  # hf: on a TTT checkpoint too: never "update Transformers"
        code = main(["run", "--task", "ppl_vs_length", "--model", spec, "--db", str(tmp_path / "s.db"),
                     "--no-progress", "--limit", "1", "--lengths", "64"])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert code == 2 and message in err and err.startswith(f"evalsuite: error: {spec}: ")
        assert "Traceback" not in err and "update" not in err.lower()


def test_checkpoints_are_named_apart_and_a_run_can_name_its_model(tmp_path, micro_ttt_dir, small_corpus):
    """Every curriculum stage ends in a folder called `final`: 'ttt:final' could not tell stage 1 from stage 2."""
    import shutil

    from evalsuite.models import display_name

    for stage in ("stage-1", "stage-2"):
        shutil.copytree(micro_ttt_dir, tmp_path / "run" / stage / "final")
    assert display_name(tmp_path / "run" / "stage-1" / "final") == "stage-1/final"
    assert display_name(tmp_path / "run" / "checkpoints" / "step-0000300") == "run/step-0000300"
    assert display_name(micro_ttt_dir) == micro_ttt_dir.name
    db = str(tmp_path / "s.db")
    common = ["run", "--task", "ppl_vs_length", "--corpus", str(small_corpus), "--lengths", "32", "--limit", "1",
              "--db", db, "--no-progress"]
    assert main([*common, "--model", f"ttt:{tmp_path / 'run' / 'stage-1' / 'final'}"]) == 0
    assert main([*common, "--model", f"ttt:{tmp_path / 'run' / 'stage-2' / 'final'}", "--name", "ttt stage 2"]) == 0
    runs = Store(db).runs()
    assert runs["model_id"].tolist() == ["ttt:stage-1/final", "ttt stage 2"]
    assert runs["model_hash"].nunique() == 1  # the same weights: one hash, whatever the label


def test_every_table_fits_an_80_column_terminal_and_has_machine_formats(tmp_path, capsys, monkeypatch):
    import io
    import json as json_module

    import pandas as pd

    monkeypatch.setenv("COLUMNS", "80")
    db = str(tmp_path / "s.db")
    assert main(["run", "--task", "ppl_vs_length", "--limit", "1", "--lengths", "256,512", "--db", db,
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 80
    assert "degradation_pct" in out  # whole names: the table is stacked, one value per line
    assert main(["show", "1", "--db", db, "--format", "csv"]) == 0
    rows = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(rows.columns) == ["bin", "metric", "value", "ci_low", "ci_high", "n"] and len(rows) == 8
    assert main(["runs", "--db", db, "--format", "json"]) == 0
    (run,) = json_module.loads(capsys.readouterr().out)
    assert run["id"] == 1 and run["model"] == "tiny-ttt" and run["status"] == "finished"
    assert main(["list", "--format", "markdown"]) == 0
    assert "| ppl_vs_length | 1.0 | ppl_vs_length |" in capsys.readouterr().out
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["show", "1", "--db", db]) == 0
    wide = capsys.readouterr().out
    assert "cum_ppl" in wide and "length=512" in wide.split("cum_ppl")[1]  # one row per bin when it fits
