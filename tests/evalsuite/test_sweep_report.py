"""The sweep report: the t interval against its textbook values, settings ranked with their seeds, the best against
the default paired by seed (and saying when the permutation test cannot decide), the JSON round trip and the plot."""
import math

import pandas as pd
import pytest

from evalsuite.cli import main
from evalsuite.sweep.report import best_vs_default, plot, read_json, settings_table, t_interval, write_json
from evalsuite.sweep.spec import SweepSpec

SPEC = SweepSpec.model_validate({
    "study": "toy", "train": "tiny-ttt", "space": {"model_overrides.ttt_type": {"grid": ["linear", "mlp"]}},
    "seeds": [0, 1, 2, 3, 4, 5], "default": {"model_overrides.ttt_type": "linear"}})


def rows(linear, mlp, states=None):
    out = []
    for name, values in (("linear", linear), ("mlp", mlp)):
        for seed, v in enumerate(values):
            out.append({"trial": len(out), "state": (states or {}).get((name, seed), "complete"), "value": v,
                        "seed": seed, "model_overrides.ttt_type": name, "setting": f"ttt_type={name}"})
    return pd.DataFrame(out)


def test_t_interval_matches_the_textbook():
    mean, low, high = t_interval([1.0, 2.0, 3.0])  # s = 1, t_{0.975,2} = 4.3027
    assert mean == 2.0 and low == pytest.approx(2 - 4.302653 / math.sqrt(3)) and high == pytest.approx(
        2 + 4.302653 / math.sqrt(3))
    assert math.isnan(t_interval([5.0])[1]) and math.isnan(t_interval([])[0])


def test_settings_are_ranked_with_their_complete_seeds_only():
    table = settings_table(rows([10, 11, 12], [8, 9, 30], states={("mlp", 2): "pruned"}), SPEC)
    assert list(table["setting"]) == ["ttt_type=mlp", "ttt_type=linear"]  # minimised: mlp's mean 8.5 first
    mlp = table.iloc[0]
    assert (mlp["n"], mlp["mean"], mlp["pruned"], mlp["seeds"], mlp["default"]) == (2, 8.5, 1, "0 1", False)
    assert table.iloc[1]["default"]


def test_best_against_default_is_paired_by_seed_and_says_when_it_cannot_decide():
    few = best_vs_default(rows([10, 11, 12], [9, 10, 11.5]), SPEC)
    assert few.best == "ttt_type=mlp" and few.n == 3 and few.mean_diff == pytest.approx(-0.8333333)
    assert not few.decidable and math.isnan(few.p_value) and "cannot decide with 3 pairs" in few.sentence("ppl")
    many = best_vs_default(rows([10, 11, 12, 13, 14, 15], [9, 10, 11, 12, 13, 14]), SPEC)
    assert many.decidable and many.p_value == pytest.approx(2 / 64) and many.verdict == "best is better"
    assert many.ci_low <= -1 <= many.ci_high


def test_json_round_trip_and_cli_from_json(tmp_path, capsys):
    data = rows([10, 11, 12], [9, 10, 11.5])
    path = write_json(tmp_path / "toy.json", SPEC, data)
    spec, back = read_json(path)
    assert spec == SPEC and back.equals(data)
    png = tmp_path / "toy.png"
    assert main(["sweep", "report", "--from-json", str(path), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "ttt_type=mlp" in out and "cannot decide" in out and png.stat().st_size > 0
    assert main(["sweep", "report", "--from-json", str(path), "--format", "csv"]) == 0
    csv = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert list(csv["n"]) == [3, 3] and csv["mean"].iloc[0] == pytest.approx(10.1666667)
    assert main(["sweep", "report", "--from-json", str(path), "--trials", "--format", "csv"]) == 0
    trials = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert list(trials["trial"]) == list(range(6)) and list(trials["value"]) == [10, 11, 12, 9, 10, 11.5]


def test_a_file_that_is_no_summary_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["sweep", "report", "--from-json", str(bad)]) == 2
    assert "not a study summary" in capsys.readouterr().err
    assert main(["sweep", "report"]) == 2


def test_plot_marks_pruned_and_failed_trials(tmp_path):
    out = plot(rows([10, 11, 12], [9, 10, 11.5], states={("mlp", 2): "fail"}), SPEC, tmp_path / "p.png")
    assert out.stat().st_size > 10_000


def test_a_study_whose_only_trial_was_interrupted_is_reported_and_plotted(tmp_path, capsys):
    """A killed or interrupted trial is failed with no value; before any trial completes the plot had no numbers."""
    data = rows([None], [])
    data["state"] = "fail"
    path = write_json(tmp_path / "toy.json", SPEC, data)
    png = tmp_path / "toy.png"
    assert main(["sweep", "report", "--from-json", str(path), "--plot", str(png)]) == 0
    assert f"wrote {png}" in capsys.readouterr().out and png.stat().st_size > 0


@pytest.mark.parametrize("preset", ["ablation-ttt-type", "ablation-mini-batch", "ablation-ttt-layers",
                                    "ablation-base-lr", "ablation-window"])
def test_the_bundled_presets_are_valid_small_grids(preset):
    from evalsuite.sweep.spec import load_spec

    spec = load_spec(preset)  # found by name from anywhere, every setting accepted by the trainer and the model
    assert spec.study == preset and spec.sampler == "grid" and spec.default and 2 <= len(spec.seeds) <= 3
    assert spec.n_trials() <= 6 and spec.set["steps"] <= 200 and spec.set["context"] == 256
