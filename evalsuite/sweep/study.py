"""The study: Optuna with its RDB storage in the results store's database, and the worker loop.

The study's tables sit beside the store's in the same database URL (a SQLite file on one machine; PostgreSQL when
workers on several machines share one study). A worker runs one trial at a time until the study is settled: every
grid point x seed (or `trials` trials) is complete, pruned or failed. Start several on one machine to use several
cores, each with its own torch threads (`ttt-omni sweep SPEC --threads 1` in N shells).

A worker killed with kill -9 leaves its trial RUNNING with a heartbeat that stops. After 2 x `heartbeat_s` any worker
marks it failed and queues a retry with the same parameters (Optuna's RetryHeartbeatStaleTrialCallback, intermediate
values kept); the retry continues the killed training from its last checkpoint and reuses finished evaluations. A
point counts once, by its last try: never lost, never double-counted. After `max_retries` it stays failed. Ctrl-C
stops a worker with one line (exit 130); its trial is queued again at once, for the next worker to continue like a
killed one, and that retry does not count against `max_retries`. A trial that fails by itself (the monitor stops a
diverging run, NaN in the model) is failed and not retried: its setting is the cause.
"""
from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import fail_stale_trials
from optuna.trial import TrialState
from sqlalchemy.exc import IntegrityError, OperationalError

from ttt_omni.ops.validate import NonFiniteError
from ttt_omni.train.monitor import MonitorAlarm

from ..database import SQLITE_BUSY_TIMEOUT_S, database_url, redact, sqlite_transactions
from ..errors import EvalsuiteError, NonFiniteModelError
from ..store import Store
from .spec import SweepSpec, decode, encode
from .trial import TrialPruned, run_trial, trial_dir

SETUP_ATTEMPTS = 5
SPEC_ATTR = "sweep_spec"
DIGEST_ATTR = "sweep_spec_digest"
# a failure of the trial's setting: recorded as a failed trial, and the worker goes on
SETTING_FAILURES = (MonitorAlarm, NonFiniteError, NonFiniteModelError)
# where Optuna (the locked version) logs a failed trial
optuna_log = logging.getLogger("optuna.study._optimize")


@contextmanager
def experimental():
    """Heartbeats, their stale-trial retry and fail_stale_trials are marked experimental in Optuna; the lock pins
    the version they are used with here, so their warnings are silenced where they are used."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def storage(db: str | None, spec: SweepSpec | None = None) -> RDBStorage:
    """Optuna's RDB storage on the results store's database (`db`: URL or SQLite file; None: $EVALSUITE_DB or
    results/evalsuite.db). With `spec`, heartbeats and the retry of killed trials are on."""
    url = database_url(db)
    Store(url)  # the store's tables (and the SQLite file in WAL mode) first
    kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}} if url.startswith("sqlite") else {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with experimental():
        beats = {} if spec is None else dict(
            heartbeat_interval=spec.heartbeat_s, grace_period=2 * spec.heartbeat_s,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=spec.max_retries,
                                                                            inherit_intermediate_values=True))
        for attempt in range(SETUP_ATTEMPTS):  # workers starting together on a new database race to make its tables
            try:
                rdb = RDBStorage(url, engine_kwargs=kwargs, **beats)
                break
            except (OperationalError, IntegrityError):
                if attempt == SETUP_ATTEMPTS - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))
    if url.startswith("sqlite"):  # the store's transactions (BEGIN IMMEDIATE): no upgrade deadlock between workers
        sqlite_transactions(rdb.engine)
        rdb.engine.dispose()
    return rdb


def sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    if spec.sampler == "grid":
        space = {name: [encode(v) for v in s.grid] for name, s in spec.space.items()}
        return optuna.samplers.GridSampler({**space, "seed": spec.seeds}, seed=0)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=0)
    return optuna.samplers.TPESampler(seed=0)


def pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    if spec.pruning.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.pruning.startup_trials, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def open_study(spec: SweepSpec, db: str | None = None) -> optuna.Study:
    """The spec's study, created on first use; a study of that name made from another spec is refused."""
    for attempt in range(SETUP_ATTEMPTS):  # two workers creating the study at once: one creates, one loads
        try:
            study = optuna.create_study(study_name=spec.study, storage=storage(db, spec), sampler=sampler(spec),
                                        pruner=pruner(spec), direction=spec.objective.direction, load_if_exists=True)
            break
        except (OperationalError, IntegrityError, optuna.exceptions.DuplicatedStudyError):
            if attempt == SETUP_ATTEMPTS - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    attrs = study.user_attrs
    if DIGEST_ATTR not in attrs:
        study.set_user_attr(SPEC_ATTR, spec.model_dump(mode="json"))
        study.set_user_attr(DIGEST_ATTR, spec.digest())
    elif attrs[DIGEST_ATTR] != spec.digest():
        raise EvalsuiteError(f"study {spec.study!r} in {redact(database_url(db))} was started from another spec (its "
                             "space, budget or objective differ); give this one another `study` name")
    return study


def study_names(db: str | None = None) -> list[str]:
    """The studies in the database (none, and nothing created, when no sweep has run there)."""
    from sqlalchemy import inspect

    if not inspect(Store(db).engine).has_table("studies"):
        return []
    return [s.study_name for s in optuna.get_all_study_summaries(storage(db))]


