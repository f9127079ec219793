"""Gate rules on hand-made store contents: pass, fail, missing evidence, optional human data, CI bounds, human
approval and forced decisions; bad rules name the file, stage and rule."""
import pytest

from evalsuite import gate, gate_db
from evalsuite.cli import main as evalsuite
from evalsuite.store import Store

HASH = "c0ffee0000000001"
CURRICULUM = """
output_dir: runs/x
stages:
  - stage: 1
    context: 256
    gate:
      rules:
        - {name: degradation, task: ppl_vs_length, metric: degradation_pct, bin: "length={context}", op: "<",
           threshold: 20}
        - {name: finite, task: train_monitor, metric: nonfinite_values, op: "==", threshold: 0}
        - {name: w1, task: train_monitor, metric: W1_maxabs, op: "<", threshold: 10}
        - {name: human, task: human_pref, metric: win_rate, bin: "{model_id} vs *", op: ">=", threshold: 0.5,
           optional: true}
  - stage: 2
    context: 512
    gate:
      rules:
        - {name: upper CI, task: ppl_vs_length, metric: degradation_pct, bin: "length=*", op: "<", threshold: 20,
           use: ci_high}
"""


@pytest.fixture
def setup(tmp_path):
    path = tmp_path / "curriculum.yaml"
    path.write_text(CURRICULUM)
    return Store(tmp_path / "r.db"), path


def add_run(store, task, rows, model_hash=HASH, model_id="ttt:ckpt", config=None, status="finished",
            environment=None):
    run_id = store.start_run(task=task, task_version="1", task_kind=task, model_id=model_id, model_hash=model_hash,
                             model_spec=model_id, config=config or {"i": len(store.runs())}, seed=0, n_units=0,
                             code_version="test", environment=environment, resume=False)
    store.add_metrics(run_id, rows)
    store.finish_run(run_id, status)
    return run_id


def by_name(result):
    return {r.rule.name: r for r in result.rules}


def test_pass_fail_and_missing_evidence(setup):
    store, cfg = setup
    result = gate.evaluate(store, HASH, cfg, 1)
    assert result.outcome == "incomplete"  # nothing stored: not evaluated, never a pass
    assert {r.status for r in result.rules} == {"not evaluated"}

    add_run(store, "ppl_vs_length", [dict(name="degradation_pct", bin="length=256", value=12.0, ci_low=8.0,
                                          ci_high=25.0, n=4), dict(name="degradation_pct", bin="length=512",
                                                                   value=90.0)])
    add_run(store, "train_monitor", [dict(name="nonfinite_values", value=0), dict(name="W1_maxabs", value=3.5)])
    add_run(store, "ppl_vs_length", [dict(name="degradation_pct", bin="length=256", value=1.0)],
            model_hash="other")  # another checkpoint's evidence does not count
    add_run(store, "ppl_vs_length", [dict(name="degradation_pct", bin="length=256", value=1.0)],
            status="failed")  # nor does an unfinished run
    result = gate.evaluate(store, HASH, cfg, 1)
    rules = by_name(result)
    assert result.outcome == "pass" and rules["human"].status == "not evaluated"  # optional: no human data yet
    assert (rules["degradation"].value, rules["degradation"].ci_low, rules["degradation"].ci_high) == (12, 8, 25)
    assert rules["degradation"].bin == "length=256"

    add_run(store, "train_monitor", [dict(name="nonfinite_values", value=2), dict(name="W1_maxabs", value=float("nan"))])
    rules = by_name(result := gate.evaluate(store, HASH, cfg, 1))  # the latest run is the evidence
    assert result.outcome == "fail"
    assert rules["finite"].status == "fail" and "2 is not == 0" in rules["finite"].detail
    assert rules["w1"].status == "fail" and rules["w1"].detail == "value is NaN"

    # stage 2 holds the CI's upper bound to the threshold, over every matching bin (the worst is shown)
    s2 = by_name(gate.evaluate(store, HASH, cfg, 2))["upper CI"]
    assert s2.status == "fail" and s2.bin == "length=512"


