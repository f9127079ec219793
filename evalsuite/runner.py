"""The runner: one task on one model, resumable, shardable across processes, results in the store.

Each process runs the units whose index i satisfies i % world_size == rank (rank and world size come from the
arguments or from RANK / WORLD_SIZE as set by torchrun and accelerate launch) and skips units already in the store,
so a killed run resumes where it stopped and shards may be re-run with any world size. Once every unit is stored,
one process (under the store's finalize lease) aggregates the samples into metric rows and marks the run finished;
another that finds it being finalized waits for it. Each run records what it read (TaskKind.data_identity).
"""
from __future__ import annotations

import dataclasses
import errno
import os
import random
import sys
from dataclasses import dataclass, field

import numpy as np
import torch
from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from ttt_omni.ops.validate import NonFiniteError

from .corpus import user_corpus
from .database import mask_passwords
from .environment import code_version, describe, differences, environment
from .errors import CorpusError, EvalsuiteError, NonFiniteModelError, TaskSpecError
from .models import LoadedModel, load_model
from .registry import KINDS, Registry, TaskSpec, parse_length, validate_spec
from .store import Store


SMALL_MODEL_PARAMS = 50_000_000
MAX_SEED = 2**32 - 1  # numpy's largest seed


@dataclass
class RunResult:
    run_id: int
    status: str  # "finished", or "running" while other shards still have units left
    units_total: int
    units_run: int  # by this process
    units_skipped: int  # already in the store (resumed)
    not_resumed: dict[int, str] = field(default_factory=dict)  # unfinished runs left alone: id -> what differs
    notes: list[str] = field(default_factory=list)  # the task's notes on this run (TaskKind.notes)


