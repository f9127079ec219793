"""bench/reliability.py's rater-load part end to end at a tiny size, through `evalsuite raters serve --workers 2`
(several server processes on one SQLite store): every vote sent is stored once. Times are the benchmark's business."""
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "reliability.py"


def test_rater_load_with_two_server_processes_stores_every_vote(tmp_path):
    spec = importlib.util.spec_from_file_location("reliability_bench", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = bench.rater_load(tmp_path, raters=4, votes=3, workers=2)
    assert row["votes_sent"] == row["votes_accepted"] == row["votes_stored"] == 12
    assert row["requests"] == 4 * (1 + 2 * 3) and row["status_5xx"] == 0
