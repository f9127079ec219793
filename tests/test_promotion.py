"""A decision is bound to the exact weights: the gate, promotion and every evaluation read every byte of the
checkpoint, so weights rewritten under a restored mtime, or a forged entry in the old hash cache, cannot borrow another
checkpoint's passing decision or evidence (the probes of issues 15 and 24)."""
import hashlib
import os
import shutil

import pytest
from safetensors.torch import load_file, save_file

from evalsuite import gate_db
from evalsuite.checkpoint_id import checkpoint_identity
from evalsuite.cli import main as evalsuite
from evalsuite.errors import ModelSpecError
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
    _, passed = checkpoint_identity(ckpt)
    assert "promoted" in check_stage(cfg, 2, str(ckpt), db=db)

    assert nan_weights_same_size_same_mtime(ckpt) > 0
    _, verified = checkpoint_identity(ckpt)
    assert verified != passed
    capsys.readouterr()
    assert evalsuite(["gate", "--checkpoint", str(ckpt), "--stage", "1", "--config", cfg, "--db", db]) == 1
    assert f"hash {verified}, verified" in capsys.readouterr().out
    assert gate_db.latest(db, verified, 1)["outcome"] == "incomplete"  # the NaN weights have no evidence
    with pytest.raises(StageRefused, match=f"refuses .*hash {verified}.*'incomplete'"):
        check_stage(cfg, 2, str(ckpt), db=db)


def old_cache_entry(ckpt):
    """Where evalsuite kept a checkpoint's hash until issue 24: cache_dir()/hashes/<sha256 of its files' stats>."""
    stats = []
    for p in sorted(p for p in ckpt.rglob("*") if p.is_file() and not p.name.startswith(".")):
        st = p.stat()
        stats.append((str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev))
    return ckpt.parent / "cache" / "hashes" / hashlib.sha256(repr(stats).encode()).hexdigest()


def test_a_forged_hash_cache_entry_files_no_results_under_untested_weights(world):
    """Issue 24's attack: the hash of tampered, never-evaluated weights written into the good checkpoint's hash-cache
    entry, then the good checkpoint evaluated. Its results stay under its own hash (every run hashes the bytes it
    loads), so the gate on the tampered weights finds no evidence and stage 2 refuses them."""
    tmp_path, cfg, db = world
    good, tampered = tmp_path / "tiny-ttt", tmp_path / "tampered"
    shutil.copytree(good, tampered)
    nan_weights_same_size_same_mtime(tampered)
    _, real = checkpoint_identity(good)
    _, forged = checkpoint_identity(tampered)
    entry = old_cache_entry(good)
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(forged)
    assert evalsuite(["run", "--task", "ppl_vs_length", "--model", f"ttt:{good}", "--lengths", "64,128", "--db", db,
                      "--no-progress"]) == 0
    assert Store(db).runs()["model_hash"].tolist() == [real]
    assert evalsuite(["gate", "--checkpoint", str(tampered), "--stage", "1", "--config", cfg, "--db", db]) == 1
    assert gate_db.latest(db, forged, 1)["outcome"] == "incomplete"
    with pytest.raises(StageRefused, match=f"hash {forged}"):
        check_stage(cfg, 2, str(tampered), db=db)
    assert evalsuite(["gate", "--checkpoint", str(good), "--stage", "1", "--config", cfg, "--db", db]) == 0


def test_weights_changed_while_loading_are_refused(world, monkeypatch):
    """The hash is read before the weights load; a file that changes in between (its change time moves) fails the
    load in one line instead of filing results under the hash of other bytes."""
    import evalsuite.models as models

    ckpt = world[0] / "tiny-ttt"
    load = models.AutoModelForCausalLM.from_pretrained

    def rewrite_then_load(path, **kw):
        nan_weights_same_size_same_mtime(ckpt)
        return load(path, **kw)
    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", rewrite_then_load)
    with pytest.raises(ModelSpecError, match="model.safetensors changed while the model was being loaded"):
        models.load_model(f"ttt:{ckpt}")


def test_a_forced_promotion_records_the_hash_it_verified(world):
    tmp_path, cfg, db = world
    line = check_stage(cfg, 2, str(tmp_path / "tiny-baseline"), db=db, force=True, reason="deadline")
    _, real = checkpoint_identity(tmp_path / "tiny-baseline")
    decision = gate_db.latest(db, real, 1)
    assert real in line and decision["outcome"] == "forced" and decision["verified_at"] is not None
