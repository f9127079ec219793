"""The retrieval heatmap page under streamlit's AppTest, on a store of real passkey runs of the tiny TTT model and
its attention baseline: one panel per model, n in every cell, accuracy by length, and a cell's samples to read."""
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "dashboards" / "app.py")
LENGTHS = [384, 768]


def chart_data(chart):
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    return convert_arrow_bytes_to_pandas_df(chart.proto.datasets[0].data.data)


@pytest.fixture(scope="module")
def retrieval_store(tmp_path_factory):
    import dataclasses

    from evalsuite.registry import Registry
    from evalsuite.runner import run_task
    from evalsuite.store import Store

    url = f"sqlite:///{tmp_path_factory.mktemp('retrieval') / 'results.db'}"
    spec = Registry().get("passkey")
    spec = dataclasses.replace(spec, lengths=LENGTHS, params={**spec.params, "depths": [0, 50, 100], "n": 2})
    store = Store(url)
    for model in ("tiny", "tiny-baseline"):
        run_task(spec, model, store=store, progress=False)
    return url


def test_heatmaps_side_by_side_with_n_per_cell(retrieval_store, monkeypatch):
    monkeypatch.setenv("EVALSUITE_DB", retrieval_store)
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.radio(key="page").set_value("Retrieval heatmaps").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="retrieval_task").value == "passkey"
    charts = at.get("vega_lite_chart")
    assert len(charts) == 1
    spec = json.loads(charts[0].proto.spec)
    assert spec["facet"]["column"]["field"] == "model"  # one panel per model, side by side
    cells = chart_data(charts[0])
    assert {m.split(" ")[0] for m in cells["model"]} == {"tiny-ttt", "tiny-baseline"}
    assert len(cells) == 2 * len(LENGTHS) * 3 and (cells["n"] == 2).all()  # every (length, depth) cell of each
    assert cells["label"].str.endswith("n=2").all()  # the n written in the cell
    assert cells["value"].between(0, 1).all()
    table = at.dataframe[0].value  # accuracy by length
    assert list(table.columns) == LENGTHS and len(table) == 2
    assert all("n=6" in cell for cell in table.to_numpy().ravel())

    at.selectbox(key="retrieval_metric").set_value("generate_accuracy").run()
    assert (chart_data(at.get("vega_lite_chart")[0])["n"] == 2).all()
    at.selectbox(key="retrieval_cell").set_value(f"length={LENGTHS[-1]},depth=100").run()
    assert "distance" in at.subheader[1].value  # accuracy by needle distance before the samples
    samples = at.dataframe[-1].value
    assert len(samples) == 2 and {"answer", "output", "rank", "generate", "prompt"} <= set(samples.columns)
    assert samples["answer"].str.fullmatch(r"\d{5}").all() and samples["depth"].eq(1.0).all()
    assert samples["prompt"].str.contains("What is the pass key?").all()


def test_no_retrieval_runs_says_how_to_make_one(tmp_path, monkeypatch):
    from evalsuite.store import Store

    url = f"sqlite:///{tmp_path / 'results.db'}"
    Store(url)
    monkeypatch.setenv("EVALSUITE_DB", url)
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.radio(key="page").set_value("Retrieval heatmaps").run()
    assert not at.exception
    assert "evalsuite run --task passkey" in at.info[0].value