def shard_from_env() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _say_waiting(run: dict) -> None:
    print(f"run {run['id']}: every unit is stored and another process ({run['finalizer']}) is writing its metrics; "
          "waiting for it", file=sys.stderr)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_task(task: str | TaskSpec, model: str | LoadedModel = "tiny", *, store: Store | None = None,
             include_paths: list[str] = (), limit: int | None = None, device: str = "cpu", seed: int = 0,
             corpus: str | None = None, lengths: list[int] | None = None, rank: int | None = None,
             world_size: int | None = None, resume: bool = True, progress: bool = True,
             name: str | None = None, extra_config: dict | None = None) -> RunResult:
    """Run `task` (a name, `lm_eval:NAME`, or a TaskSpec) on `model` (a spec string or a LoadedModel). `name`
    labels the model in tables and plots instead of its checkpoint folder's name (the hash identifies it).
    `extra_config` is recorded in the run's config (and identity) beside the task's, e.g. a sweep trial's parameters."""
    store = store or Store()
    env_rank, env_world = shard_from_env()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise EvalsuiteError(f"shard rank {rank} is not in [0, world size {world_size})")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise EvalsuiteError(f"limit {limit!r}: expected a positive number of units (documents, prompts), or none")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise EvalsuiteError(f"seed {seed!r}: expected a whole number from 0 to {MAX_SEED}")
    registry = Registry(include_paths)
    spec = task if isinstance(task, TaskSpec) else registry.get(task)
    if lengths is not None:
        if not lengths:
            raise TaskSpecError(f"{spec.name}: lengths: expected at least one length (e.g. [1024, 8192]), got none")
        lengths = [parse_length(x, f"{spec.name}: lengths") for x in lengths]
        spec = dataclasses.replace(spec, lengths=sorted(set(lengths)), source=f"{spec.source} (lengths {lengths})")
        validate_spec(spec)
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    seed_everything(seed)
    if corpus is not None:
        user_corpus(corpus)  # a bad --corpus is reported before a model is loaded
    loaded = model if isinstance(model, LoadedModel) else load_model(model, device=device)
    if name:
        loaded = dataclasses.replace(loaded, model_id=name)
    if loaded.device.type == "cpu" and sum(p.numel() for p in loaded.model.parameters()) < SMALL_MODEL_PARAMS:
        torch.set_num_threads(1)  # tiny matmuls: OpenMP threads cost more than they give (many times so when busy)
    kind = KINDS[spec.kind](spec, loaded, seed=seed, limit=limit, corpus=corpus, device=str(loaded.device),
                            registry=registry)
    units = kind.units()
    if not units:
        raise CorpusError(f"task {spec.name}: no units of work (empty corpus or a limit of 0)")
    config, env, data = {**kind.config(), **(extra_config or {})}, environment(loaded.model), kind.data_identity(units)
    model_id, model_hash = kind.subject() or (loaded.model_id, loaded.model_hash)
    identity = dict(task=spec.name, task_version=spec.version, model_hash=model_hash, config=config, seed=seed)
    run_id = store.start_run(**identity, task_kind=spec.kind, model_id=model_id,
                             model_spec=loaded.spec if model_id == loaded.model_id else model_id,
                             n_units=len(units), code_version=code_version(), environment=env, data=data,
                             resume=resume)
    # An interrupted run under other code, libraries or device is not continued: its documents were scored differently.
    not_resumed = {r["id"]: describe(differences({"then": r["environment"], "now": env}))
                   for r in store.unfinished_runs(**identity) if r["id"] != run_id} if resume else {}
    done = store.done_units(run_id)
    mine = [u for i, u in enumerate(units) if i % world_size == rank and u.key not in done]
    skipped = sum(1 for i, u in enumerate(units) if i % world_size == rank and u.key in done)
    desc = f"{spec.name} | {loaded.model_id}" + (f" | shard {rank}/{world_size}" if world_size > 1 else "")
    try:
        for unit in tqdm(mine, desc=desc, unit="unit", disable=not progress):
            store.add_unit(run_id, unit.key, kind.run_unit(unit), shard=rank)
        store.finalize(run_id, lambda: kind.aggregate(store.samples(run_id)), on_wait=_say_waiting)
    except BaseException as e:  # noqa: BLE001  (recorded, then re-raised; finished units stay for the resume)
        marked = _mark_failed(store, run_id, e)
        if isinstance(e, NonFiniteError):  # NaN/Inf met in a TTT layer: the model's fault, reported like bad input
            raise NonFiniteModelError(f"{loaded.spec}: {e} ({_stored_as_failed(run_id, marked)})") from None
        if disk_full(e):
            state = ("is marked failed" if marked else "could not be marked failed either (it reads 'running' until "
                     "then)")
            raise EvalsuiteError(f"run {run_id} stopped: the disk is full ({' '.join(str(e).split())[:200]}); it "
                                 f"{state}; its finished units are stored: free some space and run the same command "
                                 "to resume it") from None
        if isinstance(e, EvalsuiteError) and e.args:  # bad input met mid-run: say what became of the run
            e.args = (f"{e.args[0]} ({_stored_as_failed(run_id, marked)})", *e.args[1:])
        raise
    return RunResult(run_id, store.run(run_id)["status"], len(units), len(mine), skipped, not_resumed, kind.notes())


def _mark_failed(store: Store, run_id: int, error: BaseException) -> bool:
    """Records the run as failed (the next identical run resumes it); False when the store cannot be written."""
    try:
        store.finish_run(run_id, status="failed", error=mask_passwords(f"{type(error).__name__}: {error}"))
        return True
    except (SQLAlchemyError, OSError):
        return False


def _stored_as_failed(run_id: int, marked: bool) -> str:
    if not marked:
        return f"run {run_id} could not be marked failed: the store cannot be written"
    return f"run {run_id} is stored as failed with this error: evalsuite runs --status failed"


def disk_full(error: BaseException) -> bool:
    """An error (or its cause) that says the disk or the user's quota is full: a file write (ENOSPC, EDQUOT) or
    SQLite's "database or disk is full"."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(error).lower()
        if isinstance(error, (OSError, SQLAlchemyError, RuntimeError)) and ("disk is full" in text
                                                                             or "no space left" in text):
            return True
        error = error.__cause__ or error.__context__
    return False
