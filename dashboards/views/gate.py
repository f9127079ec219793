"""The curriculum gate: a stage's rules with their evidence from the store (the run used, what it read, and what each
rule accepts), the decision history, and a person's decision (approve / reject / override), recorded with name,
reason and the evidence shown. A decision made here is bound to the hash of the stored runs; when the checkpoint's
files are at hand their hash is verified first (recorded), and promotion verifies it again in any case."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st
import yaml

from dashboards.data import model_label
from evalsuite import gate, gate_db
from evalsuite.checkpoint_id import checkpoint_identity
from evalsuite.errors import EvalsuiteError
from ttt_omni.resources import root

ACTIONS = {"Approve (promote)": "approved", "Reject (block)": "rejected", "Override (force promotion)": "forced"}


def _curricula() -> list[str]:
    out, base = [], root()
    for p in sorted((base / "configs").glob("*.yaml")):
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError:
            continue
        if isinstance(data, dict) and data.get("stages"):
            out.append(str(p.relative_to(base)))
    return out


def _checkpoints(store) -> dict[str, tuple[str, str]]:
    """label -> (model_hash, checkpoint as given) for every checkpoint with runs or decisions."""
    out = {}
    for r in _checkpoint_runs(store).itertuples():
        out[model_label(r.model_id, r.model_hash)] = (r.model_hash, r.model_spec)
    hist = gate_db.history(store)
    for r in hist.itertuples():
        out.setdefault(model_label(r.checkpoint, r.model_hash), (r.model_hash, r.checkpoint))
    return out


def render(store) -> None:
    st.title("Curriculum gate")
    checkpoints = _checkpoints(store)
    curricula = _curricula()
    if not checkpoints:
        st.info("No checkpoints in the store yet: evaluate one (`evalsuite run ... --model ttt:RUN/final`) and run "
                "`evalsuite gate --checkpoint RUN/final --stage N`.")
        return
    c1, c2, c3 = st.columns([3, 2, 1])
    label = c1.selectbox("Checkpoint", sorted(checkpoints, key=lambda k: (k != _newest(store, checkpoints), k)),
                         key="gate_ckpt")
    model_hash, checkpoint = checkpoints[label]
    used = gate_db.history(store, model_hash=model_hash)["curriculum"]  # the one its last decision used first
    last = next((c for c in curricula if not used.empty and Path(used.iloc[-1]).resolve() == root() / c), None)
    curricula = sorted(curricula, key=lambda c: c != last)
    curriculum = c2.selectbox("Curriculum", curricula, key="gate_curriculum")
    if curriculum is None:
        st.info("No curriculum YAML (with `stages:`) under configs/.")
        return
    stages = [s["stage"] for s in yaml.safe_load((root() / curriculum).read_text())["stages"]]
    stage = c3.selectbox("Stage", stages, key="gate_stage")
    try:
        result = gate.evaluate(store, model_hash, root() / curriculum, int(stage))
    except EvalsuiteError as e:
        st.error(str(e))
        return
    verdict = {"pass": st.success, "fail": st.error, "incomplete": st.warning}[result.outcome]
    verdict(f"Rules for stage {stage}: **{result.outcome}**"
            + (" (missing evidence is not evaluated, never a pass)" if result.outcome == "incomplete" else ""))
    st.table(_rules_table([r.as_dict() for r in result.rules]), hide_index=True)  # a table wraps: no detail cut off

    st.subheader("Decision in force")
    in_force_box = st.empty()  # filled after the form: a decision recorded in this run is already in force
    st.subheader("Decide")
    with st.form("gate_decision", clear_on_submit=True):
        action = st.radio("Decision", list(ACTIONS), key="gate_action", horizontal=True)
        name = st.text_input("Your name", key="gate_name")
        reason = st.text_area("Reason (required, recorded)", key="gate_reason")
        submitted = st.form_submit_button("Record decision")
    if submitted:
        if not name.strip() or not reason.strip():
            st.error("A decision needs your name and a reason; nothing was recorded.")
        else:
            verified = _verified(checkpoint, model_hash)
            decision_id = gate.decide(store, result, checkpoint, outcome=ACTIONS[action], by=name, reason=reason,
                                      verified=verified)
            st.success(f"Recorded decision {decision_id}: {ACTIONS[action]} by {name.strip()}.")
            if not verified:
                st.caption(f"The files of {checkpoint} are not here, or their hash is not {model_hash}: the decision "
                           "holds for that hash, and promotion verifies the checkpoint's files against it.")

    hist = gate_db.history(store, model_hash=model_hash)
    _show_in_force(in_force_box, hist, int(stage))

    st.subheader("Decision history of this checkpoint")
    if hist.empty:
        st.write("No decisions yet.")
    else:
        shown = hist.assign(hash_verified=hist["verified_at"].notna())
        st.dataframe(shown.iloc[::-1][["id", "created_at", "stage", "outcome", "decided_by", "reason", "hash_verified",
                                       "curriculum"]], hide_index=True, width="stretch")
        with st.expander("Evidence recorded with a decision"):
            pick = st.selectbox("Decision", list(hist["id"])[::-1], key="gate_evidence")
            rules = json.loads(hist[hist["id"] == pick]["rules"].iloc[0])
            st.table(_rules_table(rules), hide_index=True)


def _show_in_force(box, hist: pd.DataFrame, stage: int) -> None:
    mine = hist[hist["stage"] == stage]
    if mine.empty:
        box.write(f"No decision for stage {stage}: stage {stage + 1} refuses this checkpoint.")
        return
    d = mine.iloc[-1]
    promotes = "promotes" if d["outcome"] in gate_db.PROMOTING else "does not promote"
    box.write(f"**{d['outcome']}** by {d['decided_by']} at {d['created_at']:%Y-%m-%d %H:%M} — {d['reason']} "
              f"({promotes} to stage {stage + 1}; rules of {d['curriculum']})")


def _checkpoint_runs(store) -> pd.DataFrame:
    """Runs that measured a checkpoint (not votes, not a reference system such as espeak-ng)."""
    runs = store.runs()
    return runs[(runs["task"] != "human_pref") & ~runs["model_id"].str.startswith("reference:")]


def _newest(store, checkpoints) -> str | None:
    runs = _checkpoint_runs(store)
    return None if runs.empty else model_label(runs["model_id"].iloc[-1], runs["model_hash"].iloc[-1])


def _verified(checkpoint: str, model_hash: str) -> bool:
    """True when the checkpoint's files are here and every byte of them hashes to `model_hash`."""
    try:
        return checkpoint_identity(checkpoint)[1] == model_hash
    except (EvalsuiteError, OSError):
        return False


