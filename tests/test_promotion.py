"""A decision is bound to the exact weights: the gate and promotion read every byte of the checkpoint they decide on,
so weights rewritten under a restored mtime, or a forged entry in the hash cache, cannot borrow another checkpoint's
passing decision (the probes of issue 15)."""
import os
import shutil

import pytest
from safetensors.torch import load_file, save_file

from evalsuite import gate_db
from evalsuite.checkpoint_id import checkpoint_identity
from evalsuite.cli import main as evalsuite
from evalsuite.models import content_hash
from evalsuite.promotion import StageRefused, check_stage
from evalsuite.runner import run_task
from evalsuite.store import Store
from ttt_omni.resources import bundled

CURRICULUM = """
output_dir: runs/x
stages:
  - stage: 1
    context: 128
    gate:
      rules:
        - {name: degradation, task: ppl_vs_length, metric: degradation_pct, bin: "length={context}", op: "<",
           threshold: 1000}
  - stage: 2
    context: 256
"""


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("TTT_OMNI_CACHE", str(tmp_path / "cache"))
    cfg = tmp_path / "curriculum.yaml"
    cfg.write_text(CURRICULUM)
    for name in ("tiny-ttt", "tiny-baseline"):
        shutil.copytree(bundled("checkpoints", name), tmp_path / name)
    return tmp_path, str(cfg), str(tmp_path / "r.db")


def nan_weights_same_size_same_mtime(ckpt) -> int:
    """Writes NaN into a TTT weight of model.safetensors in place (same size) and sets the mtime back, as
    `touch -m -r` would; returns how many values are NaN now."""
    path = ckpt / "model.safetensors"
    before = os.stat(path)
    weights = load_file(path)
    name = next(k for k in weights if k.endswith("inner.W1"))
    weights[name][:] = float("nan")
    save_file(weights, path, metadata={"format": "pt"})
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    return weights[name].numel()


def test_weights_rewritten_under_a_restored_mtime_lose_the_decision(world, capsys):
    tmp_path, cfg, db = world
    ckpt = tmp_path / "tiny-ttt"
    run_task("ppl_vs_length", f"ttt:{ckpt}", store=Store(db), lengths=[64, 128], progress=False)
    assert evalsuite(["gate", "--checkpoint", str(ckpt), "--stage", "1", "--config", cfg, "--db", db]) == 0
    _, passed = checkpoint_identity(ckpt, verify=True)
    assert "promoted" in check_stage(cfg, 2, str(ckpt), db=db)

    assert nan_weights_same_size_same_mtime(ckpt) > 0
    _, cached = checkpoint_identity(ckpt)  # even the evaluation's cache misses: the change time moved
    _, verified = checkpoint_identity(ckpt, verify=True)
    assert cached == verified != passed
    capsys.readouterr()
    assert evalsuite(["gate", "--checkpoint", str(ckpt), "--stage", "1", "--config", cfg, "--db", db]) == 1
    assert f"hash {verified}, verified" in capsys.readouterr().out
    assert gate_db.latest(db, verified, 1)["outcome"] == "incomplete"  # the NaN weights have no evidence
    with pytest.raises(StageRefused, match=f"refuses .*hash {verified}.*'incomplete'"):
        check_stage(cfg, 2, str(ckpt), db=db)


def test_a_forged_hash_cache_does_not_promote_other_weights(world):
    tmp_path, cfg, db = world
    ttt, baseline = tmp_path / "tiny-ttt", tmp_path / "tiny-baseline"
    _, passing = checkpoint_identity(ttt, verify=True)
    gate_db.record(db, model_hash=passing, checkpoint=str(ttt), stage=1, curriculum=cfg, outcome="pass",
                   decided_by="gate", reason="all rules pass", rules=[])
    _, real = checkpoint_identity(baseline)
    for entry in (tmp_path / "cache" / "hashes").iterdir():  # one file written into the cache...
        if entry.read_text().strip() == real:
            entry.write_text(passing)
    assert content_hash(baseline) == passing  # ...gives the baseline the TTT checkpoint's passing hash
    with pytest.raises(StageRefused, match=f"refuses {baseline} \\(hash {real}\\): no gate decision"):
        check_stage(cfg, 2, str(baseline), db=db)
    assert content_hash(baseline) == real  # the verified read also repaired the cache entry
    assert check_stage(cfg, 2, str(ttt), db=db).startswith("promoted: decision")


def test_a_forced_promotion_records_the_hash_it_verified(world):
    tmp_path, cfg, db = world
    line = check_stage(cfg, 2, str(tmp_path / "tiny-baseline"), db=db, force=True, reason="deadline")
    _, real = checkpoint_identity(tmp_path / "tiny-baseline", verify=True)
    decision = gate_db.latest(db, real, 1)
    assert real in line and decision["outcome"] == "forced" and decision["verified_at"] is not None
