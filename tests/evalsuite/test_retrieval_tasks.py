"""The retrieval tasks end to end on micro models (small lengths): metric rows per cell, length and run, readable
samples, `compare` paired by sample, gate rules on the new metrics, human-eval export, and bad
input as one line."""
from __future__ import annotations

import dataclasses
import json

import pytest

from evalsuite.cli import main as evalsuite
from evalsuite.gate import Rule, evaluate_rule
from evalsuite.humaneval.results import samples_outputs
from evalsuite.registry import Registry, validate_spec
from evalsuite.runner import run_task
from evalsuite.store import Store

SMALL = dict(depths=[0, 50, 100], n=2)
LENGTHS = {"passkey": [192, 320], "niah": [384, 512], "variable_tracking": [640, 768], "book_facts": [384, 512]}


def small_spec(name: str, lengths, include=(), **params):
    spec = Registry(list(include)).get(name)
    spec = dataclasses.replace(spec, lengths=list(lengths), params={**spec.params, **SMALL, **params}, source="test")
    validate_spec(spec)
    return spec


@pytest.mark.parametrize("task,model", [("passkey", "ttt"), ("niah", "hf"), ("variable_tracking", "ttt"),
                                        ("book_facts", "hf"), ("passkey", "omni")])
def test_tasks_end_to_end(task, model, request, tmp_path):
    path = request.getfixturevalue({"ttt": "micro_ttt_dir", "hf": "micro_llama_dir", "omni": "llama_omni_dir"}[model])
    store = Store(tmp_path / "r.db")
    lengths = [512, 640] if model == "omni" else LENGTHS[task]  # the Omni fixture's BPE spells out most words
    result = run_task(small_spec(task, lengths), f"{model}:{path}", store=store, progress=False)
    assert result.status == "finished" and result.units_total == 2 * 3 * 2
    m = store.metrics(run_id=result.run_id)
    cells = {f"length={L},depth={d}" for L in lengths for d in (0, 50, 100)}
    for metric in ("rank_accuracy", "generate_accuracy"):
        rows = m[m["name"] == metric].set_index("bin")
        distances = {b for b in rows.index if b.startswith("distance=")}  # every sample also counts by distance
        assert set(rows.index) - distances == cells | {f"length={L}" for L in lengths} | {""}
        assert distances and rows.loc[sorted(distances), "n"].sum() == 12
        assert (rows.loc[sorted(cells), "n"] == 2).all() and rows.loc["", "n"] == 12
        assert ((rows["ci_low"] <= rows["value"]) & (rows["value"] <= rows["ci_high"])).all()
        assert ((rows["ci_low"] >= 0) & (rows["ci_high"] <= 1)).all()
    assert m[m["name"] == "chance"]["value"].tolist() == [0.25]
    outputs = store.samples(result.run_id).query("name == 'output'")
    assert len(outputs) == 12
    data = json.loads(outputs["data"].iloc[-1])
    assert data["answers"] and len(data["candidates"]) == 4 and len(data["logprobs"]) == 4
    assert "[..." in data["prompt"] and isinstance(data["text"], str)
    assert data["prompt_tokens"] < lengths[-1] and data["depth"] == 1.0  # the last unit: depth 100 %
    if model == "hf":  # the micro Llama's 96-token context: only the prompt's tail is seen
        assert data["visible_from"] > 0 and data["targets_visible"] <= data["targets"]
    else:
        assert data["visible_from"] == 0 and data["targets_visible"] == data["targets"]


def test_samples_are_the_same_on_every_run_and_a_limit_spreads_them(micro_ttt_dir, tmp_path):
    spec = small_spec("passkey", [192], depths=[0, 25, 50, 75, 100], n=3)
    store = Store(tmp_path / "r.db")
    a = run_task(spec, f"ttt:{micro_ttt_dir}", store=store, progress=False, limit=3)
    units = store.samples(a.run_id).query("name == 'output'")["unit"].tolist()
    assert units == ["length=192,depth=0,rep=0", "length=192,depth=50,rep=0", "length=192,depth=100,rep=0"]
    b = run_task(spec, f"ttt:{micro_ttt_dir}", store=Store(tmp_path / "other.db"), progress=False, limit=3)
    sa, sb = store.samples(a.run_id), Store(tmp_path / "other.db").samples(b.run_id)
    assert sa["data"].tolist() == sb["data"].tolist() and sa["value"].tolist() == sb["value"].tolist()


