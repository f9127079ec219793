"""Sweeps end to end on tiny budgets: a two-trial grid lands in the store as ordinary runs, a worker killed with
kill -9 mid-trial is resumed with every point counted once, pruning stops a bad trial, and bad specs are refused."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

optuna = pytest.importorskip("optuna")  # the `sweep` extra

from evalsuite.cli import main as evalsuite_main  # noqa: E402
from evalsuite.store import Store  # noqa: E402
from evalsuite.sweep.spec import SweepSpecError, load_spec  # noqa: E402
from evalsuite.sweep.study import open_study, progress, run_worker  # noqa: E402
from ttt_omni.cli import main as ttt_main  # noqa: E402
from ttt_omni.data_manifest import books  # noqa: E402

from test_runner import SLOW_KIND  # noqa: E402


@pytest.fixture
def conversations(tmp_path):
    """A few short training conversations (tokenising all the bundled books would cost each trial ~20 s)."""
    path = tmp_path / "train.jsonl"
    text = books("train")[0].read()[:40_000]
    rows = [{"conversation_id": i, "turns": [{"speaker": "book", "text": text[i * 8000:(i + 1) * 8000]}]}
            for i in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_spec(tmp_path, conversations, study="two", objective="", pruning="{pruner: none}", extra=""):
    objective = objective or "{task: ppl_vs_length, metric: cum_ppl, bin: length=256, lengths: [256], limit: 1}"
    path = tmp_path / f"{study}.yaml"
    path.write_text(textwrap.dedent(f"""\
        study: {study}
        train: tiny-ttt
        set: {{steps: 4, context: 64, batch_size: 2, warmup: 1, monitor_every: 2, books_split: null,
              jsonl: {conversations}, tokenizer: bundled:checkpoints/tiny-ttt}}
        space:
          model_overrides.ttt_type: {{grid: [linear, mlp]}}
        seeds: [0]
        default: {{model_overrides.ttt_type: linear}}
        objective: {objective}
        pruning: {pruning}
        output_dir: {tmp_path}/runs/{{study}}
        heartbeat_s: 1
        """) + extra)
    return path


def test_two_trial_sweep_lands_in_the_store(tmp_path, conversations, capsys):
    db = tmp_path / "s.db"
    spec = write_spec(tmp_path, conversations)
    assert ttt_main(["sweep", str(spec), "--db", str(db), "--no-progress"]) == 0
    study = optuna.load_study(study_name="two", storage=f"sqlite:///{db}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert {t.params["model_overrides.ttt_type"] for t in study.trials} == {"linear", "mlp"}
    store = Store(db)
    for t in study.trials:
        run = store.run(t.user_attrs["eval_run_id"])  # the study links each trial to its evaluation run
        assert run["status"] == "finished" and run["task"] == "ppl_vs_length"
        assert run["config"]["sweep"] == {"study": "two", "trial": t.number, "params": t.params, "step": 4}
        assert store.metrics(run_id=run["id"], name="cum_ppl", bin="length=256")["value"].iloc[0] == t.value
        monitor = store.run(t.user_attrs["monitor_run_id"])  # and to its training monitor
        assert monitor["task"] == "train_monitor" and monitor["model_hash"] == run["model_hash"]
    # the same command again finds the study settled and runs nothing more
    assert ttt_main(["sweep", str(spec), "--db", str(db), "--no-progress"]) == 0
    assert len(optuna.load_study(study_name="two", storage=f"sqlite:///{db}").trials) == 2
    assert len(store.runs(task="ppl_vs_length")) == 2
    # and the report reads the study from the same database
    png = tmp_path / "two.png"
    assert evalsuite_main(["sweep", "report", "two", "--db", str(db), "--plot", str(png), "--format", "csv"]) == 0
    assert evalsuite_main(["sweep", "report", "two", "--db", str(db), "--plot", str(png)]) == 0
    assert png.stat().st_size > 0 and "ttt_type=linear" in capsys.readouterr().out
    assert evalsuite_main(["sweep", "report", "nope", "--db", str(db)]) == 2
    assert "no study 'nope'" in capsys.readouterr().err


def test_kill_9_mid_trial_then_resume_counts_every_trial_once(tmp_path, conversations):
    """The worker is killed inside the first trial's intermediate evaluation (after training to step 2); the resumed
    study retries that trial, which continues the training from its step-2 checkpoint and the evaluation run from
    its stored units."""
    db, log, tasks = tmp_path / "s.db", tmp_path / "ran.log", tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "slow.py").write_text(SLOW_KIND)
    (tasks / "slow.yaml").write_text(
        f"name: slow\nversion: 1\nkind: slow_count\nmetrics: [total]\nparams: {{log: '{log}', delay_ms: 20}}\n")
    spec_path = write_spec(tmp_path, conversations, study="killed", pruning="{pruner: none, every: 2}",
                           objective=f"{{task: slow, metric: total, include_paths: ['{tasks}']}}")
    log.write_text("")
    worker = subprocess.Popen([sys.executable, "-m", "ttt_omni.cli", "sweep", str(spec_path), "--db", str(db),
                               "--no-progress"], env={**os.environ, "SLOW_HANG_AFTER": "3"},
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "worker.err", "w"))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and worker.poll() is None and len(log.read_text().split()) < 3:
        time.sleep(0.1)
    assert worker.poll() is None, (tmp_path / "worker.err").read_text()[-3000:]
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    store = Store(db)
    killed_eval = store.runs(task="slow")
    assert len(killed_eval) == 1 and killed_eval["status"].iloc[0] == "running"
    assert len(store.done_units(int(killed_eval["id"].iloc[0]))) == 3

    spec = load_spec(spec_path)
    state = run_worker(spec, str(db), progress_bars=False, log=lambda message: None)
    assert state.done and state.settled == 2
    trials = open_study(spec, str(db)).trials
    states = [t.state for t in trials]
    assert states.count(optuna.trial.TrialState.FAIL) == 1 and states.count(optuna.trial.TrialState.COMPLETE) == 2
    killed = next(t for t in trials if t.state == optuna.trial.TrialState.FAIL)
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == killed.number)
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.params == killed.params
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.params["model_overrides.ttt_type"] for t in complete) == ["linear", "mlp"]
    # the killed evaluation was resumed (its 3 units kept), and every (trial, step) evaluated exactly once
    assert store.run(int(killed_eval["id"].iloc[0]))["status"] == "finished"
    assert len(log.read_text().split()) == 3 + 5 + 8 * 3  # killed try, its resumption, three more evaluations
    evals = store.runs(task="slow")
    blocks = sorted((c["sweep"]["trial"], c["sweep"]["step"]) for c in map(json.loads, evals["config"]))
    other = next(t.number for t in complete if t.number != retry.number)
    assert blocks == sorted([(killed.number, 2), (killed.number, 4), (other, 2), (other, 4)])
    assert (evals["status"] == "finished").all()
    # the retried training continued from its step-2 checkpoint: every step logged once
    train_log = (tmp_path / "runs" / "killed" / f"trial-{killed.number:04d}" / "train_log.csv").read_text()
    assert [int(line.split(",")[0]) for line in train_log.splitlines()[1:]] == [1, 2, 3, 4]


def test_ctrl_c_mid_training_is_one_line_and_the_next_worker_continues_the_trial(tmp_path, conversations, monkeypatch,
                                                                                 capfd):
    """Ctrl-C right after training step 3 is logged (its last checkpoint at step 2): exit 130 with one line and no
    traceback; the report reads the study; the next worker continues the trial from step 2 with every step logged
    once, in the files and in the stored monitor."""
    import ttt_omni.train.trainer as trainer_module

    db = tmp_path / "s.db"
    spec_path = write_spec(tmp_path, conversations, study="ctrlc", pruning="{pruner: none, every: 2}")
    real = trainer_module.append_csv

    def ctrl_c_after_step_3(path, row):
        real(path, row)
        if row.get("step") == 3 and not ctrl_c_after_step_3.done:
            ctrl_c_after_step_3.done = True
            raise KeyboardInterrupt
    ctrl_c_after_step_3.done = False
    monkeypatch.setattr(trainer_module, "append_csv", ctrl_c_after_step_3)
    assert ttt_main(["sweep", str(spec_path), "--db", str(db), "--no-progress"]) == 130
    err = capfd.readouterr().err
    assert err.strip().splitlines()[-1] == "ttt-omni sweep: interrupted"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert evalsuite_main(["sweep", "report", "ctrlc", "--db", str(db), "--plot", str(tmp_path / "c.png")]) == 0

    spec = load_spec(spec_path)
    assert run_worker(spec, str(db), progress_bars=False, log=lambda message: None).settled == 2
    trials = open_study(spec, str(db)).trials
    interrupted = trials[0]
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == interrupted.number)
    assert interrupted.state == optuna.trial.TrialState.FAIL and retry.state == optuna.trial.TrialState.COMPLETE
    assert retry.params == interrupted.params and not retry.system_attrs.get("retry_history")  # no retry spent
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 2
    run = tmp_path / "runs" / "ctrlc" / f"trial-{interrupted.number:04d}"
    assert [int(line.split(",")[0]) for line in (run / "train_log.csv").read_text().splitlines()[1:]] == [1, 2, 3, 4]
    monitor = pd.read_csv(run / "monitor.csv")
    assert not monitor.duplicated(["step", "layer"]).any() and sorted(set(monitor["step"])) == [0, 2]
    stored = Store(db).samples(retry.user_attrs["monitor_run_id"])
    assert not stored.duplicated(["unit", "name", "bin"]).any()
    assert len(stored[stored["unit"] == "monitor"]) == len(monitor) * (monitor.shape[1] - 2)
    assert sorted(set(stored[stored["unit"] == "train_log"]["bin"])) == [f"step={i}" for i in (1, 2, 3, 4)]


def test_median_pruner_stops_a_trial_at_an_intermediate_evaluation(tmp_path, conversations):
    db = tmp_path / "s.db"
    spec = load_spec(write_spec(tmp_path, conversations, study="pruned",
                                pruning="{pruner: median, every: 2, startup_trials: 1}"))
    state = run_worker(spec, str(db), progress_bars=False, log=lambda message: None)
    trials = open_study(spec, str(db)).trials
    assert state.done and progress(open_study(spec, str(db)), spec).settled == 2
    first, second = trials
    assert first.state == optuna.trial.TrialState.COMPLETE and set(first.intermediate_values) == {2}
    # the second is pruned exactly when its step-2 value is worse than the first's (the median of one)
    worse = second.intermediate_values[2] > first.intermediate_values[2]
    assert second.state == (optuna.trial.TrialState.PRUNED if worse else optuna.trial.TrialState.COMPLETE)


@pytest.mark.parametrize("change, message", [
    ("sampler: random\n", "trials: required with sampler random"),
    ("bogus: 1\n", "bogus: unknown key; expected one of study, train"),
    ("trials: 3\n", "trials: a grid runs every point x every seed (2)"),
])
def test_bad_specs_are_refused_naming_the_file_and_field(tmp_path, conversations, change, message):
    path = write_spec(tmp_path, conversations, extra=change)
    with pytest.raises(SweepSpecError, match=str(path).replace(".", r"\.")) as e:
        load_spec(path)
    assert message in str(e.value)


def test_a_space_field_the_trainer_does_not_have_is_refused(tmp_path, conversations):
    path = write_spec(tmp_path, conversations)
    path.write_text(path.read_text().replace("model_overrides.ttt_type:", "ttt_typo:")
                    .replace("default: {model_overrides.ttt_type: linear}", ""))
    with pytest.raises(SweepSpecError, match="'ttt_typo' is not a training option a sweep can set"):
        load_spec(path)
    path.write_text(path.read_text().replace("ttt_typo:", "model_overrides.ttt_type:").replace("[linear, mlp]",
                                                                                                "[linear, cubic]"))
    with pytest.raises(SweepSpecError, match="does not take the setting .*cubic.*expected one of"):
        load_spec(path)


def test_two_workers_share_one_study_and_run_each_point_once(tmp_path, conversations):
    db = tmp_path / "s.db"
    spec_path = write_spec(tmp_path, conversations, study="pair")
    workers = [subprocess.Popen([sys.executable, "-m", "ttt_omni.cli", "sweep", str(spec_path), "--db", str(db),
                                 "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs, errors = zip(*(w.communicate(timeout=600) for w in workers))
    assert [w.returncode for w in workers] == [0, 0], [e[-3000:] for e in errors]
    assert all("2/2 trials settled" in out for out in outputs)
    trials = optuna.load_study(study_name="pair", storage=f"sqlite:///{db}").trials
    assert sorted(t.params["model_overrides.ttt_type"] for t in trials) == ["linear", "mlp"]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    finals = [json.loads(c)["sweep"] for c in Store(db).runs(task="ppl_vs_length")["config"]]
    assert sorted(b["trial"] for b in finals if b["step"] == 4) == [0, 1]


def test_a_missing_spec_is_one_line(tmp_path, capsys):
    assert ttt_main(["sweep", str(tmp_path / "nope.yaml"), "--db", str(tmp_path / "s.db")]) == 2
    err = capsys.readouterr().err
    assert "sweep spec" in err and "not found" in err and "ablation-ttt-type" in err and len(err.splitlines()) == 1
