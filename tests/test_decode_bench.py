"""bench/decode.py end to end on the bundled tiny model (one subprocess per model/context): it prints its table and
writes its JSON with every field; the times themselves are the benchmark's business, never asserted."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "decode.py"


def _run(tmp_path, *args):
    out = tmp_path / "decode.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), *args, "--out", str(out)], capture_output=True, text=True)
    return proc, out


def test_the_bench_writes_its_table_and_json(tmp_path):
    proc, out = _run(tmp_path, "--models", "tiny,tiny@window=32,sinks=2", "--contexts", "100", "--chunk", "48",
                     "--decode-tokens", "3", "--warmup", "1", "--profile-steps", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["meta"]["read_bandwidth_bytes_per_s"] > 0 and data["meta"]["cpu"]
    rows = {r["model"]: r for r in data["rows"]}
    assert set(rows) == {"tiny", "tiny@window=32,sinks=2"}
    for r in rows.values():
        assert r["context"] == 100 and r["decode_tokens"] == 3
        assert r["ms_median"] > 0 and r["ms_p90"] >= r["ms_median"] and r["weight_read_bound_ms"] > 0
        assert r["prefill_peak_rss"] > 0 and r["decode_peak_rss"] > 0 and r["ttt_bytes"] > 0
        b = r["breakdown_ms"]
        assert b["ttt"] > 0 and b["attention"] > 0 and b["step"] >= b["ttt"] + b["attention"]
    assert rows["tiny@window=32,sinks=2"]["kv_bytes"] < rows["tiny"]["kv_bytes"]
    assert "| `tiny` | 100 |" in proc.stdout


def test_the_generate_path_times_every_step(tmp_path):
    proc, out = _run(tmp_path, "--models", "tiny", "--contexts", "64", "--decode-tokens", "2", "--warmup", "1",
                     "--path", "generate")
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(out.read_text())["rows"][0]
    assert row["path"] == "generate" and row["decode_tokens"] == 2 and "breakdown_ms" not in row


@pytest.mark.parametrize("args, message", [(["--contexts", "1x"], "--contexts"),
                                           (["--decode-tokens", "0"], "--decode-tokens must be >= 1")])
def test_bad_arguments_are_one_line_errors(tmp_path, args, message):
    proc, _ = _run(tmp_path, *args)
    assert proc.returncode == 2 and message in proc.stderr
