"""`evalsuite gate | dashboard | leaderboard build`: looking at results and deciding on promotions."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from ttt_omni.resources import bundled, config_path

from ..errors import EvalsuiteError
from .tables import add_format_option, console, emit


def register(sub, add_db) -> None:
    gate = sub.add_parser("gate", help="evaluate a curriculum stage's promotion rules for a checkpoint; record a decision")
    gate.add_argument("--checkpoint", required=True, help="HF checkpoint directory (or ttt:PATH, hf:PATH, tiny)")
    gate.add_argument("--stage", type=int, required=True, help="the stage the checkpoint was trained in")
    gate.add_argument("--config", default=None,
                      help="curriculum YAML with the stages' gate rules (default: configs/curriculum.yaml)")
    gate.add_argument("--monitor", default=None,
                      help="training monitor CSV to store first (default: RUN/monitor.csv of the run that saved the "
                      "checkpoint, if its weights record names this checkpoint's hash)")
    action = gate.add_mutually_exclusive_group()
    action.add_argument("--approve", action="store_true", help="record a human approval (needs --by and --reason)")
    action.add_argument("--reject", action="store_true", help="record a human rejection (needs --by and --reason)")
    action.add_argument("--force", action="store_true", help="record a forced promotion (needs --by and --reason)")
    gate.add_argument("--by", default="", help="name of the person deciding")
    gate.add_argument("--reason", default="", help="why (required with --approve / --reject / --force)")
    add_format_option(gate)
    add_db(gate)
    gate.set_defaults(func=cmd_gate)

    dash = sub.add_parser("dashboard", help="start the Streamlit dashboard on the results store")
    dash.add_argument("--port", type=int, default=8501)
    dash.add_argument("--address", default="127.0.0.1", help="listen address (default: loopback only)")
    add_db(dash)
    dash.set_defaults(func=cmd_dashboard)

    board = sub.add_parser("leaderboard", help="leaderboard tables from the results store")
    bsub = board.add_subparsers(dest="leaderboard_command", metavar="ACTION", required=True)
    build = bsub.add_parser("build", help="write NAME.md and NAME.csv for every leaderboard definition (YAML)")
    build.add_argument("--definitions", default=None, help="folder of leaderboard YAMLs (default: the bundled ones)")
    build.add_argument("--out", "--output", dest="output", default=None,
                       help="folder to write the tables to (default: results/leaderboards/ here)")
    add_db(build)
    build.set_defaults(func=cmd_leaderboard_build)


def cmd_gate(args) -> int:
    import pandas as pd

    from .. import gate, gate_db, train_monitor
    from ..checkpoint_id import checkpoint_identity
    from ..store import Store

    human = "approved" if args.approve else "rejected" if args.reject else "forced" if args.force else None
    if human and not (args.by.strip() and args.reason.strip()):
        raise EvalsuiteError(f"--{'approve' if args.approve else 'reject' if args.reject else 'force'} needs "
                             "--by NAME and --reason TEXT (they are recorded with the decision)")
    try:
        config = str(config_path(args.config or "curriculum"))
    except FileNotFoundError as e:
        raise gate.GateError(f"--config: {e}") from None
    gate.stage_rules(config, args.stage)  # bad rules are reported before the checkpoint is read
    store = Store(args.db, write=True)
    model_id, model_hash = checkpoint_identity(args.checkpoint)  # every byte: a decision's identity
    notes = []
    monitor = Path(args.monitor) if args.monitor else train_monitor.find_monitor_csv(args.checkpoint)
    if monitor is not None:
        try:
            train_monitor.ingest(store, monitor, model_id=model_id, model_hash=model_hash, checkpoint=args.checkpoint)
        except train_monitor.MonitorMismatch as e:
            if args.monitor:
                raise
            notes.append(f"the training monitor beside the checkpoint was not used: {e}")
    result = gate.evaluate(store, model_hash, config, args.stage)
    result.notes[:0] = notes
    decision_id = gate.decide(store, result, args.checkpoint, outcome=human, by=args.by or "gate",
                              reason=args.reason, verified=True)
    rows = pd.DataFrame([dict(
        rule=r.rule.name, result=r.status, optional=r.rule.optional, run_id=(r.evidence or {}).get("run_id"),
        task=r.rule.task, metric=r.rule.metric, bin=r.bin, value=r.value, ci_low=r.ci_low, ci_high=r.ci_high, n=r.n,
        threshold=f"{r.rule.use} {r.rule.op} {r.rule.threshold:g}", detail=r.detail) for r in result.rules])
    wide = pd.DataFrame([{
        "rule": r.rule.name, "evidence used": _evidence(r), "value [95% CI]": _value(r),
        "threshold": f"{r.rule.use} {r.rule.op} {r.rule.threshold:g}",
        "result": r.status + (" (optional)" if r.rule.optional and r.status == "not evaluated" else "")
                  + (f": {r.detail}" if r.detail else "")} for r in result.rules])
    title = f"gate: stage {args.stage} of {config} | {model_id} (hash {model_hash}, verified)"
    if args.table_format == "table":  # one line per rule when it fits, else one line per rule and field
        stacked = wide.melt(id_vars="rule", var_name="field", value_name="value", ignore_index=False).sort_index(
            kind="stable")
        emit(stacked.reset_index(drop=True), "table", title=title, wide=wide)
    else:
        emit(rows, args.table_format, title=title)
    say = console().print if args.table_format == "table" else (lambda text: print(text, file=sys.stderr))
    for note in result.notes:
        say(f"note: {note}")
    outcome = human or result.outcome
    say(f"decision {decision_id}: {outcome} (rules: {result.outcome}) recorded in {store.where}")
    if outcome not in gate_db.PROMOTING:
        say(f"stage {args.stage + 1} will refuse this checkpoint; fix the evidence and re-run the gate, "
            "or approve it with --approve --by NAME --reason TEXT")
    return 0 if outcome in gate_db.PROMOTING else 1


def _evidence(r) -> str:
    """The run used and what it measured, then what the rule accepts."""
    accepts = r.accepts
    version = "any version" if accepts["task_version"] == "any" else f"v{accepts['task_version']}"
    wanted = (f"accepts: {version}, data {accepts['data']}" + (
        f", n >= {accepts['min_n']}" if accepts["min_n"] > 1 else "") + (
        f", lengths {accepts['lengths']}" if accepts["lengths"] else ""))
    if not r.evidence:
        return wanted
    e = r.evidence
    used = (f"run {e['run_id']}: {r.rule.task} v{e['task_version']}.{r.rule.metric} {r.bin or ''}".rstrip()
            + f" | data {e['data']}" + (f" | lengths {e['lengths']}" if e.get("lengths") else "")
            + (f" | n={r.n}" if r.n is not None else ""))
    return f"{used}\n{wanted}"


def _value(r) -> str:
    if r.value is None:
        return "-"
    ci = f" [{r.ci_low:.4g}, {r.ci_high:.4g}]" if r.ci_low is not None and r.ci_low == r.ci_low else ""
    return f"{r.value:.4g}{ci}"


def cmd_dashboard(args) -> int:
    from .ports import check_port

    if importlib.util.find_spec("streamlit") is None:  # it runs in a child process: say it here, in one line
        raise ModuleNotFoundError("No module named 'streamlit'", name="streamlit")
    check_port(args.address, args.port)
    env = dict(os.environ)
    if args.db:
        env["EVALSUITE_DB"] = args.db
    cmd = [sys.executable, "-m", "streamlit", "run", str(bundled("dashboards", "app.py")), "--server.headless", "true",
           "--server.address", args.address, "--server.port", str(args.port), "--browser.gatherUsageStats", "false"]
    print(f"dashboard: http://{args.address}:{args.port}  (Ctrl-C stops it)", flush=True)
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0


def cmd_leaderboard_build(args) -> int:
    from ..leaderboard import build
    from ..store import Store

    for path in build(Store(args.db), args.definitions, args.output):
        print(f"wrote {path}")
    return 0