def _rules_table(rules: list[dict]) -> pd.DataFrame:
    """One row per rule: its result, the run used and what that run read, what the rule accepts (older decision
    records hold no 'evidence' / 'accepts')."""
    def used(r):
        if not r["run_id"]:
            return "none"
        e = r.get("evidence") or {}
        return (f"run {r['run_id']}: {r['task']}" + (f" v{e['task_version']}" if e.get("task_version") else "")
                + f".{r['metric']} {r['bin'] or ''}" + (f" | data {e['data']}" if e.get("data") else "")
                + (f" | lengths {e['lengths']}" if e.get("lengths") else ""))

    def accepts(r):
        a = r.get("accepts") or {}
        version = "any version" if a.get("task_version") == "any" else f"v{a.get('task_version')}"
        return "" if not a else (f"{version}, data {a['data']}" + (
            f", n >= {a['min_n']}" if a.get("min_n", 1) > 1 else "") + (
            f", lengths {a['lengths']}" if a.get("lengths") else ""))

    return pd.DataFrame([{
        "rule": r["name"], "result": r["status"] + (" (optional)" if r["optional"] else ""), "evidence used": used(r),
        "accepts": accepts(r), "value": r["value"],
        "95% CI": "" if r["ci_low"] is None else f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]",
        "threshold": f"{r['use']} {r['op']} {r['threshold']:g}", "detail": r["detail"]} for r in rules],
        columns=["rule", "result", "evidence used", "accepts", "value", "95% CI", "threshold", "detail"])
