"""The dashboard under streamlit's AppTest: every page renders on a store of real tiny runs, a gate approval made
in the page is recorded, and an empty or missing store gives a helpful page."""
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from evalsuite import gate_db
from evalsuite.checkpoint_id import checkpoint_identity

APP = str(Path(__file__).resolve().parents[2] / "dashboards" / "app.py")


def app(monkeypatch, url: str) -> AppTest:
    monkeypatch.setenv("EVALSUITE_DB", url)
    return AppTest.from_file(APP, default_timeout=120).run()


def page(at: AppTest, name: str) -> AppTest:
    at.sidebar.radio(key="page").set_value(name).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in ("title", "subheader", "markdown", "info", "success", "warning", "error",
                                             "caption") for e in getattr(at, kind))


def test_pages_render_from_the_store(filled_store, monkeypatch):
    at = app(monkeypatch, filled_store["url"])
    assert not at.exception
    runs = page(at, "Runs").dataframe[0].value
    assert {"ppl_vs_length", "train_monitor", "human_pref"} <= set(runs["task"])
    import transformers

    ppl = runs[runs["task"] == "ppl_vs_length"]
    assert set(ppl["transformers"]) == {transformers.__version__} and ppl["device"].str.startswith("cpu: ").all()
    at.selectbox(key="runs_detail").set_value(int(ppl["id"].iloc[0])).run()
    env = at.dataframe[-1].value  # the chosen run's environment, below its metric rows
    assert {"python", "torch", "code_hash", "ttt_backend"} <= set(env["field"])
    at.multiselect(key="runs_task").set_value(["train_monitor"]).run()
    assert set(at.dataframe[0].value["task"]) == {"train_monitor"}
    at.multiselect(key="runs_stage").set_value([1]).run()
    assert len(at.dataframe[0].value) == 1

    page(at, "Perplexity vs length")
    assert len(at.get("vega_lite_chart")) == 1
    table = at.table[0].value
    assert {"128", "256", "512", "n", "corpus"} <= set(table.columns) and set(table["n"]) == {1}
    assert "tiny-baseline (" in " ".join(table["model"]) and "ttt:run/final (" in " ".join(table["model"])
    assert len(at.multiselect(key="ppl_models").value) == 3  # measured alike: all three belong on the chart
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    colours = [layer["encoding"]["color"]["scale"]["range"] for layer in spec["layer"]]
    assert len(set(colours[-1])) == 3 and "#0072B2" in colours[-1]  # one distinct colour-blind-safe colour each
    assert "No finished generation-quality runs" in texts(page(at, "Generation quality"))
    assert "asr_wer" in texts(page(at, "ASR-WER drift"))
    human = page(at, "Human eval").dataframe[0].value
    assert list(human["comparison"]) == ["ttt:run/final vs tiny-baseline"]
    page(at, "Training monitor")
    assert len(at.get("vega_lite_chart")) == 5  # four monitor panels (token scale too) and the training loss
    board = texts(page(at, "Leaderboards"))
    assert "Perplexity at each context length" in board and "Human preference" in board


def test_gate_page_records_a_human_decision(filled_store, monkeypatch):
    _, model_hash = checkpoint_identity(filled_store["final"])
    before = len(gate_db.history(filled_store["url"], model_hash=model_hash))
    at = page(app(monkeypatch, filled_store["url"]), "Gate")
    label = next(o for o in at.selectbox(key="gate_ckpt").options if model_hash[:8] in o)
    at.selectbox(key="gate_ckpt").set_value(label).run()
    at.selectbox(key="gate_curriculum").set_value("configs/tiny-curriculum.yaml").run()
    shown = at.table[0].value
    assert "max |W1| < 10" in set(shown["rule"]) and "pass" in set(shown["result"])
    monitor = shown[shown["rule"] == "max |W1| < 10"].iloc[0]
    assert "train_monitor v1.W1_maxabs" in monitor["evidence used"] and "data monitor:" in monitor["evidence used"]
    ppl = shown[shown["rule"].str.startswith("ppl degradation")].iloc[0]
    assert ppl["accepts"].startswith("v1.0, data books:eval (hash ") and "n >= 5" in ppl["accepts"]
    assert ppl["result"] == "not evaluated" and "data corpus:" in ppl["detail"]  # its run read another corpus
    at.radio(key="gate_action").set_value("Approve (promote)")
    at.text_input(key="gate_name").set_value("Grace")
    at.button[0].click().run()  # no reason: refused, nothing recorded
    assert "needs your name and a reason" in texts(at)
    assert len(gate_db.history(filled_store["url"], model_hash=model_hash)) == before
    at.radio(key="gate_action").set_value("Approve (promote)")
    at.text_input(key="gate_name").set_value("Grace")
    at.text_area(key="gate_reason").set_value("curves look right at 512")
    at.button[0].click().run()
    assert not at.exception and "Recorded decision" in texts(at)
    d = gate_db.latest(filled_store["url"], model_hash, 1)
    assert (d["outcome"], d["decided_by"], d["reason"]) == ("approved", "Grace", "curves look right at 512")
    assert "W1_maxabs" in d["rules"] and d["verified_at"] is not None  # the checkpoint's files were at hand
    assert in_force(at).startswith("**approved** by Grace")
    for action, outcome in (("Reject (block)", "rejected"), ("Override (force promotion)", "forced")):
        at.radio(key="gate_action").set_value(action)  # the decision just recorded is the one in force (it lagged)
        at.text_input(key="gate_name").set_value("Alan")
        at.text_area(key="gate_reason").set_value(f"{outcome} for the test")
        at.button[0].click().run()
        assert in_force(at).startswith(f"**{outcome}** by Alan")


def in_force(at) -> str:
    """The text under the gate page's "Decision in force" heading."""
    blocks = [m.value for m in at.markdown]
    return next(v for v in blocks if v.startswith("**") and " by " in v)


def test_a_file_that_is_not_a_store_is_one_message(tmp_path, monkeypatch):
    db = tmp_path / "results.db"
    db.write_text("my notes\n" * 50)
    at = app(monkeypatch, f"sqlite:///{db}")
    assert not at.exception and "the file is not an SQLite database" in texts(at)


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_missing_or_empty_store_shows_help(tmp_path, monkeypatch, make):
    db = tmp_path / "results.db"
    if make == "empty":
        from evalsuite.store import Store
        Store(f"sqlite:///{db}")
    at = app(monkeypatch, f"sqlite:///{db}")
    assert not at.exception
    assert "evalsuite run --task ppl_vs_length" in texts(at)
    if make == "missing":
        assert not db.exists()  # the dashboard never creates a store
    else:
        for name in ("Perplexity vs length", "Human eval", "Training monitor", "Gate", "Leaderboards"):
            assert page(at, name).info


def test_orders_of_magnitude_get_a_log_axis_and_missing_cells_are_blank():
    import pandas as pd

    from dashboards.charts import spans_orders_of_magnitude
    from dashboards.data import blank_missing

    assert spans_orders_of_magnitude(pd.Series([140.0, 200.0, 3100.0]))  # a curriculum checkpoint beside tiny ones
    assert not spans_orders_of_magnitude(pd.Series([104.0, 140.0, 200.0]))
    table = blank_missing(pd.DataFrame({"1k": [1.5, None]}))
    assert table["1k"].tolist() == [1.5, ""]
