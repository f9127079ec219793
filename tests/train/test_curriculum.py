"""End to end on the tiny curriculum: stage 2 refuses the stage-1 checkpoint until the gate promotes it; --force
starts anyway and is recorded; a human approval promotes a failing checkpoint; a curriculum is never trained without
--stage. The training monitor is evidence only for the weights it watched."""
import shutil
from pathlib import Path

import pytest
import yaml

from evalsuite import gate_db
from evalsuite.checkpoint_id import checkpoint_identity
from evalsuite.cli import main as evalsuite
from evalsuite.store import Store
from ttt_omni.cli import main as ttt_omni

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "num_key_value_heads": 1, "ttt_layers": [1], "mini_batch_size": 16}


@pytest.fixture
def curriculum(tmp_path, conversations_jsonl):
    """configs/tiny-curriculum.yaml (its stages and gate rules) on the test corpus, 4 steps a stage."""
    data = yaml.safe_load((REPO / "configs" / "tiny-curriculum.yaml").read_text())
    data.update(jsonl=str(conversations_jsonl), books_split=None, bpe_vocab_size=300, batch_size=2,
                model_overrides=TINY_MODEL, save_every=4, monitor_every=2, output_dir=str(tmp_path / "s1"))
    for s in data["stages"]:
        s.update(steps=4, output_dir=str(tmp_path / f"s{s['stage']}"), context=min(s["context"], 128))
    path = tmp_path / "curriculum.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_stage_refusal_gate_and_force(curriculum, tmp_path, capsys):
    db = str(tmp_path / "results.db")
    cfg = str(curriculum)
    assert ttt_omni(["train", cfg, "--stage", "1", "--db", db]) == 0
    final = tmp_path / "s1" / "final"
    _, model_hash = checkpoint_identity(final)

    assert ttt_omni(["train", cfg, "--stage", "2", "--db", db]) == 2
    assert "--stage 2 needs --from" in capsys.readouterr().err
    # --from without --stage: the curriculum is not trained past its gate
    assert ttt_omni(["train", cfg, "--from", str(final), "--db", db]) == 2
    assert "is a curriculum (stages [1, 2, 3, 4]): choose the stage with --stage N" in capsys.readouterr().err
    assert ttt_omni(["train", cfg, "--stage", "2", "--from", str(final), "--db", db]) == 2
    err = capsys.readouterr().err
    assert "no gate decision at stage 1" in err and model_hash in err and not (tmp_path / "s2").exists()

    # the gate with only the monitor as evidence: the ppl rule is "not evaluated" -> incomplete, still refused
    assert evalsuite(["gate", "--checkpoint", str(final), "--stage", "1", "--config", cfg, "--db", db]) == 1
    assert gate_db.latest(db, model_hash, 1)["outcome"] == "incomplete"
    assert ttt_omni(["train", cfg, "--stage", "2", "--from", str(final), "--db", db]) == 2
    assert "'incomplete'" in capsys.readouterr().err

    # evidence from a real evaluation run on the task's own dataset (the eval books), then the gate decides
    assert evalsuite(["run", "--task", "ppl_vs_length", "--model", f"ttt:{final}", "--lengths", "64,128", "--db", db,
                      "--no-progress"]) == 0
    code = evalsuite(["gate", "--checkpoint", str(final), "--stage", "1", "--config", cfg, "--db", db])
    decision = gate_db.latest(db, model_hash, 1)
    assert decision["outcome"] in ("pass", "fail") and code == (0 if decision["outcome"] == "pass" else 1)
    if decision["outcome"] == "fail":  # a person may promote it anyway, with a name and a reason
        assert evalsuite(["gate", "--checkpoint", str(final), "--stage", "1", "--config", cfg, "--db", db,
                          "--approve", "--by", "Ada", "--reason", "tiny model: degradation is noise"]) == 0
    capsys.readouterr()
    assert ttt_omni(["train", cfg, "--stage", "2", "--from", str(final), "--db", db]) == 0
    assert "promoted: decision" in capsys.readouterr().out and (tmp_path / "s2" / "final").is_dir()

    # a rejection takes the promotion back; --force overrides it and is recorded with the evidence
    assert evalsuite(["gate", "--checkpoint", str(final), "--stage", "1", "--config", cfg, "--db", db,
                      "--reject", "--by", "Ada", "--reason", "listening test found loops"]) == 1
    assert ttt_omni(["train", cfg, "--stage", "2", "--from", str(final), "--db", db]) == 2
    assert "'rejected'" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "s2")  # a fresh stage-2 run (an existing run directory is refused, never overwritten)
    assert ttt_omni(["train", cfg, "--stage", "2", "--from", str(final), "--db", db, "--force",
                     "--reason", "deadline"]) == 0
    forced = gate_db.latest(db, model_hash, 1)
    assert forced["outcome"] == "forced" and forced["reason"] == "deadline" and "W1_maxabs" in forced["rules"]
    outcomes = list(gate_db.history(db, model_hash=model_hash)["outcome"])
    assert outcomes[0] == "incomplete" and outcomes[-2:] == ["rejected", "forced"]