def test_evidence_from_different_environments_is_noted_in_the_decision(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("output_dir: x\nstages:\n  - stage: 1\n    gate:\n      rules:\n"
                   "        - {task: ppl_vs_length, metric: ppl, op: '<', threshold: 100}\n"
                   "        - {task: degeneration, metric: rep_4, op: '<', threshold: 1}\n"
                   "        - {task: train_monitor, metric: nonfinite_values, op: '==', threshold: 0}\n")
    store = Store(tmp_path / "r.db")
    env = {"transformers": "5.24.0", "device": "cpu: X", "dtype": "float32"}
    add_run(store, "ppl_vs_length", [dict(name="ppl", value=50.0)], environment=env)
    add_run(store, "degeneration", [dict(name="rep_4", value=0.1)], environment=env)
    add_run(store, "train_monitor", [dict(name="nonfinite_values", value=0)])  # training, not a measurement here
    assert gate.evaluate(store, HASH, cfg, 1).notes == []
    add_run(store, "degeneration", [dict(name="rep_4", value=0.1)], environment={**env, "transformers": "5.23.0"})
    result = gate.evaluate(store, HASH, cfg, 1)
    assert result.outcome == "pass"
    assert result.notes == ["the evidence was measured in different environments: "
                            "transformers: 5.24.0 (run 1), 5.23.0 (run 4)"]
    gate.decide(store, result, "ckpt")
    assert "5.23.0 (run 4)" in gate_db.latest(store, HASH, 1)["reason"]


def test_human_preference_links_through_the_rated_run(setup):
    store, cfg = setup
    add_run(store, "ppl_vs_length", [dict(name="degradation_pct", bin="length=256", value=5.0)])
    add_run(store, "train_monitor", [dict(name="nonfinite_values", value=0), dict(name="W1_maxabs", value=1.0)])
    add_run(store, "degeneration", [], model_id="ttt:ckpt")  # the outputs the raters saw
    add_run(store, "human_pref", [dict(name="win_rate", bin="ttt:ckpt vs base", value=0.4, ci_low=0.3, ci_high=0.5,
                                       n=40)], model_hash="synthetic", config={"task": "degeneration",
                                                                               "systems": ["ttt:ckpt", "base"]})
    result = gate.evaluate(store, HASH, cfg, 1)
    assert by_name(result)["human"].status == "fail" and result.outcome == "fail"
    # the same system name with other weights: that preference is not this checkpoint's evidence
    assert by_name(gate.evaluate(store, "f" * 16, cfg, 1))["human"].status == "not evaluated"


def test_decisions_human_approval_and_forced(setup):
    store, cfg = setup
    result = gate.evaluate(store, HASH, cfg, 1)
    first = gate.decide(store, result, "runs/x/final")
    d = gate_db.latest(store, HASH, 1)
    assert d["id"] == first and d["outcome"] == "incomplete" and "not evaluated" in d["reason"]
    with pytest.raises(gate_db.DecisionError, match="name of the person deciding and a reason"):
        gate.decide(store, result, "runs/x/final", outcome="approved", by="Ada", reason=" ")
    gate.decide(store, result, "runs/x/final", outcome="approved", by="Ada", reason="known-noisy metric")
    gate.decide(store, result, "runs/x/final", outcome="forced", by="Bob", reason="deadline")
    hist = gate_db.history(store, model_hash=HASH, stage=1)
    assert list(hist["outcome"]) == ["incomplete", "approved", "forced"]
    assert list(hist["decided_by"]) == ["gate", "Ada", "Bob"]
    assert gate_db.latest(store, HASH, 2) is None
    with pytest.raises(gate_db.DecisionError, match="not one of"):
        gate_db.record(store, model_hash=HASH, checkpoint="x", stage=1, curriculum="c", outcome="maybe",
                       decided_by="a", reason="b", rules=[])


@pytest.mark.parametrize("rule, message", [
    ("{task: t, metric: m, op: '~', threshold: 1}", "op '~' is not one of"),
    ("{task: t, metric: m, op: '<'}", "`threshold` is required"),
    ("{task: t, metric: m, op: '<', threshold: 1, colour: red}", "unknown key(s) ['colour']"),
    ("{task: t, metric: m, op: '<', threshold: one}", "threshold must be a number"),
])
def test_bad_rules_are_named(tmp_path, rule, message):
    path = tmp_path / "c.yaml"
    path.write_text(f"output_dir: x\nstages:\n  - stage: 1\n    gate:\n      rules:\n        - {rule}\n")
    with pytest.raises(gate.GateError, match="stage 1, rule 1") as e:
        gate.stage_rules(path, 1)
    assert message in str(e.value)


def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(CURRICULUM)
    assert evalsuite(["gate", "--checkpoint", str(tmp_path / "nope"), "--stage", "1"]) == 2
    assert "not a Hugging Face model directory" in capsys.readouterr().err
    assert evalsuite(["gate", "--checkpoint", "x", "--stage", "1", "--approve"]) == 2
    assert "--approve needs --by NAME and --reason TEXT" in capsys.readouterr().err


@pytest.mark.parametrize("curriculum", ["configs/curriculum.yaml", "configs/tiny-curriculum.yaml"])
def test_shipped_rules_name_metrics_their_tasks_produce(curriculum):
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent
    for stage in (1, 2, 3, 4):
        rules, _ = gate.stage_rules(root / curriculum, stage)
        for rule in rules:
            spec_file = root / "tasks" / f"{rule.task}.yaml"
            if spec_file.is_file():  # train_monitor and human_pref rows come from the trainer and the raters
                assert rule.metric in yaml.safe_load(spec_file.read_text())["metrics"], (curriculum, stage, rule)
