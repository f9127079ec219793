"""Aggregation of votes with the key against hand-computed values; `raters add|list` and `pairs summarize` CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.humaneval import SYSTEMS, write_wav

from evalsuite.humaneval import db
from evalsuite.humaneval.bundle import load_served
from evalsuite.humaneval.summary import summarize
from evalsuite.metrics.preference import wilson_interval

REPO = Path(__file__).resolve().parents[2]


def key_of(sides: dict[str, tuple[str, str]], systems=("A", "B")) -> dict:
    pairs = {pid: {"prompt_id": pid, "left": {"system": l}, "right": {"system": r}} for pid, (l, r) in sides.items()}
    return {"bundle_id": "b", "systems": list(systems), "pairs": pairs}


def rows_by(summary, name):
    return {r["bin"]: r for r in summary["rows"] if r["name"] == name}


def test_two_systems_two_raters_by_hand():
    key = key_of({"p1": ("A", "B"), "p2": ("B", "A"), "p3": ("A", "B"), "p4": ("B", "A")})
    r1 = {"p1": "left", "p2": "left", "p3": "tie", "p4": "right"}  # A, B, tie, A
    r2 = {"p1": "left", "p2": "right", "p3": "tie", "p4": "right"}  # A, A, tie, A
    votes = [{"rater": "r1", "pair_id": p, "choice": c} for p, c in r1.items()]
    votes += [{"rater": "r2", "pair_id": p, "choice": c} for p, c in r2.items()]
    s = summarize(key, votes)
    (c,) = s["comparisons"]
    assert (c["wins"], c["ties"], c["losses"], c["n"]) == (5, 2, 1, 8)
    wr = rows_by(s, "win_rate")["A vs B"]
    assert wr["value"] == pytest.approx(6 / 8) and wr["n"] == 8
    assert (wr["ci_low"], wr["ci_high"]) == pytest.approx(wilson_interval(6, 8))
    # labels r1 [A,B,tie,A], r2 [A,A,tie,A]: p_o = 3/4, p_e = (2*3 + 1*1)/16 = 7/16, kappa = (5/16)/(9/16) = 5/9
    assert s["agreement"]["statistic"] == "cohen_kappa"
    assert rows_by(s, "cohen_kappa")["all"]["value"] == pytest.approx(5 / 9)
    assert rows_by(s, "rater_left_share")["rater=r1"]["value"] == pytest.approx(0.5)
    assert rows_by(s, "rater_left_share")["rater=r2"]["value"] == pytest.approx(0.25)
    per = rows_by(s, "rater_win_rate")
    assert per["A vs B|rater=r1"]["value"] == pytest.approx(2.5 / 4)
    assert per["A vs B|rater=r2"]["value"] == pytest.approx(3.5 / 4)
    assert not s["bradley_terry"]


def test_three_systems_bradley_terry_and_alpha():
    # one rater reproducing the exact Bradley–Terry fit p = (4, 2, 1)/7 (see tests/metrics/test_preference.py)
    sides, votes, k = {}, [], 0
    for a, b, wins_a, n in (("A", "B", 2, 3), ("B", "C", 2, 3), ("A", "C", 4, 5)):
        for i in range(n):
            pid = f"q{k}"
            k += 1
            sides[pid] = (a, b) if k % 2 else (b, a)
            a_wins = i < wins_a
            choice = "left" if (sides[pid][0] == a) == a_wins else "right"
            votes.append({"rater": "solo", "pair_id": pid, "choice": choice})
    key = key_of(sides, ("A", "B", "C"))
    # two more raters on q0 and q1 so that agreement is defined over three raters
    votes += [{"rater": "x", "pair_id": "q0", "choice": "left"}, {"rater": "y", "pair_id": "q0", "choice": "left"}]
    votes += [{"rater": "x", "pair_id": "q1", "choice": "left"}, {"rater": "y", "pair_id": "q1", "choice": "right"}]
    s = summarize(key, votes[:11])
    bt = rows_by(s, "bradley_terry")
    assert bt["A"]["value"] == pytest.approx(4 / 7, abs=1e-6)
    assert bt["C"]["value"] == pytest.approx(1 / 7, abs=1e-6)
    s = summarize(key, votes)
    assert s["agreement"]["statistic"] == "krippendorff_alpha" and s["agreement"]["raters"] == 3
    assert s["agreement"]["n_pairs"] == 2
    with pytest.raises(ValueError, match="missing from the key"):
        summarize(key, [{"rater": "r", "pair_id": "nope", "choice": "left"}])


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "evalsuite", *args], capture_output=True, text=True, cwd=REPO)


def test_cli_raters_and_summarize(bundle, db_url, tmp_path):
    r = run_cli("raters", "add", "--bundle", str(bundle), "--name", "alice", "--db", db_url)
    assert r.returncode == 0 and r.stdout.startswith("http://127.0.0.1:8000/r/")
    token = r.stdout.strip().rsplit("/", 1)[1]
    r = run_cli("raters", "add", "--bundle", str(bundle), "--name", "alice", "--db", db_url)
    assert r.returncode == 2 and "already exists" in r.stderr
    r = run_cli("pairs", "summarize", "--bundle", str(bundle), "--db", db_url, "--no-store")
    assert r.returncode == 2 and "no votes recorded yet" in r.stderr
    served = load_served(bundle)
    engine = db.make_engine(db_url)
    rid = db.rater_for_token(engine, served.bundle_id, token).id
    for pid in db.rater_state(engine, rid)[0]:
        db.cast_vote(engine, rid, pid, "left", "", 0)
    r = run_cli("raters", "list", "--bundle", str(bundle), "--db", db_url)
    assert r.stdout.strip() == "alice: 6/6 voted, 0 replaced"
    out = tmp_path / "summary.json"
    r = run_cli("pairs", "summarize", "--bundle", str(bundle), "--db", db_url, "--no-store", "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "rater alice: 6 votes (left 6, right 0, tie 0)" in r.stdout
    assert json.loads(out.read_text())["comparisons"][0]["n"] == 6
    r = run_cli("pairs", "summarize", "--bundle", str(bundle), "--db", db_url, "--no-store", "--format", "csv")
    assert r.stdout.splitlines()[0] == "a,b,wins,ties,losses,n,win_rate,ci_low,ci_high"
    a, b, wins, ties, losses, n = r.stdout.splitlines()[1].split(",")[:6]
    assert (a, b, int(wins) + int(ties) + int(losses), n) == (SYSTEMS[0], SYSTEMS[1], 6, "6")
    r = run_cli("pairs", "summarize", "--bundle", str(tmp_path), "--db", db_url, "--no-store")
    assert r.returncode == 2 and "not a pair bundle" in r.stderr


def test_summarize_writes_human_pref_rows_to_the_store(bundle, db_url):
    Store = pytest.importorskip("evalsuite.store").Store

    served = load_served(bundle)
    engine = db.make_engine(db_url)
    db.register_bundle(engine, served.bundle_id, served.task, len(served.items))
    for name, choice in (("alice", "left"), ("bob", "tie")):
        token = db.add_rater(engine, served.bundle_id, name, sorted(served.items))
        rid = db.rater_for_token(engine, served.bundle_id, token).id
        for pid in db.rater_state(engine, rid)[0]:
            db.cast_vote(engine, rid, pid, choice, "", 0)
    r = run_cli("pairs", "summarize", "--bundle", str(bundle), "--db", db_url)
    assert r.returncode == 0, r.stderr
    store = Store(db_url)
    (run,) = store.runs(task="human_pref").to_dict("records")
    assert run["status"] == "finished" and run["model_id"] == SYSTEMS[0]
    assert "not bound to a checkpoint" in r.stdout  # JSONL outputs without --checkpoints: no gate can use it
    m = store.metrics(task="human_pref", name="win_rate")
    assert list(m["bin"]) == [f"{SYSTEMS[0]} vs {SYSTEMS[1]}"] and list(m["n"]) == [12]
    assert m["ci_low"].iloc[0] < m["value"].iloc[0] < m["ci_high"].iloc[0]
    assert store.metrics(task="human_pref", name="cohen_kappa")["value"].iloc[0] == pytest.approx(0.0)


def test_export_from_store_samples(tmp_path, db_url):
    Store = pytest.importorskip("evalsuite.store").Store

    store = Store(db_url)
    for system, f0 in (("sysA", 200), ("sysB", 300)):
        run_id = store.start_run(task="longform_story", task_version="1", task_kind="generation", model_id=system,
                                 model_hash=f"hash-{system}", model_spec=system, config={}, seed=0, n_units=3,
                                 code_version="test")
        for i in range(3):
            wav = tmp_path / f"{system}{i}.wav"
            write_wav(wav, f0 + i)
            data = {"prompt": f"prompt {i}", "text": f"{system} says {i}", "audio": str(wav)}
            store.add_unit(run_id, f"p{i}", [{"name": "output", "data": data}])
        store.finish_run(run_id)
    out = tmp_path / "b"
    r = run_cli("pairs", "export", "--systems", "sysA,sysB", "--task", "longform_story", "--n", "3",
                "--out", str(out), "--db", db_url)
    assert r.returncode == 0, r.stderr
    assert len(load_served(out).items) == 3 and len(list((out / "audio").iterdir())) == 6
    key = json.loads((out / "key" / "key.json").read_text())
    assert key["checkpoints"] == {"sysA": "hash-sysA", "sysB": "hash-sysB"}  # each system bound to its run's weights
    r = run_cli("pairs", "export", "--systems", "sysA,sysC", "--task", "longform_story", "--n", "3",
                "--out", str(tmp_path / "c"), "--db", db_url)
    assert r.returncode == 2 and "no finished run of task 'longform_story' for model 'sysC'" in r.stderr
