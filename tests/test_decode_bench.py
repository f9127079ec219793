"""bench/decode.py end to end on the bundled tiny model: it prints its table and writes its JSON with every field;
the times themselves are the benchmark's business, never asserted."""
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "decode.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("decode_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bench_writes_its_table_and_json(bench, tmp_path, capsys):
    out = tmp_path / "decode.json"
    assert bench.main(["--models", "tiny@window=32,sinks=2", "--contexts", "100", "--chunk", "48",
                       "--decode-tokens", "3", "--warmup", "1", "--profile-steps", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["meta"]["read_bandwidth_bytes_per_s"] > 0 and data["meta"]["cpu"]
    rows = {r["model"]: r for r in data["rows"]}
    assert set(rows) == {"tiny@window=32,sinks=2"}
    for r in rows.values():
        assert r["context"] == 100 and r["decode_tokens"] == 3
        assert r["ms_median"] > 0 and r["ms_p90"] >= r["ms_median"] and r["weight_read_bound_ms"] > 0
        assert r["prefill_peak_rss"] > 0 and r["decode_peak_rss"] > 0 and r["ttt_bytes"] > 0
        b = r["breakdown_ms"]
        assert b["ttt"] > 0 and b["attention"] > 0 and b["step"] >= b["ttt"] + b["attention"]
    assert "| `tiny@window=32,sinks=2` | 100 |" in capsys.readouterr().out


def test_the_generate_path_times_every_step(bench):
    row = bench.measure("tiny", 64, chunk=32, decode_tokens=2, warmup=1, profile_steps=1, path="generate",
                        device="cpu")
    assert row["path"] == "generate" and row["decode_tokens"] == 2 and row["ms_median"] > 0
    assert "breakdown_ms" not in row


@pytest.mark.parametrize("args, message", [(["--contexts", "1x"], "--contexts"),
                                           (["--decode-tokens", "0"], "--decode-tokens must be >= 1")])
def test_bad_arguments_are_one_line_errors(bench, args, message, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(args)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_specs_with_options_split_from_the_list(bench):
    assert bench.split_specs("smollm2,smollm2-ttt@window=1024,sinks=4,tiny") == [
        "smollm2", "smollm2-ttt@window=1024,sinks=4", "tiny"]


def test_its_section_of_the_performance_table_is_replaced_and_the_rest_kept(bench, tmp_path):
    table = tmp_path / "performance.md"
    table.write_text("# GPU tables\n\n| a |\n")
    bench.write_section(table, f"{bench.SECTION_START}\nfirst\n{bench.SECTION_END}")
    bench.write_section(table, f"{bench.SECTION_START}\nsecond\n{bench.SECTION_END}")
    text = table.read_text()
    assert text.startswith("# GPU tables\n\n| a |\n") and "second" in text and "first" not in text
