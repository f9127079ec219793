"""Pair export: determinism from the seed, the key kept apart from what raters are served, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evalsuite.humaneval.bundle import BundleError, export_bundle, load_key, load_served, read_outputs_jsonl

from support.humaneval import SYSTEMS, make_bundle, write_system_outputs

REPO = Path(__file__).resolve().parents[2]


def served_files(bundle: Path) -> dict[str, bytes]:
    return {str(p.relative_to(bundle)): p.read_bytes() for p in sorted(bundle.rglob("*")) if p.is_file() and "key" not in p.relative_to(bundle).parts}


def test_same_seed_same_bundle_other_seed_other_sides(tmp_path, sources):
    a = make_bundle(tmp_path, sources, n=5, seed=11, name="a")
    b = make_bundle(tmp_path, sources, n=5, seed=11, name="b")
    c = make_bundle(tmp_path, sources, n=5, seed=12, name="c")
    assert served_files(a) == served_files(b)
    assert (a / "key" / "key.json").read_bytes() == (b / "key" / "key.json").read_bytes()
    assert served_files(a) != served_files(c)
    key = load_key(a)
    assert key["seed"] == 11 and key["systems"] == list(SYSTEMS)
    assert len(key["pairs"]) == 5 and len(load_served(a).items) == 5


def test_sides_are_randomised_and_key_matches_items(tmp_path, sources):
    bundle = make_bundle(tmp_path, sources, n=6, seed=3)
    key, served = load_key(bundle), load_served(bundle)
    lefts = [p["left"]["system"] for p in key["pairs"].values()]
    assert set(lefts) == set(SYSTEMS), "with 6 pairs and seed 3 both systems appear on the left"
    texts = {s: {r.prompt_id: r.text for r in read_outputs_jsonl(p).values()} for s, p in sources.items()}
    for pid, item in served.items.items():
        k = key["pairs"][pid]
        assert item["left"]["text"] == texts[k["left"]["system"]][k["prompt_id"]]
        assert item["right"]["text"] == texts[k["right"]["system"]][k["prompt_id"]]
        # audio copied under an opaque name, byte-identical to the source
        assert (bundle / "audio" / f"{item['left']['audio']}.wav").read_bytes() == Path(k["left"]["audio_source"]).read_bytes()


def test_served_part_holds_no_identity(tmp_path, sources):
    bundle = make_bundle(tmp_path, sources, n=6)
    needles = list(SYSTEMS) + [str(p) for p in sources.values()] + [p.name for p in sources.values()]
    needles += [w.name for p in sources.values() for w in p.parent.glob("*.wav")]
    for rel, data in served_files(bundle).items():
        for needle in needles:
            assert needle.encode() not in data, f"{needle!r} leaks into {rel}"
            assert needle not in rel
    assert {p.name for p in (bundle / "export").iterdir()} == {"pairs.csv", "pairs.jsonl"}


def test_key_out_writes_key_outside_bundle(tmp_path, sources):
    outputs = {s: read_outputs_jsonl(p) for s, p in sources.items()}
    key_path = tmp_path / "secret" / "key.json"
    export_bundle(outputs, "t", 3, 1, tmp_path / "b", key_out=key_path)
    assert not (tmp_path / "b" / "key").exists()
    assert load_key(key_path)["bundle_id"] == load_served(tmp_path / "b").bundle_id
    assert key_path.with_suffix(".csv").read_text().startswith("pair_id,prompt_id,left_system,right_system")


def test_three_systems_pair_every_combination(tmp_path, sources):
    sources = dict(sources, third=write_system_outputs(tmp_path / "src", "third", 6, audio=False))
    bundle = make_bundle(tmp_path, sources, n=4)
    key = load_key(bundle)
    assert len(key["pairs"]) == 12
    combos = {frozenset((p["left"]["system"], p["right"]["system"])) for p in key["pairs"].values()}
    assert len(combos) == 3


def test_bad_input_is_refused_and_nothing_is_left(tmp_path, sources):
    outputs = {s: read_outputs_jsonl(p) for s, p in sources.items()}
    with pytest.raises(BundleError, match=r"number of prompts: expected 1\.\.6"):
        export_bundle(outputs, "t", 7, 1, tmp_path / "x")
    make_bundle(tmp_path, sources, n=2, name="exists")
    with pytest.raises(BundleError, match="never overwritten"):
        make_bundle(tmp_path, sources, n=2, name="exists")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt_id": "p1", "prompt": "x"}\n')
    with pytest.raises(BundleError, match=r"bad.jsonl:1: field 'text' missing"):
        read_outputs_jsonl(bad)
    notwav = tmp_path / "w" / "x.jsonl"
    notwav.parent.mkdir()
    (notwav.parent / "a.wav").write_text("not audio")
    notwav.write_text('{"prompt_id": "p000", "prompt": "Tell a long story number 0.", "text": "t", "audio": "a.wav"}\n')
    with pytest.raises(BundleError, match="expected a PCM WAV"):
        export_bundle({"a": read_outputs_jsonl(notwav), "b": outputs[SYSTEMS[0]]}, "t", 1, 1, tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_cli_export_and_one_line_errors(tmp_path, sources):
    spec = ",".join(f"{s}={p}" for s, p in sources.items())
    cmd = [sys.executable, "-m", "evalsuite", "pairs", "export", "--systems", ",".join(SYSTEMS),
           "--task", "longform_story", "--n", "4", "--seed", "5", "--from-jsonl", spec, "--out", str(tmp_path / "b")]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "4 pairs" in r.stdout and json.loads((tmp_path / "b" / "key" / "key.json").read_text())["seed"] == 5
    r = subprocess.run(cmd[:-1] + [str(tmp_path / "c")] , capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0
    bad = cmd[:]
    bad[bad.index("--n") + 1] = "99"
    r = subprocess.run(bad[:-1] + [str(tmp_path / "d")], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "number of prompts: expected 1..6" in r.stderr