def test_compare_pairs_retrieval_samples(micro_ttt_dir, micro_llama_dir, tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "passkey_small.yaml").write_text(
        "name: passkey_small\nversion: '1'\nkind: passkey\nlengths: [192]\n"
        "metrics: [rank_accuracy, generate_accuracy, chance]\nparams: {depths: [0, 50, 100], n: 2}\n")
    store = Store(tmp_path / "r.db")
    spec = dataclasses.replace(Registry().get("compare"), lengths=[192, 320], source="test",
                               params=dict(task="passkey_small", metric="rank_accuracy", higher_is_better=True,
                                           baseline=f"hf:{micro_llama_dir}"))
    result = run_task(spec, f"ttt:{micro_ttt_dir}", store=store, include_paths=[str(tasks)], progress=False)
    m = store.metrics(run_id=result.run_id)
    diff = m[m["name"] == "diff"].set_index("bin")
    assert {"length=192", "length=320", ""} <= set(diff.index)
    assert diff.loc["length=192", "n"] == 6 and diff.loc["", "n"] == 12  # one pair per sample
    samples = store.samples(result.run_id)
    cand = samples[samples["name"] == "candidate/rank_correct"].set_index("unit")["value"]
    base = samples[samples["name"] == "baseline/rank_correct"].set_index("unit")["value"]
    assert list(cand.index) == list(base.index) and len(cand) == 12
    rows = m.set_index(["name", "bin"])["value"]
    assert rows["candidate", ""] == pytest.approx(cand.mean()) and rows["baseline", ""] == pytest.approx(base.mean())
    assert rows["diff", ""] == pytest.approx(cand.mean() - base.mean())
    direct = run_task(small_spec("passkey_small", [192, 320], include=[str(tasks)]), f"ttt:{micro_ttt_dir}",
                      store=store, progress=False)
    alone = store.samples(direct.run_id).query("name == 'rank_correct'").set_index("unit")["value"]
    assert alone.to_dict() == cand.to_dict()  # the compared candidate side is the task run on its own


def test_gate_rules_read_retrieval_metrics(micro_ttt_dir, tmp_path):
    store = Store(tmp_path / "r.db")
    result = run_task(small_spec("passkey", [192, 320]), f"ttt:{micro_ttt_dir}", store=store, progress=False)
    model_hash = store.run(result.run_id)["model_hash"]
    at_length = store.metrics(run_id=result.run_id, name="rank_accuracy", bin="length=320")["value"].iloc[0]
    rule = Rule("passkey at the stage length", "passkey", "rank_accuracy", "length={context}", ">=", 0.0)
    ok = evaluate_rule(store, rule, model_hash, context=320)
    assert (ok.status, ok.value, ok.n, ok.bin) == ("pass", at_length, 6, "length=320")
    strict = dataclasses.replace(rule, threshold=1.01)
    assert evaluate_rule(store, strict, model_hash, context=320).status == "fail"
    every_cell = dataclasses.replace(rule, bin="length={context},depth=*", use="ci_high", op=">", threshold=0.0)
    cells = evaluate_rule(store, every_cell, model_hash, context=320)
    assert cells.status == "pass" and cells.bin.startswith("length=320,depth=")


def test_outputs_export_for_human_review(micro_ttt_dir, tmp_path):
    store = Store(tmp_path / "r.db")
    run_task(small_spec("book_facts", [384], n=1), f"ttt:{micro_ttt_dir}", store=store, progress=False)
    run = store.runs().iloc[-1]
    model_id = run["model_id"]
    from evalsuite.corpus import bundled_books, corpus_hash
    assert run["data_hash"] == corpus_hash(bundled_books("eval"))  # a books haystack reads the whole corpus
    outputs = samples_outputs(str(store.url), "book_facts", [model_id])[0][model_id]
    assert set(outputs) == {f"length=384,depth={d},rep=0" for d in (0, 50, 100)}
    assert all("Question: Where is" in o.prompt for o in outputs.values())


