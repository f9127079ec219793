"""lm-eval through the `ttt-omni` model, offline: local task YAMLs (`dataset_path: json`) over bundled eval books."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from evalsuite.cli import main
from evalsuite.store import Store
from ttt_omni.data_manifest import books

pytestmark = pytest.mark.slow

lm_eval = pytest.importorskip("lm_eval")


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    """books_rolling (loglikelihood_rolling: perplexities) and books_choice (multiple choice: which continuation)."""
    out = tmp_path_factory.mktemp("lm_eval_tasks")
    texts = [b.read()[20000:20600] for b in books("eval")[:3]]
    rolling = out / "rolling.jsonl"
    rolling.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    choice = out / "choice.jsonl"
    choice.write_text("".join(json.dumps({"context": t[:200], "choices": [t[200:260], texts[i - 1][200:260]],
                                          "label": 0}) + "\n" for i, t in enumerate(texts)))
    (out / "books_rolling.yaml").write_text(f"""task: books_rolling
dataset_path: json
dataset_kwargs:
  data_files: {{test: {rolling}}}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
metadata:
  version: 1.0
""")
    (out / "books_choice.yaml").write_text(f"""task: books_choice
dataset_path: json
dataset_kwargs:
  data_files: {{test: {choice}}}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
metadata:
  version: 1.0
""")
    return out


def test_rolling_loglikelihood_is_one_streaming_pass(micro_ttt_dir):
    from lm_eval.api.instance import Instance

    from evalsuite.lm_eval_adapter import TTTOmniLM
    from evalsuite.metrics.ppl import token_nll

    lm = TTTOmniLM(pretrained=str(micro_ttt_dir), chunk_size=16)
    assert lm.loaded.model_id.startswith("ttt:")
    text = books("eval")[0].read()[30000:31000]
    req = Instance("loglikelihood_rolling", doc={}, arguments=(text,), idx=0)
    ids = [lm.prefix_id, *lm.loaded.tokenizer(text, add_special_tokens=False)["input_ids"]]
    one_pass = -token_nll(lm.loaded.model, torch.tensor(ids), chunk_size=None).sum()
    np.testing.assert_allclose(lm.loglikelihood_rolling([req], disable_tqdm=True)[0], one_pass, rtol=1e-5)


def test_evalsuite_runs_lm_eval_task_and_stores_results(tmp_path, micro_ttt_dir, task_dir, capsys):
    db = tmp_path / "s.db"
    for task in ("books_rolling", "books_choice"):
        assert main(["run", "--task", f"lm_eval:{task}", "--model", f"ttt:{micro_ttt_dir}", "--include-path",
                     str(task_dir), "--db", str(db), "--no-progress"]) == 0
    m = Store(db).metrics()
    rolling = m[m["task"] == "lm_eval:books_rolling"].set_index("name")
    assert {"word_perplexity", "byte_perplexity", "bits_per_byte"} <= set(rolling.index)
    assert np.isfinite(rolling.loc["word_perplexity", "value"]) and rolling.loc["bits_per_byte", "n"] == 3
    acc = m[(m["task"] == "lm_eval:books_choice") & (m["name"] == "acc")]
    assert len(acc) == 1 and 0 <= acc["value"].iloc[0] <= 1 and acc["bin"].iloc[0] == "task=books_choice"
    assert 0 <= acc["ci_low"].iloc[0] <= acc["value"].iloc[0] <= acc["ci_high"].iloc[0] <= 1
    out = capsys.readouterr().out
    assert "lm_eval:books_choice lm-eval-" in out and "vlm-eval" not in out


def test_accuracy_intervals_stay_inside_0_1_and_others_are_normal():
    """A proportion of n 0/1 scores (lm-eval's stderr sqrt(p(1-p)/(n-1))) gets a Wilson interval; a perplexity gets
    value +- 1.96 stderr. 4 of 5 right: the normal interval would reach 1.19."""
    import math

    import pandas as pd

    from evalsuite.kinds.lm_eval_task import LmEvalTask

    rows = pd.DataFrame([dict(name="acc", bin="t", value=0.8, n=5, data='{"stderr": %r}' % math.sqrt(0.8 * 0.2 / 4)),
                         dict(name="word_perplexity", bin="t", value=40.0, n=5, data='{"stderr": 2.0}')])
    acc, ppl = LmEvalTask.aggregate(None, rows)
    assert 0 <= acc["ci_low"] < 0.8 < acc["ci_high"] <= 1 and acc["ci_high"] == pytest.approx(0.9638, abs=1e-3)
    assert (ppl["ci_low"], ppl["ci_high"]) == pytest.approx((40 - 1.96 * 2, 40 + 1.96 * 2), abs=1e-3)


def test_unknown_lm_eval_task_is_a_clear_error(tmp_path, micro_ttt_dir, task_dir, capsys):
    code = main(["run", "--task", "lm_eval:books_rollin", "--model", f"ttt:{micro_ttt_dir}", "--include-path",
                 str(task_dir), "--db", str(tmp_path / "s.db"), "--no-progress"])
    assert code == 2 and "did you mean books_rolling" in capsys.readouterr().err


def test_lm_eval_cli_with_the_ttt_omni_model(tmp_path, micro_ttt_dir, task_dir):
    out = subprocess.run([sys.executable, "-m", "evalsuite.cli", "lm-eval", "--model", "ttt-omni", "--model_args",
                          f"pretrained={micro_ttt_dir}", "--tasks", "books_rolling", "--include_path",
                          str(task_dir), "--output_path", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "books_rolling" in out.stdout and "word_perplexity" in out.stdout
