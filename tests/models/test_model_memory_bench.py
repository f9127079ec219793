"""bench/model_memory.py runs end to end at a tiny size (numbers are the benchmark's business, not asserted)."""
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "model_memory.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("model_memory_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_measure_each_model_kind(bench):
    rows = {kind: bench.measure("tiny", kind, context=300, window=64, chunk=128, decode_tokens=2, device="cpu",
                                dtype="float32")
            for kind in bench.MODELS}
    assert rows["full"]["ttt_bytes"] == 0 < rows["hybrid"]["ttt_bytes"] == rows["bounded"]["ttt_bytes"]
    assert rows["bounded"]["kv_bytes"] < rows["hybrid"]["kv_bytes"] < rows["full"]["kv_bytes"]
    assert all(r["tokens_per_s"] > 0 and r["decode_peak_bytes"] > 0 for r in rows.values())
