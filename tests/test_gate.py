"""Gate rules on hand-made store contents: pass, fail, missing evidence, optional human data, CI bounds, human
approval and forced decisions; what evidence a rule accepts (task version, data, n, lengths) and the probe of a
one-document custom corpus that turned a fail into a pass; bad rules name the file, stage, rule and field."""
import json

import pytest

from evalsuite import gate, gate_db
from evalsuite.cli import main as evalsuite
from evalsuite.corpus import bundled_books, corpus_hash, user_corpus
from evalsuite.store import Store

EVAL_BOOKS = {"source": "books:eval", "documents": 5, "hash": corpus_hash(bundled_books("eval"))}
VERSIONS = {"ppl_vs_length": "1.0", "degeneration": "1.0"}  # the registered task specs' versions

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
            environment=None, data=EVAL_BOOKS, version=None):
    """A run as the runner stores it: by default on the task's own dataset (the eval books) at its version."""
    run_id = store.start_run(task=task, task_version=version or VERSIONS.get(task, "1"), task_kind=task,
                             model_id=model_id, model_hash=model_hash, model_spec=model_id,
                             config=config or {"i": len(store.runs())}, seed=0, n_units=0, code_version="test",
                             environment=environment, data=data if task in VERSIONS else None, resume=False)
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


def test_human_preference_counts_for_the_checkpoint_its_key_binds(setup):
    from evalsuite.humaneval.results import write_rows

    store, cfg = setup
    add_run(store, "ppl_vs_length", [dict(name="degradation_pct", bin="length=256", value=5.0)])
    add_run(store, "train_monitor", [dict(name="nonfinite_values", value=0), dict(name="W1_maxabs", value=1.0)])
    rows = [dict(name="win_rate", bin="ttt vs base", value=0.4, ci_low=0.3, ci_high=0.5, n=40)]
    unbound = {"bundle_id": "b0", "task": "degeneration", "systems": ["ttt", "base"]}
    write_rows(store.url, unbound, rows)  # outputs from JSONL without --checkpoints: no checkpoint's evidence
    assert by_name(gate.evaluate(store, HASH, cfg, 1))["human"].status == "not evaluated"
    write_rows(store.url, {**unbound, "bundle_id": "b1", "checkpoints": {"ttt": HASH, "base": "b" * 16}}, rows)
    add_run(store, "degeneration", [], model_id="ttt:ckpt")  # a later run names the checkpoint otherwise
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
    ("{task: t, metric: m, op: '~', threshold: 1}", "op: expected one of '<', '<=', '>', '>=' or '==', got '~'"),
    ("{task: t, metric: m, op: '<'}", "threshold: required"),
    ("{task: t, metric: m, op: '<', threshold: 1, colour: red}", "colour: unknown key; expected one of name, task"),
    ("{task: t, metric: m, op: '<', threshold: one}", "threshold: expected a number, got 'one'"),
    ("{task: t, metric: m, op: '<', threshold: 1, optional: 'yes'}", "optional: expected true or false, got 'yes'"),
    ("{task: t, metric: m, op: '<', threshold: 1, min_n: 0}", "min_n: expected a number >= 1, got 0"),
    ("{task: t, metric: m, op: '<', threshold: 1, lengths: [1k, 99999999999999999999k]}", "expected at most"),
])
def test_bad_rules_are_named(tmp_path, rule, message):
    path = tmp_path / "c.yaml"
    path.write_text(f"output_dir: x\nstages:\n  - stage: 1\n    gate:\n      rules:\n        - {rule}\n")
    with pytest.raises(gate.GateError, match="stage 1, rule 1") as e:
        gate.stage_rules(path, 1)
    assert message in str(e.value) and "\n" not in str(e.value)


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


def _one_rule(tmp_path, rule: str, context: int = 128):
    path = tmp_path / "one.yaml"
    path.write_text(f"output_dir: x\nstages:\n  - stage: 1\n    context: {context}\n    gate:\n      rules:\n"
                    f"        - {rule}\n")
    return path