def load_study(name: str, db: str | None = None) -> tuple[optuna.Study, SweepSpec]:
    """An existing study and the spec it was made from (for reports)."""
    names = study_names(db)
    if name not in names:
        raise EvalsuiteError(f"no study {name!r} in {redact(database_url(db))}; studies there: "
                             f"{', '.join(names) or 'none'}")
    study = optuna.load_study(study_name=name, storage=storage(db))
    if SPEC_ATTR not in study.user_attrs:
        raise EvalsuiteError(f"study {name!r} in {redact(database_url(db))} was not made by `ttt-omni sweep` (no "
                             "sweep spec)")
    return study, SweepSpec.model_validate(study.user_attrs[SPEC_ATTR])


def origin(trial: optuna.trial.FrozenTrial) -> int:
    """The number of the trial this one retries (its own number if it is no retry)."""
    return trial.system_attrs.get("failed_trial", trial.number)


def params_of(spec: SweepSpec, trial) -> dict:
    """The trial's field values (decoded from what Optuna stores) and its seed, suggesting those not yet set."""
    out = {}
    for name, s in spec.space.items():
        if s.grid is not None:
            out[name] = decode(s, trial.suggest_categorical(name, [encode(v) for v in s.grid]))
        elif s.int_range is not None:
            out[name] = trial.suggest_int(name, *s.int_range)
        else:
            out[name] = trial.suggest_float(name, *(s.uniform or s.log_uniform), log=s.log_uniform is not None)
    out["seed"] = trial.suggest_categorical("seed", spec.seeds)
    return out


@dataclass
class Progress:
    target: int
    settled: int  # points whose last try is complete, pruned or failed
    running: int
    waiting: int  # retries queued

    @property
    def done(self) -> bool:
        return self.settled >= self.target


def progress(study: optuna.Study, spec: SweepSpec) -> Progress:
    """Where the study stands, each point (grid point x seed, or trial with its retries) counted once."""
    trials = study.get_trials(deepcopy=False)
    by_point: dict = {}
    for t in trials:
        point = t.system_attrs.get("grid_id") if spec.sampler == "grid" else origin(t)
        by_point.setdefault(point, []).append(t.state)
    settled = running = waiting = 0
    for states in by_point.values():
        if TrialState.WAITING in states:
            waiting += 1
        elif TrialState.RUNNING in states:
            running += 1
        else:
            settled += 1
    return Progress(spec.n_trials(), settled, running, waiting)


def requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queues an interrupted trial to run again, as a killed one is (the same parameters and reports; the retry
    continues its training). Ctrl-C is no fault of the setting, so it does not count against `max_retries`."""
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions, user_attrs=trial.user_attrs,
        system_attrs={**trial.system_attrs, "failed_trial": origin(trial)},
        intermediate_values=trial.intermediate_values))


class _QuietInterrupt(logging.Filter):
    """Drops Optuna's warnings that an interrupted trial failed (with the KeyboardInterrupt's traceback): Ctrl-C is
    one line."""

    def __init__(self):
        super().__init__()
        self.interrupted: int | None = None  # the trial's number

    def filter(self, record: logging.LogRecord) -> bool:
        return self.interrupted is None or not record.getMessage().startswith(f"Trial {self.interrupted} failed ")


def objective(spec: SweepSpec, store: Store, progress_bars: bool, quiet: _QuietInterrupt | None = None):
    def run(trial: optuna.Trial) -> float:
        try:
            params = params_of(spec, trial)
            frozen = trial.study._storage.get_trial(trial._trial_id)
            number = origin(frozen)
            trial.set_user_attr("train_dir", str(trial_dir(spec, number)))

            def report(step: int, value: float) -> bool:
                trial.report(value, step)
                return trial.should_prune()
            result = run_trial(spec, number, params, store, report=report, reported=dict(frozen.intermediate_values),
                               progress=progress_bars)
        except TrialPruned as e:
            raise optuna.TrialPruned(str(e)) from None
        except KeyboardInterrupt:  # Ctrl-C: Optuna fails this try, and the next worker continues it
            requeue(trial.study, trial.study._storage.get_trial(trial._trial_id))
            if quiet is not None:
                quiet.interrupted = trial.number
            raise
        trial.set_user_attr("eval_run_id", result.eval_run_id)
        if result.monitor_run_id is not None:
            trial.set_user_attr("monitor_run_id", result.monitor_run_id)
        trial.set_user_attr("intermediate_runs", {str(k): v for k, v in result.intermediate_runs.items()})
        return result.value
    return run


def run_worker(spec: SweepSpec, db: str | None = None, *, threads: int = 1, max_trials: int | None = None,
               progress_bars: bool = True, log=None) -> Progress:
    """Runs trials one at a time until the study is settled (or `max_trials` ran); returns where it stands."""
    import torch

    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    study = open_study(spec, db)
    store = Store(db)
    ran = 0
    while True:
        with experimental():
            fail_stale_trials(study)  # a killed worker's trial: failed, and its retry queued
        state = progress(study, spec)
        log(f"sweep {spec.study}: {state.settled}/{state.target} settled, {state.running} running, "
            f"{state.waiting} queued for retry")
        if state.done or (max_trials is not None and ran >= max_trials):
            return state
        if state.waiting == 0 and state.settled + state.running >= state.target:
            time.sleep(spec.heartbeat_s)  # the rest is running elsewhere (or in a killed worker, failed after grace)
            continue
        quiet = _QuietInterrupt()
        optuna_log.addFilter(quiet)
        try:
            with experimental():
                study.optimize(objective(spec, store, progress_bars, quiet), n_trials=1, catch=SETTING_FAILURES)
        finally:
            optuna_log.removeFilter(quiet)
        ran += 1