def test_the_monitor_is_evidence_only_for_the_weights_it_watched(tiny_train_config, tmp_path, capsys):
    """The probe: NaN written into RUN/final after training; the monitor.csv beside it (no NaN/Inf while training)
    used to be attached to the new weights' hash, so 'no NaN/Inf' passed for weights full of NaN."""
    from safetensors.torch import load_file, save_file

    from ttt_omni.train.trainer import Trainer

    run = tmp_path / "run"
    final = Path(Trainer(tiny_train_config(steps=4, save_every=2, monitor_every=1)).train()["final"])
    rules = ("        - {name: finite, task: train_monitor, metric: nonfinite_values, op: '==', threshold: 0}\n"
             "        - {name: steps, task: train_monitor, metric: last_step, op: '>=', threshold: 0}\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"output_dir: x\nstages:\n  - stage: 1\n    gate:\n      rules:\n{rules}")
    db = str(tmp_path / "r.db")
    gate = ["gate", "--stage", "1", "--config", str(cfg), "--db", db, "--checkpoint"]
    assert evalsuite(gate + [str(final)]) == 0
    _, watched = checkpoint_identity(final)
    assert gate_db.latest(db, watched, 1)["outcome"] == "pass"

    weights = load_file(final / "model.safetensors")
    name = next(k for k in weights if k.endswith("inner.W1"))
    weights[name][:] = float("nan")
    save_file(weights, final / "model.safetensors", metadata={"format": "pt"})
    _, changed = checkpoint_identity(final)
    capsys.readouterr()
    assert evalsuite(gate + [str(final)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "the training monitor beside the checkpoint was not used" in out and "written for other weights" in out
    decision = gate_db.latest(db, changed, 1)
    assert decision["outcome"] == "incomplete" and "not used" in decision["reason"]
    assert evalsuite(gate + [str(final), "--monitor", str(run / "monitor.csv")]) == 2  # asked for: refused
    err = capsys.readouterr().err.strip()
    assert f"not for checkpoint hash {changed}" in err and "\n" not in err

    # a checkpoint saved mid-run gets the monitor as it stood then (steps 0 and 1), not the rows written later
    mid = run / "checkpoints" / "step-0000002" / "model"
    assert evalsuite(gate + [str(mid)]) == 0
    _, mid_hash = checkpoint_identity(mid)
    rows = Store(db).metrics(task="train_monitor", model_hash=mid_hash, name="last_step")
    assert rows["value"].tolist() == [1.0]
    # a monitor edited after the weights were saved is refused
    (run / "monitor.csv").write_text((run / "monitor.csv").read_text().replace("step", "stp", 1))
    assert evalsuite(gate + [str(mid), "--monitor", str(run / "monitor.csv")]) == 2
    assert "was changed after the trainer saved checkpoints/step-0000002/model" in capsys.readouterr().err
