"""The curriculum's promotion check: stage N > 1 starts only from a checkpoint the gate promoted at stage N-1.
`ttt-omni train --stage N --from CKPT` asks it before training (the trainer itself knows nothing of the gate).

The checkpoint is identified by its content hash, computed here from every byte of its files (there is no hash
cache, for evaluations either), so a decision holds for exactly those weights. The
decision in force is the latest record for (hash, N-1) in the results store (evalsuite.gate_db): pass, approved or
forced promote; fail, incomplete, rejected or no record refuse. `--force` promotes anyway and is recorded as a forced
decision, with the rules' evidence at that moment and the hash it verified.
"""
from __future__ import annotations

import getpass
from pathlib import Path

from . import gate, gate_db
from .checkpoint_id import checkpoint_identity
from .errors import EvalsuiteError
from .store import Store


class StageRefused(EvalsuiteError, ValueError):
    """Training of a stage may not start from this checkpoint."""


def check_stage(config: str | Path, stage: int, from_ckpt: str, *, force: bool = False, reason: str = "",
                db: str | None = None) -> str:
    """Returns a line saying why stage `stage` (> 1) may start from `from_ckpt`, or raises StageRefused naming what
    is missing. `force` records a forced decision instead of refusing."""
    try:
        store = Store(db, write=force)
        _, model_hash = checkpoint_identity(from_ckpt)
        decision = gate_db.latest(store, model_hash, stage - 1)
        if decision is not None and decision["outcome"] in gate_db.PROMOTING:
            return (f"promoted: decision {decision['id']} ({decision['outcome']} by {decision['decided_by']}) for "
                    f"{from_ckpt} (hash {model_hash}, verified from every byte now) at stage {stage - 1}")
        if force:
            result = gate.evaluate(store, model_hash, config, stage - 1)
            decision_id = gate.decide(store, result, from_ckpt, outcome="forced", by=getpass.getuser(),
                                      reason=reason or "ttt-omni train --force", verified=True)
            return f"forced: decision {decision_id} recorded for hash {model_hash} (the rules said {result.outcome})"
    except EvalsuiteError as e:
        raise StageRefused(str(e)) from None
    found = ("no gate decision" if decision is None else
             f"the latest gate decision is {decision['outcome']!r} ({decision['reason']})")
    raise StageRefused(f"stage {stage} refuses {from_ckpt} (hash {model_hash}): {found} at stage {stage - 1} in "
                       f"{store.where}. Run `evalsuite gate --checkpoint {from_ckpt} --stage {stage - 1} --config "
                       f"{config}`, have it approved, or force the start (recorded as a forced decision)")
