"""Leaderboards from the store: deterministic files, latest run per model, numeric bin order, bad definitions."""
import shutil
from pathlib import Path

import pytest

from evalsuite.cli import main as evalsuite
from evalsuite.leaderboard import LeaderboardError, load_definition
from evalsuite.store import Store

REPO = Path(__file__).resolve().parents[1]


def add_run(store, task, model_id, model_hash, rows):
    run_id = store.start_run(task=task, task_version="1", task_kind=task, model_id=model_id, model_hash=model_hash,
                             model_spec=model_id, config={"n": len(store.runs())}, seed=0, n_units=0,
                             code_version="test", resume=False)
    store.add_metrics(run_id, rows)
    store.finish_run(run_id)


def test_build_is_deterministic_and_reads_the_latest_runs(tmp_path):
    db = tmp_path / "r.db"
    store = Store(db)
    ppl = lambda scale: [dict(name="ppl", bin=f"length={L}", value=scale * L ** 0.1, ci_low=scale * L ** 0.1 - 1,  # noqa: E731
                              ci_high=scale * L ** 0.1 + 1, n=3) for L in (16384, 1024, 2048)]
    add_run(store, "ppl_vs_length", "tiny-baseline", "b" * 16, ppl(30.0))
    add_run(store, "ppl_vs_length", "tiny-ttt", "a" * 16, ppl(99.0))
    add_run(store, "ppl_vs_length", "tiny-ttt", "a" * 16, ppl(10.0))  # the latest run of a model counts
    add_run(store, "human_pref", "tiny-ttt", "h" * 16, [dict(name="win_rate", bin="tiny-ttt vs tiny-baseline",
                                                             value=0.625, ci_low=0.4, ci_high=0.8, n=16)])
    defs = tmp_path / "defs"
    shutil.copytree(REPO / "leaderboards", defs, ignore=shutil.ignore_patterns("*.md", "*.csv"))
    out1, out2 = tmp_path / "out1", tmp_path / "out2"
    assert evalsuite(["leaderboard", "build", "--db", str(db), "--definitions", str(defs), "--output", str(out1)]) == 0
    assert evalsuite(["leaderboard", "build", "--db", str(db), "--definitions", str(defs), "--output", str(out2)]) == 0
    files = sorted(p.name for p in out1.iterdir())
    assert files == sorted(f"{p.stem}.{ext}" for p in defs.glob("*.yaml") for ext in ("md", "csv"))
    for name in files:
        assert (out1 / name).read_bytes() == (out2 / name).read_bytes()

    md = (out1 / "ppl_by_length.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert table[0] == "| model | hash | n | length=1024 | length=2048 | length=16384 |"
    assert table[2].startswith("| tiny-baseline |") and table[3].startswith(f"| tiny-ttt | {'a' * 16} | 3 | 20.00 [19.00")
    assert "0.625 [0.400, 0.800]" in (out1 / "human_preference.md").read_text()
    assert "No finished runs" in (out1 / "generation_quality.md").read_text()
    csv = (out1 / "ppl_by_length.csv").read_text().splitlines()
    assert csv[0] == "model_id,model_hash,run_id,column,metric,bin,value,ci_low,ci_high,n" and len(csv) == 7


def test_columns_in_numeric_order_whichever_model_has_which_bins_and_files_go_to_the_working_directory(
        tmp_path, monkeypatch):
    store = Store(tmp_path / "r.db")
    add_run(store, "ppl_vs_length", "short", "s" * 16, [dict(name="ppl", bin=f"length={L}", value=1.0, n=2)
                                                         for L in (1024, 4096)])
    add_run(store, "ppl_vs_length", "long", "l" * 16, [dict(name="ppl", bin=f"length={L}", value=2.0, n=5)
                                                       for L in (64, 2048, 65536, 128)])
    monkeypatch.chdir(tmp_path)
    assert evalsuite(["leaderboard", "build", "--db", str(tmp_path / "r.db")]) == 0
    md = (tmp_path / "results" / "leaderboards" / "ppl_by_length.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| model"))
    lengths = [int(c.split("=")[1]) for c in header.strip("| ").split(" | ")[3:]]
    assert lengths == sorted(lengths) == [64, 128, 1024, 2048, 4096, 65536]
    assert "| long | " + "l" * 16 + " | 5 |" in md and not list((REPO / "leaderboards").glob("ppl_by_length.md"))


def test_bad_definitions_are_named(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntitle: X\ntask: t\n")
    with pytest.raises(LeaderboardError, match=r"bad.yaml: metrics: required"):
        load_definition(bad)
    for text, message in [("name: x\ntitle: X\ntask: t\nmetrics: [m]\ndigits: many\n", "digits: expected an integer"),
                          ("name: x y\ntitle: X\ntask: t\nmetrics: [m]\n", "name: expected text matching"),
                          ("name: x\ntitle: X\ntask: t\nmetrics: [m]\ndescending: 'yes'\n",
                           "descending: expected true or false, got 'yes'"),
                          ("name: [x\n", "bad.yaml: malformed YAML"),
                          ("- a list\n", "bad.yaml: expected a mapping with name, title, task, metrics, got list")]:
        bad.write_text(text)
        with pytest.raises(LeaderboardError, match=message):
            load_definition(bad)
    bad.write_text("name: x\ntitle: X\ntask: t\nmetrics: [m]\nsort: m\n")
    assert evalsuite(["leaderboard", "build", "--db", str(tmp_path / "r.db"), "--definitions", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml: sort: unknown key; expected one of name, title" in err and err.count("\n") == 1
