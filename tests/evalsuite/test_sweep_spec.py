"""Sweep specs as written in YAML: every kind of searched field with every sampler that takes it (each suggestion
inside its range, of its type), the module docstring's example, and budgets that cannot be met refused."""
import re
import textwrap

import pytest

optuna = pytest.importorskip("optuna")  # the `sweep` extra

import evalsuite.sweep.spec as spec_module  # noqa: E402
from evalsuite.sweep.spec import SweepSpecError, load_spec  # noqa: E402
from evalsuite.sweep.study import open_study, params_of, progress  # noqa: E402

SPACES = {  # a kind of field: (its YAML, a check of each suggested value)
    "grid": ("model_overrides.ttt_type: {grid: [linear, mlp]}", lambda v: v in ("linear", "mlp")),
    "uniform": ("lr: {uniform: [0.001, 0.01]}", lambda v: type(v) is float and 0.001 <= v <= 0.01),
    "log_uniform": ("ttt_lr: {log_uniform: [0.0001, 0.01]}", lambda v: type(v) is float and 1e-4 <= v <= 1e-2),
    "int_range": ("warmup: {int_range: [1, 4]}", lambda v: type(v) is int and 1 <= v <= 4),
}
CASES = [(kind, sampler) for kind in SPACES for sampler in ("grid", "random", "tpe")
         if sampler != "grid" or kind == "grid"]


def write(tmp_path, space: str, sampler: str, trials: int | None, seeds="[0, 1]") -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(f"""\
        study: kinds
        train: tiny-ttt
        set: {{steps: 4, context: 64}}
        space:
          {space}
        sampler: {sampler}
        seeds: {seeds}
        """) + (f"trials: {trials}\n" if trials is not None else ""))
    return str(path)


@pytest.mark.parametrize("kind, sampler", CASES)
def test_every_kind_of_field_with_every_sampler(tmp_path, kind, sampler):
    """The study a worker opens suggests each field inside its space; TPE past its 10 random startup trials."""
    space, valid = SPACES[kind]
    trials = None if sampler == "grid" else 4 if kind == "grid" else 12  # a grid has 4 settings x seeds
    spec = load_spec(write(tmp_path, space, sampler, trials))
    name = next(iter(spec.space))
    study = open_study(spec, str(tmp_path / "s.db"))
    seen = []

    def objective(trial):
        params = params_of(spec, trial)
        seen.append(params)
        return float(len(seen))
    study.optimize(objective, n_trials=spec.n_trials())
    assert len(seen) == (trials or 4)
    assert all(valid(p[name]) and p["seed"] in (0, 1) for p in seen), seen
    assert progress(study, spec).done
    if sampler == "grid":  # every point x seed exactly once
        assert sorted((p[name], p["seed"]) for p in seen) == [("linear", 0), ("linear", 1), ("mlp", 0), ("mlp", 1)]
    elif kind != "grid":
        assert len({p[name] for p in seen}) > 1  # a range is searched, not one value


def test_the_docstring_example_is_a_valid_spec(tmp_path):
    example = re.search(r"\n\n((?: {4}.*\n)+)", spec_module.__doc__).group(1)
    path = tmp_path / "example.yaml"
    path.write_text(textwrap.dedent(example))
    spec = load_spec(path)
    assert spec.space["ttt_lr"].log_uniform == [1e-5, 1e-2] and spec.sampler == "tpe" and spec.n_trials() == 12


@pytest.mark.parametrize("space, trials, message", [
    ("model_overrides.ttt_type: {grid: [linear, mlp]}", 1000000000000,
     "trials: 1000000000000 is more than the 4 settings x seeds of this space"),
    ("lr: {uniform: [0.01]}", 3, "space.lr: uniform: expected [low, high], got [0.01]"),
    ("lr: {uniform: [0.01, 0.001]}", 3, "low < high"),
    ("warmup: {int_range: [1, 2.5]}", 3, "space.warmup.int_range[1]: expected an integer"),
    ("ttt_lr: {log_uniform: [0, 1]}", 3, "expected low > 0"),
])
def test_budgets_and_ranges_that_cannot_be_met_are_one_line(tmp_path, space, trials, message):
    with pytest.raises(SweepSpecError) as e:
        load_spec(write(tmp_path, space, "random", trials))
    assert message in str(e.value) and len(str(e.value).splitlines()) == 1
