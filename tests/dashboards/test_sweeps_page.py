"""The Sweeps page under AppTest: a real Optuna study in the results store's database (trials added with their
values, as a finished sweep leaves them) shows its settings, the paired comparison and the charts; a store without
sweeps says how to run one."""
import pytest

optuna = pytest.importorskip("optuna")  # the `sweep` extra

from evalsuite.store import Store  # noqa: E402
from evalsuite.sweep.spec import SweepSpec  # noqa: E402
from evalsuite.sweep.study import open_study  # noqa: E402

from test_app import app, page, texts  # noqa: E402

SPEC = SweepSpec.model_validate({
    "study": "toy", "train": "tiny-ttt", "space": {"model_overrides.ttt_type": {"grid": ["linear", "mlp"]}},
    "seeds": [0, 1, 2], "default": {"model_overrides.ttt_type": "linear"}})


def test_sweeps_page_shows_a_study(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = open_study(SPEC, url)
    dist = {"model_overrides.ttt_type": optuna.distributions.CategoricalDistribution(["linear", "mlp"]),
            "seed": optuna.distributions.CategoricalDistribution([0, 1, 2])}
    values = {("linear", 0): 10.0, ("linear", 1): 11.0, ("linear", 2): 12.5, ("mlp", 0): 9.0, ("mlp", 1): 10.5}
    for grid_id, ((kind, seed), value) in enumerate(values.items()):
        study.add_trial(optuna.trial.create_trial(params={"model_overrides.ttt_type": kind, "seed": seed},
                                                  distributions=dist, value=value, system_attrs={"grid_id": grid_id}))
    study.add_trial(optuna.trial.create_trial(params={"model_overrides.ttt_type": "mlp", "seed": 2}, distributions=dist,
                                              state=optuna.trial.TrialState.PRUNED, intermediate_values={40: 30.0},
                                              value=30.0, system_attrs={"grid_id": 5}))
    at = page(app(monkeypatch, url), "Sweeps")
    table = at.dataframe[0].value
    assert list(table["setting"]) == ["ttt_type=mlp", "ttt_type=linear"] and list(table["n"]) == [2, 3]
    assert list(table["pruned"]) == [1, 0]
    assert "cannot decide with 2 pairs" in texts(at)
    assert len(at.get("vega_lite_chart")) == 2  # the trials, and ttt_type against the objective


def test_sweeps_page_without_studies_says_how_to_run_one(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 's.db'}"
    Store(url)
    at = page(app(monkeypatch, url), "Sweeps")
    assert "ttt-omni sweep" in texts(at)
    assert "studies" not in Store(url).frame(__import__("sqlalchemy").text(
        "SELECT name FROM sqlite_master WHERE type='table'"))["name"].tolist()  # the page created no tables