def test_bad_input_is_one_line(micro_llama_dir, tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'r.db'}"
    code = evalsuite(["run", "--task", "variable_tracking", "--model", f"hf:{micro_llama_dir}", "--lengths", "128",
                      "--limit", "1", "--db", db, "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "length 128 is too short for this sample" in err.splitlines()[-1] and "Traceback" not in err
    (tmp_path / "book.txt").write_text("Some text.\n\nMore text.", encoding="utf-8")
    code = evalsuite(["run", "--task", "passkey", "--model", f"hf:{micro_llama_dir}", "--lengths", "256",
                      "--corpus", str(tmp_path / "book.txt"), "--db", db, "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "hides its needles in 'filler' text" in err


def test_heatmap_png_one_panel_per_run(micro_ttt_dir, micro_llama_dir, tmp_path):
    from PIL import Image

    from evalsuite.errors import EvalsuiteError
    from evalsuite.retrieval.heatmap import latest_runs, plot_heatmaps

    store = Store(tmp_path / "r.db")
    runs = [run_task(small_spec("passkey", [192, 320], n=1), f"{kind}:{path}", store=store, progress=False).run_id
            for kind, path in (("ttt", micro_ttt_dir), ("hf", micro_llama_dir))]
    one = Image.open(plot_heatmaps(store, runs[:1], "rank_accuracy", tmp_path / "one.png"))
    two = Image.open(plot_heatmaps(store, runs, "generate_accuracy", tmp_path / "two.png"))
    assert one.format == two.format == "PNG" and two.width > 1.2 * one.width  # a second panel
    again = run_task(small_spec("passkey", [192], n=1), f"ttt:{micro_ttt_dir}", store=store, progress=False).run_id
    assert latest_runs(store, "passkey") == [runs[1], again]  # per model, by model id: hf:..., ttt:...
    ppl = run_task("ppl_vs_length", f"hf:{micro_llama_dir}", store=store, lengths=[64], limit=1, progress=False)
    with pytest.raises(EvalsuiteError, match="has no 'rank_accuracy' rows per \\(length, depth\\) cell"):
        plot_heatmaps(store, [ppl.run_id], "rank_accuracy", tmp_path / "x.png")



def test_markdown_table_one_row_per_run(micro_ttt_dir, micro_llama_dir, tmp_path, capsys, monkeypatch):
    import runpy
    import sys
    from pathlib import Path

    from evalsuite.errors import EvalsuiteError
    from evalsuite.retrieval.table import markdown_table, retrieval_runs

    store = Store(tmp_path / "r.db")
    with pytest.raises(EvalsuiteError, match="no finished run of a retrieval task"):
        retrieval_runs(store)
    pk = run_task(small_spec("passkey", [192, 320], n=1), f"ttt:{micro_ttt_dir}", store=store, progress=False).run_id
    bf = run_task(small_spec("book_facts", [384], n=1), f"hf:{micro_llama_dir}", store=store, progress=False).run_id
    ppl = run_task("ppl_vs_length", f"hf:{micro_llama_dir}", store=store, lengths=[64], limit=1, progress=False)
    assert retrieval_runs(store) == [pk, bf]  # in the order of the kinds (passkey, ..., book_facts); no ppl run
    lines = markdown_table(store, [pk, bf]).splitlines()
    assert lines[0] == "| task | model | 192 | 320 | 384 | all [95% CI] | n | chance | time |"
    samples = store.samples(pk).query("name == 'rank_correct'")
    by_length = samples.groupby(samples["bin"].str.split(",").str[0])["value"].mean()
    passkey = lines[2].split(" | ")  # 192 and 320 filled, 384 blank; 6 samples (3 depths x 2 lengths)
    assert passkey[0] == "| passkey" and passkey[4] == "" and passkey[6:8] == ["6", "0.25"]
    assert [float(c) for c in passkey[2:4]] == pytest.approx(by_length[["length=192", "length=320"]].tolist(),
                                                             abs=0.005)
    assert float(passkey[5].split()[0]) == pytest.approx(samples["value"].mean(), abs=0.005)
    book_facts = lines[3].split(" | ")
    assert book_facts[0] == "| book_facts" and book_facts[2:4] == ["", ""] and book_facts[4] and book_facts[6] == "3"
    assert markdown_table(store, [pk, bf], "generate_accuracy").splitlines()[2].split(" | ")[7] == ""  # no chance
    with pytest.raises(EvalsuiteError, match="has no 'rank_accuracy' rows"):
        markdown_table(store, [ppl.run_id])
    script = Path(__file__).resolve().parents[2] / "scripts" / "retrieval_table.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--db", str(tmp_path / "r.db")])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(script), run_name="__main__")
    assert done.value.code == 0 and capsys.readouterr().out.splitlines() == lines
