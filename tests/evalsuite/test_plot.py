"""`evalsuite plot`: a PNG of a metric over numeric bins for several runs; clear errors otherwise."""

from evalsuite.cli import main
from evalsuite.plot import bin_value, figure, length_label
from evalsuite.store import Store


def _run(store, model_id, ppls, seed):
    run_id = store.start_run(task="ppl_vs_length", task_version="1", task_kind="ppl_vs_length", model_id=model_id,
                             model_hash=model_id, model_spec=model_id, config={}, seed=seed, n_units=0,
                             code_version="test")
    store.finalize(run_id, lambda: [dict(name="ppl", bin=f"length={L}", value=p, ci_low=p - 1, ci_high=p + 1, n=3)
                                    for L, p in ppls.items()] + [dict(name="tokens", bin="", value=10.0, n=1)])
    return run_id


def test_bin_value():
    assert bin_value("length=4096") == 4096 and bin_value("window=2.5") == 2.5
    assert bin_value("") is None and bin_value("tiny vs *") is None


def test_lengths_are_labelled_as_the_tasks_write_them(tmp_path):
    assert [length_label(x) for x in (1024, 61440, 65536, 300, 2.5)] == ["1k", "60k", "64k", "300", "2.5"]
    store = Store(tmp_path / "s.db")
    run = _run(store, "ttt", {1024: 30.0, 4096: 27.0, 61440: 25.0}, 0)
    labels = [t.get_text() for t in figure(store, [run], "ppl").axes[0].get_xticklabels()]
    assert labels == ["1k", "4k", "60k"]


def test_plot_two_runs(tmp_path, capsys):
    db = str(tmp_path / "store.db")
    store = Store(db)
    a = _run(store, "ttt", {1024: 30.0, 2048: 28.0, 4096: 27.0}, 0)
    b = _run(store, "baseline", {1024: 29.0, 2048: 31.0, 4096: 33.0}, 1)
    out = tmp_path / "ppl.png"
    assert main(["plot", str(a), str(b), "--db", db, "--output", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert main(["plot", str(a), "--metric", "wer", "--db", db, "--output", str(out)]) == 2
    assert "has no 'wer' rows" in capsys.readouterr().err
    assert main(["plot", "99", "--db", db]) == 2