def test_a_one_document_custom_corpus_does_not_turn_a_fail_into_a_pass(tmp_path, capsys):
    """The probe: the tiny model fails `degradation < X` on the eval books; a later run on a corpus of one document
    ('the cat sat on the mat.' x 400) would pass it. The rule's evidence is the task's own dataset: the custom run is
    named and refused, and the decision stays a fail."""
    from evalsuite.checkpoint_id import checkpoint_identity
    from evalsuite.runner import run_task

    store = Store(tmp_path / "r.db")
    books = run_task("ppl_vs_length", "tiny", store=store, lengths=[64, 128], progress=False).run_id
    cat = tmp_path / "cat.txt"
    cat.write_text("the cat sat on the mat. " * 400)
    custom = run_task("ppl_vs_length", "tiny", store=store, corpus=str(cat), lengths=[64, 128], progress=False).run_id

    def degradation(run_id):
        return store.metrics(run_id=run_id, name="degradation_pct", bin="length=128")["value"].iloc[0]
    threshold = round(degradation(books) - 1, 2)
    assert degradation(custom) < threshold  # the custom corpus passes where the books fail
    rule = ("{name: degradation, task: ppl_vs_length, metric: degradation_pct, bin: 'length={context}', op: '<', "
            f"threshold: {threshold}")
    _, model_hash = checkpoint_identity("tiny")
    result = gate.evaluate(store, model_hash, _one_rule(tmp_path, rule + ", min_n: 5, lengths: [64, '{context}']}"), 1)
    r = result.rules[0]
    assert result.outcome == "fail" and r.run_id == books
    assert r.evidence["data"].startswith("books:eval (5 documents") and r.evidence["lengths"] == [64, 128]
    assert r.accepts == {"task_version": "1.0", "data": f"books:eval (hash {EVAL_BOOKS['hash']})", "min_n": 5,
                         "lengths": [64, 128]}
    assert f"run {custom}: data corpus:{cat} (1 document, hash" in r.detail
    # what the gate did before rules said which evidence counts: the newest run, whatever it read
    assert gate.evaluate(store, model_hash, _one_rule(tmp_path, rule + ", data: any}"), 1).outcome == "pass"
    # the command line shows the evidence used and what the rule accepts, and records them with the decision
    cfg = _one_rule(tmp_path, rule + "}")
    assert evalsuite(["gate", "--checkpoint", "tiny", "--stage", "1", "--config", str(cfg), "--db",
                      str(tmp_path / "r.db")]) == 1
    out = capsys.readouterr().out
    assert f"run {books}: ppl_vs_length v1.0.degradation_pct" in out and "books:eval (5 documents" in out
    assert "accepts: v1.0, data books:eval" in out and f"(hash {model_hash}, verified)" in out
    decision = gate_db.latest(str(tmp_path / "r.db"), model_hash, 1)
    assert decision["outcome"] == "fail" and decision["verified_at"] is not None
    assert '"data": "books:eval (5 documents' in decision["rules"]
    assert evalsuite(["gate", "--checkpoint", "tiny", "--stage", "1", "--config", str(cfg), "--db",
                      str(tmp_path / "r.db"), "--format", "json"]) == 1
    (row,) = json.loads(capsys.readouterr().out)  # for programs: the plain fields, the messages on stderr
    assert (row["result"], row["run_id"], row["metric"]) == ("fail", books, "degradation_pct")
    assert row["threshold"].startswith("value < ") and row["value"] > float(row["threshold"][8:])


def test_what_a_rule_accepts_as_evidence(tmp_path):
    store = Store(tmp_path / "r.db")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("some text " * 50)
    mine = {"source": f"corpus:{corpus}", "documents": 1, "hash": corpus_hash(user_corpus(corpus))}
    row = [dict(name="ppl", bin="length=64", value=10.0, n=5)]
    lengths = {"lengths": [64, 128]}

    def rule(extra=""):
        path = _one_rule(tmp_path, f"{{name: r, task: ppl_vs_length, metric: ppl, bin: 'length=64', op: '<', "
                                   f"threshold: 20{extra}}}")
        return gate.evaluate(store, HASH, path, 1).rules[0]

    old = add_run(store, "ppl_vs_length", row, version="0.9", config=lengths)
    assert rule().status == "not evaluated" and "task version 0.9, expected 1.0" in rule().detail
    assert rule(", task_version: any").run_id == old and rule(", task_version: '0.9'").status == "pass"
    other = add_run(store, "ppl_vs_length", row, data=mine, config=lengths)
    assert rule().status == "not evaluated"  # by default only the task's own dataset counts
    assert f"run {other}: data corpus:{corpus} (1 document" in rule().detail
    assert rule(f", data: {corpus}").run_id == other and rule(f", data: 'sha256:{mine['hash']}'").run_id == other
    assert rule(", data: any").run_id == other
    books = add_run(store, "ppl_vs_length", [dict(name="ppl", bin="length=64", value=10.0, n=3)], config=lengths)
    assert rule().run_id == books and rule(", data: books:eval").run_id == books
    assert rule(", min_n: 4").status == "not evaluated" and "n=3, expected at least 4" in rule(", min_n: 4").detail
    assert rule(", lengths: [64, '{context}']").run_id == books
    refused = rule(", lengths: [32, 128]")
    assert refused.status == "not evaluated" and "lengths [64, 128], expected [32, 128]" in refused.detail
    # a task that is not registered here: its dataset is unknown, so the rule must say which data counts
    add_run(store, "mytask", [dict(name="m", value=0.5)], data=EVAL_BOOKS)
    r = gate.evaluate(store, HASH, _one_rule(tmp_path, "{task: mytask, metric: m, op: '<', threshold: 1}"), 1).rules[0]
    assert r.status == "not evaluated" and "is not registered here" in r.detail
    path = _one_rule(tmp_path, "{task: mytask, metric: m, op: '<', threshold: 1, data: any}")
    assert gate.evaluate(store, HASH, path, 1).rules[0].status == "pass"
    with pytest.raises(gate.GateError, match="data '/no/such/corpus': corpus /no/such/corpus: no such file"):
        gate.evaluate(store, HASH, _one_rule(tmp_path, "{task: t, metric: m, op: '<', threshold: 1, "
                                                        "data: /no/such/corpus}"), 1)
