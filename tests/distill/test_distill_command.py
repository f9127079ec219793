"""`ttt-omni distill` end to end on a real tiny Llama, resumable; the delta round trip; bad input."""
import json
import signal
import subprocess
import sys

import pandas as pd
import pytest
import torch
from support.distill import LAYERS

from ttt_omni.cli import main as cli_main
from ttt_omni.delta import DELTA_MANIFEST, load_delta, save_delta
from ttt_omni.distill.pipeline import DISTILL_REPORT_NAME
from ttt_omni.models import TTTLlamaForCausalLM

ARGS = ["--ttt-layers", "2-3", "--mini-batch-size", "16", "--seq-len", "64", "--train-sequences", "3",
        "--validation-sequences", "2", "--sequences-per-shard", "2", "--steps", "3"]


# `ttt-omni distill` killed with kill -9 at layer 3's second transfer step (layer 2 finished, its time written often)
KILLED = """
import os, signal, sys
import torch
import ttt_omni.distill.transfer as transfer
from ttt_omni.cli import main
from ttt_omni.distill.pipeline import _Phases

torch.set_num_threads(1)
_Phases.FLUSH_S = 0.05
real = transfer.batch_rows

def batch_rows(store, settings, step):
    if step == 1 and os.path.exists(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(store, settings, step)

transfer.batch_rows = batch_rows
main(sys.argv[2:])
"""


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.fixture(scope="module")
def distilled(source, corpus, tmp_path_factory):
    """A distillation with a 2-step fine-tune, interrupted after its transfer and run again."""
    root = tmp_path_factory.mktemp("distill")
    out = root / "out"
    args = ["distill", str(source), str(out), *ARGS, "--corpus", str(corpus), "--attention-window", "32",
            "--attention-sinks", "2"]
    assert cli_main(args + ["--finetune-steps", "2", "--finetune-context", "64", "--finetune-kl-weight", "0.5",
                            "--work-dir", str(root / "w"), "--delta", str(root / "delta")]) == 0
    return source, out, root


def test_the_output_is_a_hybrid_with_its_report(distilled):
    source, out, root = distilled
    model = TTTLlamaForCausalLM.from_pretrained(out)
    assert model.config.ttt_layers == LAYERS
    assert (model.config.attention_window, model.config.attention_sinks) == (32, 2)
    report = json.loads((out / DISTILL_REPORT_NAME).read_text())
    assert report["calibration"]["tokens_collected"] == 5 * 64
    assert report["finetune"]["steps"] == 2 and report["finetune"]["tokens"] == 2 * 64
    assert report["finetune"]["kl_weight"] == 0.5
    assert set(report["transfer"]["layers"]) == {"2", "3"}
    assert all(row["tokens"] == 3 * 64 for row in report["transfer"]["layers"].values())
    assert set(report["wall_time_s"]) == {"convert", "collect", "transfer", "finetune"}
    assert (out / "tokenizer.json").is_file() and (out / "conversion_report.json").is_file()
    assert (root / "w" / "finetune" / "monitor.csv").is_file()  # the trainer's monitor watched the fine-tune


def test_the_delta_rebuilds_the_model_with_bf16_projections(distilled):
    source, out, root = distilled
    manifest = json.loads((root / "delta" / DELTA_MANIFEST).read_text())
    assert manifest["ttt_layers"] == LAYERS and manifest["attention_sinks"] == 2
    rebuilt = load_delta(source, root / "delta")
    original = TTTLlamaForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        for name, p in original.named_parameters():
            if ".ttt." in name and name.endswith("_proj.weight"):
                p.copy_(p.to(torch.bfloat16).float())  # what the delta stores
    ids = torch.randint(0, 4096, (1, 80), generator=torch.Generator().manual_seed(0))
    assert torch.equal(_logits(rebuilt, ids), _logits(original, ids))
    inner = [p.dtype for n, p in rebuilt.named_parameters() if ".inner." in n]
    assert inner and set(inner) == {torch.float32}


def test_running_again_continues_and_a_finished_output_is_kept(distilled, source, corpus, tmp_path):
    _, out, root = distilled
    with pytest.raises(FileExistsError, match="already exists"):
        from ttt_omni.distill import distill_checkpoint
        distill_checkpoint(source, out)
    # the same work directory: every phase is found done, nothing is recomputed
    stamps = {p: p.stat().st_mtime_ns for p in (root / "w" / "activations").glob("*.safetensors")}
    args = ["distill", str(source), str(tmp_path / "again"), *ARGS, "--corpus", str(corpus), "--attention-window",
            "32", "--attention-sinks", "2", "--finetune-steps", "2", "--finetune-context", "64",
            "--finetune-kl-weight", "0.5", "--work-dir", str(root / "w")]
    assert cli_main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    ids = torch.randint(0, 4096, (1, 40), generator=torch.Generator().manual_seed(1))
    assert torch.equal(_logits(TTTLlamaForCausalLM.from_pretrained(tmp_path / "again"), ids),
                       _logits(TTTLlamaForCausalLM.from_pretrained(out), ids))


def test_a_delta_refuses_another_base_and_a_model_changed_outside_its_ttt_layers(distilled, tmp_path):
    source, out, root = distilled
    other = tmp_path / "other"
    model = TTTLlamaForCausalLM.from_pretrained(out)
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.add_(1e-3)
    model.save_pretrained(other)
    with pytest.raises(ValueError, match="differs from the base .* outside its TTT layers"):
        save_delta(other, source, tmp_path / "delta")
    with pytest.raises(ValueError, match="not the base this delta was made from"):
        load_delta(out, root / "delta")


def test_bad_input_is_one_line(source, tmp_path, capsys):
    assert cli_main(["distill", str(source), str(tmp_path / "o"), "--corpus", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ttt-omni distill: error: calibration corpus") and len(err.strip().splitlines()) == 1
    assert cli_main(["distill", str(source), str(tmp_path / "o"), "--steps", "0"]) == 2
    assert "steps=0" in capsys.readouterr().err


def test_a_distillation_killed_mid_transfer_resumes_to_the_report_of_one_run(source, corpus, tmp_path):
    args = [*ARGS, "--corpus", str(corpus)]
    assert cli_main(["distill", str(source), str(tmp_path / "a"), *args, "--work-dir", str(tmp_path / "wa")]) == 0
    work = tmp_path / "wb"
    command = ["distill", str(source), str(tmp_path / "b"), *args, "--work-dir", str(work)]
    killed = subprocess.run([sys.executable, "-c", KILLED, str(work / "transfer" / "layer-2.safetensors"), *command],
                            capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    spent = json.loads((work / "phases.json").read_text())["transfer"]
    assert cli_main(command) == 0
    a, b = (json.loads((tmp_path / name / DISTILL_REPORT_NAME).read_text()) for name in "ab")
    assert b["wall_time_s"]["transfer"] >= round(spent, 1) > 0  # the killed run's time is counted
    per_run = ("output", "wall_time_s", "peak_rss_mb_this_process")
    assert {k: v for k, v in b.items() if k not in per_run} == {k: v for k, v in a.items() if k not in per_run}
    assert set(b["transfer"]["layers"]) == {"2", "3"}
    for name in ("summary.csv", "validation.csv", "monitor.csv", "distill_log.csv"):
        want, got = (pd.read_csv(w / "transfer" / name).drop(columns=["tokens_per_s"], errors="ignore")
                     for w in (tmp_path / "wa", work))
        assert got.to_dict("records") == want.to_dict("records"), name
