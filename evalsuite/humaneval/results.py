"""The bridge to the results store (evalsuite.store): the database URL, system outputs for export, and the
summary's metric rows as a run of task `human_pref`.

Outputs in the store: the latest finished run of `--task` whose model_id is the system name; its sample rows named
"output" whose `data` JSON holds {"prompt", "text", "audio"?} (audio: a WAV path), one per unit (= prompt id).
Each system is bound to the checkpoint that run measured (its content hash, recorded in the key), and the
`human_pref` run is stored under the first system's checkpoint hash, so a gate rule on that checkpoint reads it.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..store import Store, config_hash
from .bundle import BundleError, Output

TASK = "human_pref"
TASK_VERSION = "1"
OUTPUT_SAMPLE = "output"


def samples_outputs(url: str, task: str, systems: list[str]) -> tuple[dict[str, dict[str, Output]], dict[str, str]]:
    """(system -> prompt_id -> Output, system -> content hash of the checkpoint whose run gave the outputs)."""
    store = Store(url)
    runs = store.runs(task=task, status="finished")
    out, checkpoints = {}, {}
    for system in systems:
        mine = runs[runs["model_id"] == system]
        if mine.empty:
            raise BundleError(
                f"no finished run of task {task!r} for model {system!r} in {store.where} (or export from JSONL outputs)"
            )
        run_id = int(mine["id"].iloc[-1])
        checkpoints[system] = str(mine["model_hash"].iloc[-1])
        samples = store.samples(run_id)
        samples = samples[samples["name"] == OUTPUT_SAMPLE]
        if samples.empty:
            raise BundleError(f"task: run {run_id} of {task!r} for {system!r} has no {OUTPUT_SAMPLE!r} samples")
        outputs = {}
        for unit, data in zip(samples["unit"], samples["data"]):
            d = json.loads(data or "{}")
            if not isinstance(d.get("prompt"), str) or not isinstance(d.get("text"), str):
                raise BundleError(f"run {run_id}, unit {unit!r}: sample data needs string 'prompt' and 'text'")
            outputs[str(unit)] = Output(str(unit), d["prompt"], d["text"], Path(d["audio"]) if d.get("audio") else None)
        out[system] = outputs
    return out, checkpoints


def write_rows(url: str, key: dict, rows: list[dict]) -> int:
    """One finished run of task human_pref for the bundle; its model is the first system of the key (list the
    candidate first: the win_rate row "A vs B" is A's rate), under that system's checkpoint hash when the key binds
    it (`checkpoints`), else under a hash of the system's name, which no checkpoint has (the gate cannot use it)."""
    store = Store(url, write=True)
    first = key["systems"][0]
    try:
        code_version = version("ttt-omni")
    except PackageNotFoundError:
        code_version = "unknown"
    run_id = store.start_run(
        task=TASK,
        task_version=TASK_VERSION,
        task_kind=TASK,
        model_id=first,
        model_hash=bound_hash(key) or config_hash(["human_pref_system", first]),
        model_spec=f"bundle:{key['bundle_id']}",
        config={"bundle_id": key["bundle_id"], "task": key.get("task"), "systems": key["systems"],
                "checkpoints": key.get("checkpoints") or {}},
        seed=0,
        n_units=0,
        code_version=code_version,
        resume=False,
    )
    store.finalize(run_id, lambda: rows)
    return run_id


def bound_hash(key: dict) -> str | None:
    """The content hash of the checkpoint the key binds its first system (the candidate) to, if any."""
    return (key.get("checkpoints") or {}).get(key["systems"][0])
