"""Retrieval by needle distance: every sample is also binned by the tokens between its needle and the question, a
fixed-distance variant puts the needle exactly there, bins beyond the model's attention window are marked, and
`compare` pairs two models on chosen bins only."""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
from transformers import AutoTokenizer

from evalsuite.metrics.retrieval import accuracy_rows, distance_bin
from evalsuite.models import LoadedModel
from evalsuite.registry import Registry, validate_spec
from evalsuite.retrieval.table import BEYOND, distance_table
from evalsuite.runner import run_task
from evalsuite.store import Store
from evalsuite.task import KINDS

SMALL = dict(distances=[64, 128, 400], n=2)


def _spec(name, lengths, **params):
    spec = Registry().get(name)
    spec = dataclasses.replace(spec, lengths=list(lengths), params={**spec.params, **SMALL, **params}, source="test")
    validate_spec(spec)
    return spec


def test_distance_bins_and_rows():
    assert [distance_bin(d) for d in (0, 255, 256, 1500, 2048, 10**6)] == [0, 0, 256, 1024, 2048, 65536]
    samples = pd.DataFrame([{"bin": "length=512,depth=0,distance=256", "value": 1.0},
                            {"bin": "length=512,depth=100,distance=0", "value": 0.0},
                            {"bin": "length=1024,distance=512", "value": 1.0},
                            {"bin": "length=1024,depth=50", "value": 1.0}])  # a sample of an older run: no distance
    rows = {r["bin"]: r for r in accuracy_rows("rank_accuracy", samples)}
    assert set(rows) == {"length=512,depth=0", "length=512,depth=100", "length=1024,depth=50",
                         "length=1024,distance=512", "distance=0", "distance=256", "distance=512",
                         "length=512", "length=1024", ""}
    assert rows["distance=256"]["value"] == 1.0 and rows["distance=0"]["n"] == 1 and rows[""]["n"] == 4


def test_fixed_distance_puts_the_needle_there(micro_llama_dir):
    tokenizer = AutoTokenizer.from_pretrained(micro_llama_dir)
    spec = _spec("passkey_distance", [512], snap_tokens=0)
    kind = KINDS[spec.kind](spec, LoadedModel(None, tokenizer, "tok", "0", "tok", None), seed=1)
    assert [u.key for u in kind.units()][:3] == ["length=512,distance=64,rep=0", "length=512,distance=128,rep=0",
                                                  "length=512,distance=64,rep=1"]  # 400 + 256 > 512: skipped
    for distance in (64, 128):
        problem, prompt, _ = kind.sample(512, None, 0, distance)
        assert prompt.distance(0) == distance and len(prompt.ids) < 512


def test_passkey_by_distance_marks_the_bins_beyond_the_window(micro_ttt_dir, tmp_path):
    store = Store(tmp_path / "r.db")
    result = run_task(_spec("passkey_distance", [400, 700]), f"ttt:{micro_ttt_dir}@window=100,sinks=2", store=store,
                      progress=False)
    assert result.status == "finished" and result.units_total == 2 * 2 + 3 * 2
    assert any("window of 100 tokens" in note for note in result.notes)
    m = store.metrics(run_id=result.run_id, name="rank_accuracy").set_index("bin")
    assert {"length=400,distance=64", "length=700,distance=400", "distance=64", "distance=128", "distance=400"} <= \
        set(m.index)
    assert m.loc["distance=64", "n"] == 4 and m.loc["distance=400", "n"] == 2
    assert store.metrics(run_id=result.run_id, name="attention_window")["value"].tolist() == [100.0]
    table = distance_table(store, [result.run_id])
    row = next(line for line in table.splitlines() if "micro" in line or "ttt:" in line)
    cells = row.split("|")[4:-1]  # 64, 128, 400
    assert BEYOND not in cells[0] and BEYOND in cells[1] and BEYOND in cells[2]
    assert table.splitlines()[-1].startswith(BEYOND)


def test_compare_on_chosen_bins_only(micro_ttt_dir, micro_llama_dir, tmp_path):
    store = Store(tmp_path / "r.db")
    spec = dataclasses.replace(Registry().get("compare_passkey_distance"), lengths=[400], source="test",
                               params=dict(task="passkey_distance", metric="rank_accuracy", higher_is_better=True,
                                           baseline=f"hf:{micro_llama_dir}", bins=["distance=128"]))
    validate_spec(spec)
    # a small inner task (the bundled one runs 20k tokens) from an include path
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "passkey_distance.yaml").write_text(
        "name: passkey_distance_small\nversion: '1'\nkind: passkey\nlengths: [400]\n"
        "metrics: [rank_accuracy, chance]\nparams: {distances: [64, 128], n: 3, scoring: [rank]}\n")
    spec = dataclasses.replace(spec, params={**spec.params, "task": "passkey_distance_small"})
    result = run_task(spec, f"ttt:{micro_ttt_dir}@window=100", store=store, include_paths=[str(tasks)],
                      progress=False)
    diff = store.metrics(run_id=result.run_id, name="diff").set_index("bin")
    assert set(diff.index) == {"distance=128", "selected"}
    assert diff.loc["selected", "n"] == 3 and diff.loc["distance=128", "n"] == 3


def test_bad_distances_are_refused():
    with pytest.raises(Exception, match="params.distances must be a list"):
        _spec("passkey_distance", [512], distances=[])
