"""End to end on the tiny curriculum: stage 2 refuses the stage-1 checkpoint until the gate promotes it; --force
starts anyway and is recorded; a human approval promotes a failing checkpoint."""
import shutil
from pathlib import Path

import pytest
import yaml

from evalsuite import gate_db
from evalsuite.checkpoint_id import checkpoint_identity
from evalsuite.cli import main as evalsuite
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


def test_stage_refusal_gate_and_force(curriculum, tmp_path, capsys, conversations_jsonl):
    db = str(tmp_path / "results.db")
    cfg = str(curriculum)
    assert ttt_omni(["train", cfg, "--stage", "1", "--db", db]) == 0
    final = tmp_path / "s1" / "final"
    _, model_hash = checkpoint_identity(final)

    assert ttt_omni(["train", cfg, "--stage", "2", "--db", db]) == 2
    assert "--stage 2 needs --from" in capsys.readouterr().err
    assert ttt_omni(["train", cfg, "--stage", "2", "--from", str(final), "--db", db]) == 2
    err = capsys.readouterr().err
    assert "no gate decision at stage 1" in err and model_hash in err and not (tmp_path / "s2").exists()

    # the gate with only the monitor as evidence: the ppl rule is "not evaluated" -> incomplete, still refused
    assert evalsuite(["gate", "--checkpoint", str(final), "--stage", "1", "--config", cfg, "--db", db]) == 1
    assert gate_db.latest(db, model_hash, 1)["outcome"] == "incomplete"
    assert ttt_omni(["train", cfg, "--stage", "2", "--from", str(final), "--db", db]) == 2
    assert "'incomplete'" in capsys.readouterr().err

    # evidence from a real evaluation run, then the gate decides on all rules
    corpus = tmp_path / "eval.txt"
    corpus.write_text(Path(conversations_jsonl).read_text()[:6000])
    assert evalsuite(["run", "--task", "ppl_vs_length", "--model", f"ttt:{final}", "--corpus", str(corpus),
                      "--lengths", "64,128", "--db", db, "--no-progress"]) == 0
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
