"""Hyperparameter sweeps and ablations over training runs, answered by the suite itself.

spec.py    the sweep YAML (pydantic) and the training config of one setting
trial.py   one trial: train for the budget, evaluate through the runner, store the runs
study.py   the Optuna study in the results store's database, resumable after kill -9; the worker loop
report.py  mean +- t interval over seeds per setting, the best against the default (paired by seed), the plot

`ttt-omni sweep SPEC.yaml` runs a worker, `evalsuite sweep report STUDY` reports (docs/sweeps.md).
"""
