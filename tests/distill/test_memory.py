"""Distilling the memory beside the window (ttt_omni.distill.memory) on the bundled attention baseline: difference
targets, the resumable run end to end, least-squares gates that never lose to g = 0, and the delta it ships."""
import json

import pytest
import torch
from support.distill import calibration, settings

from ttt_omni.delta import load_delta
from ttt_omni.distill import TransferSettings, load_teacher
from ttt_omni.distill.memory import MemoryDistillConfig, difference_io, distill_memory


def test_difference_is_what_the_window_misses(source, corpus):
    teacher = load_teacher(source)
    ids = calibration(source, settings(source, corpus)).train[:1]
    covered = difference_io(teacher, ids, [1, 3], window=64, sinks=1)  # the window sees all 64 tokens
    narrow = difference_io(teacher, ids, [1, 3], window=8, sinks=1)
    for i in (1, 3):
        torch.testing.assert_close(covered[i][0], narrow[i][0])  # the same inputs: the teacher's
        assert covered[i][1].abs().max() < 1e-5
        assert narrow[i][1][:, 9:].abs().mean() > 1e-3 and narrow[i][1][:, :8].abs().max() < 1e-5
    with pytest.raises(ValueError, match="sinks"):
        difference_io(teacher, ids, [1], window=8, sinks=0)


def test_memory_distill_runs_resumes_and_ships_a_delta(source, corpus, tmp_path):
    config = MemoryDistillConfig(layers=[1, 3], window=8, sinks=1, seq_len=64, train_sequences=2,
                                 validation_sequences=1, corpus=str(corpus),
                                 transfer=TransferSettings(schedule="joint", steps=4, save_every=2, warmup=1,
                                                           validate_every=2))
    work = tmp_path / "work"
    report = distill_memory(source, work, config, out=tmp_path / "hybrid", delta=tmp_path / "delta")
    assert report["calibration"]["tokens_collected"] == 3 * 64 and report["transfer"]["steps"] == 4
    assert {"collect_cpu", "transfer_cpu"} <= set(report["seconds"])
    for fit in report["gates"].values():
        assert fit["val_rel_mse_fitted_gate"] <= 1.0 + 1e-6  # never worse than the window alone
    again = distill_memory(source, work, config)  # resumed: nothing to collect or train, same gates
    assert again["gates"] == report["gates"]
    model = load_delta(source, tmp_path / "delta")
    assert model.config.ttt_mode == "beside" and model.config.attention_window == 8
    assert json.loads((tmp_path / "delta" / "distill_report.json").read_text())["layers"] == [1, 3]


def test_end_to_end_trains_branches_and_gates_only(source, corpus, tmp_path):
    config = MemoryDistillConfig(layers=[2], window=8, sinks=1, seq_len=64, train_sequences=1,
                                 validation_sequences=1, corpus=str(corpus), end_to_end_steps=2,
                                 end_to_end_context=64, transfer=TransferSettings(schedule="joint", steps=1, warmup=0))
    report = distill_memory(source, tmp_path / "work", config, out=tmp_path / "hybrid")
    assert report["end_to_end"]["steps"] == 2 and "end_to_end_cpu" in report["seconds"]
    from transformers import AutoModelForCausalLM
    from ttt_omni.models import TTTLlamaForCausalLM

    base = AutoModelForCausalLM.from_pretrained(source)
    gated = TTTLlamaForCausalLM.from_pretrained(tmp_path / "work" / "gated")
    trained = TTTLlamaForCausalLM.from_pretrained(tmp_path / "hybrid")
    frozen = base.state_dict()
    for name, p in trained.state_dict().items():
        if name in frozen:
            assert torch.equal(p, frozen[name]), name  # everything outside the branch and gate untouched
    changed = {n for n, p in trained.state_dict().items() if not torch.equal(p, gated.state_dict()[n])}
    assert "model.layers.2.self_attn.ttt_gate" in changed
