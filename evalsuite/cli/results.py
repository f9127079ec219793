"""`evalsuite run | list | runs | show | export | plot | migrate`: running tasks and looking at their stored results.

Commands import what they use when they run, so `evalsuite --help` stays fast and each needs only its own extra.
Tables go through `tables.emit` (--format table | csv | json | markdown)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from ..errors import EvalsuiteError
from ..task import parse_length
from .tables import add_format_option, console, emit

DEFAULT_TASK_MODEL = "tiny"


def register(sub, add_db) -> None:
    run = sub.add_parser("run", help="run a task on a model and store the results")
    run.add_argument("--task", required=True, help="task name (see `evalsuite list`) or lm_eval:NAME")
    run.add_argument("--model", default=DEFAULT_TASK_MODEL,
                     help="ttt:PATH | hf:PATH | omni:PATH | tiny | tiny-baseline | smollm2 | smollm2-ttt | "
                          "smollm2-ttt-mem | smollm2-ttt-mem-init, optionally @window=N,sinks=N,dtype=... "
                          "(default: tiny, the bundled tiny model)")
    add_db(run)
    run.add_argument("--limit", type=int, default=None, help="only the first N documents (units)")
    run.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, mps); default cpu")
    run.add_argument("--seed", type=int, default=0, help="seed for torch, numpy, random and the bootstrap")
    run.add_argument("--corpus", default=None,
                     help="user corpus instead of the task's dataset: .txt file, folder of .txt, or .jsonl with 'text'")
    run.add_argument("--lengths", default=None, help="comma-separated context lengths, e.g. 1k,2k,4k")
    run.add_argument("--include-path", action="append", default=[], metavar="DIR",
                     help="extra folder of task YAMLs (and .py kinds); lm-eval YAMLs here serve lm_eval:NAME")
    run.add_argument("--rank", type=int, default=None, help="this process's shard (default: $RANK or 0)")
    run.add_argument("--world-size", type=int, default=None, help="number of shards (default: $WORLD_SIZE or 1)")
    run.add_argument("--name", default=None, help="label of the model in tables and plots (default: its checkpoint "
                     "folder, e.g. ttt:stage-1/final; its content hash identifies it either way)")
    run.add_argument("--new", action="store_true", help="start a new run instead of resuming an unfinished one")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_format_option(run)
    run.set_defaults(func=cmd_run)

    ls = sub.add_parser("list", help="list tasks with versions and descriptions")
    ls.add_argument("--include-path", action="append", default=[], metavar="DIR")
    add_format_option(ls)
    ls.set_defaults(func=cmd_list)

    runs = sub.add_parser("runs", help="list stored runs, newest first")
    runs.add_argument("--task", default=None, help="only runs of this task")
    runs.add_argument("--model", default=None, help="only runs whose model id contains this, or whose hash starts so")
    runs.add_argument("--status", default=None, choices=["running", "finalizing", "finished", "failed"])
    runs.add_argument("--last", type=int, default=20, help="how many (default 20; 0 = all)")
    add_db(runs)
    add_format_option(runs)
    runs.set_defaults(func=cmd_runs)

    show = sub.add_parser("show", help="show a run: its manifest and metric rows")
    show.add_argument("run_id", type=int, metavar="RUN")
    add_db(show)
    add_format_option(show)
    show.set_defaults(func=cmd_show)

    export = sub.add_parser("export", help="export metric rows (joined with their runs)")
    export.add_argument("--format", choices=["csv", "json", "parquet"], default="csv")
    export.add_argument("--output", default=None, help="file to write (default: results/metrics.FORMAT)")
    export.add_argument("--run", type=int, default=None, help="only this run")
    export.add_argument("--task", default=None, help="only this task")
    add_db(export)
    export.set_defaults(func=cmd_export)

    plot = sub.add_parser("plot", help="plot one metric of runs over their numeric bins (ppl by length) to a PNG")
    plot.add_argument("run_ids", type=int, nargs="+", metavar="RUN")
    plot.add_argument("--metric", default="ppl", help="metric name (default ppl)")
    plot.add_argument("--output", default=None, help="PNG to write (default results/plot-RUNS-METRIC.png)")
    add_db(plot)
    plot.set_defaults(func=cmd_plot)

    migrate = sub.add_parser("migrate", help="bring a results store written by an older version up to date (removes "
                             "metric rows stored twice, adds the unique constraint)")
    add_db(migrate)
    migrate.set_defaults(func=cmd_migrate)


def cmd_run(args) -> int:
    from ..runner import run_task
    from ..store import Store

    lengths = None
    if args.lengths is not None:
        lengths = [parse_length(x, "--lengths") for x in args.lengths.split(",") if x.strip()]
        if not lengths:
            raise EvalsuiteError(f"--lengths {args.lengths!r}: expected comma-separated context lengths, e.g. 1k,2k,4k")
    if args.limit is not None and args.limit < 1:
        raise EvalsuiteError(f"--limit {args.limit}: expected a positive number of documents (units)")
    store = Store(args.db, write=True)  # a store that cannot be written is found before the model loads
    result = run_task(args.task, args.model, store=store, include_paths=args.include_path, limit=args.limit,
                      device=args.device, seed=args.seed, corpus=args.corpus, lengths=lengths, rank=args.rank,
                      world_size=args.world_size, resume=not args.new, progress=not args.no_progress, name=args.name)
    say = console().print if args.table_format == "table" else (lambda text: print(text, file=sys.stderr))
    for old, diff in result.not_resumed.items():
        say(f"run {old} of the same task, model and config is unfinished but was not resumed: it ran under another "
            f"environment ({diff}); this is run {result.run_id}")
    if result.status != "finished":
        say(f"shard done: {result.units_run} units run here; run {result.run_id} is finished by the last shard. "
            f"Then: evalsuite show {result.run_id}" + _db_flag(args.db))
        return 0
    if result.units_skipped:
        say(f"resumed run {result.run_id}: {result.units_skipped} finished units kept, {result.units_run} run now")
    _print_run(store, result.run_id, args.table_format)
    for note in result.notes:
        say(f"note: {note}")
    if args.table_format == "table":
        say(f"\nResults: run {result.run_id} in {store.where}\n"
            f"  evalsuite show {result.run_id}{_db_flag(args.db)}   this table and the run manifest\n"
            f"  evalsuite runs{_db_flag(args.db)}   the stored runs, newest first\n"
            f"  evalsuite dashboard{_db_flag(args.db)}   curves, runs, gate and leaderboards in a browser")
    return 0


def _db_flag(db: str | None) -> str:
    from ..database import redact

    return f" --db {redact(db) if '://' in db else db}" if db else ""


def _print_run(store, run_id: int, fmt: str) -> None:
    run = store.run(run_id)
    df = store.metrics(run_id=run_id)
    order = {b: i for i, b in enumerate(dict.fromkeys(df["bin"]))}
    rows = (df[["bin", "name", "value", "ci_low", "ci_high", "n"]].rename(columns={"name": "metric"})
            .astype({"n": "Int64"}).sort_values("bin", key=lambda b: b.map(order), kind="stable"))
    version = ("v" if run["task_version"][:1].isdigit() else "") + run["task_version"]  # not "vlm-eval-0.4.13"
    title = (f"run {run_id}: {run['task']} {version} | {run['model_id']} (hash {run['model_hash']}) | seed "
             f"{run['seed']} | {run['status']}; value [95% CI]")
    names = list(dict.fromkeys(df["name"]))
    wide = []
    for bin_, part in df.groupby("bin", sort=False):
        cells = {r.name: _fmt(r.value, r.ci_low, r.ci_high) for r in part.itertuples()}
        n = part["n"].max()
        wide.append({"bin": bin_ or "-", **{m: cells.get(m, "") for m in names}, "n": "" if pd.isna(n) else int(n)})
    emit(rows, fmt, title=title, wide=pd.DataFrame(wide, columns=["bin", *names, "n"]))


def _fmt(value, low, high) -> str:
    def f(x):
        return "nan" if x is None or _nan(x) else f"{x:.4g}"
    return f"{f(value)} [{f(low)}, {f(high)}]" if low is not None and not _nan(low) else f(value)


def _nan(x) -> bool:
    return isinstance(x, float) and x != x


def cmd_list(args) -> int:
    from ..registry import Registry

    reg = Registry(args.include_path)
    rows = pd.DataFrame([dict(task=s.name, version=s.version, kind=s.kind, description=s.description)
                         for s in (reg.specs[n] for n in reg.names())])
    emit(rows, args.table_format, title="evalsuite tasks (lm-eval tasks: --task lm_eval:NAME)")
    return 0


def cmd_runs(args) -> int:
    from ..store import Store

    if args.last < 0:
        raise EvalsuiteError(f"--last {args.last}: expected how many of the newest runs to list (0: all)")
    runs = Store(args.db).runs(task=args.task, status=args.status).iloc[::-1]
    if args.model:
        mine = runs["model_id"].str.contains(args.model, regex=False) | runs["model_hash"].str.startswith(args.model)
        runs = runs[mine]
    if args.last:
        runs = runs.head(args.last)
    rows = runs[["id", "task", "task_version", "model_id", "model_hash", "status", "n_units", "started_at",
                 "finished_at"]].rename(columns={"task_version": "version", "model_id": "model", "model_hash": "hash",
                                                 "n_units": "units"})
    rows = rows.assign(started_at=rows["started_at"].astype(str).str.slice(0, 19),
                       finished_at=rows["finished_at"].astype(str).str.slice(0, 19).replace({"NaT": "", "None": ""}))
    emit(rows, args.table_format, title=f"runs in {Store(args.db).where}, newest first")
    return 0


def cmd_show(args) -> int:
    from ..store import Store

    store = Store(args.db)
    run = store.run(args.run_id)
    if args.table_format == "json":
        metrics = store.metrics(run_id=args.run_id)[["bin", "name", "value", "ci_low", "ci_high", "n"]]
        print(json.dumps({"run": run, "metrics": metrics.to_dict("records")}, indent=1, default=str))
        return 0
    if args.table_format == "table":
        out = console()
        for key in ("task", "task_version", "task_kind", "model_id", "model_hash", "model_spec", "seed",
                    "code_version", "host", "status", "started_at", "finished_at", "n_units", "error", "config",
                    "data", "data_hash"):
            if run.get(key) is not None:
                out.print(f"[bold]{key}[/bold]: {run[key]}")
        env = run["environment"] or {}
        out.print("[bold]environment[/bold]: " + (", ".join(f"{k} {'-' if v is None else v}" for k, v in env.items())
                                                   or "not recorded (run stored by an older evalsuite)"))
        out.print(f"units done: {len(store.done_units(args.run_id))}/{run['n_units']}")
    _print_run(store, args.run_id, args.table_format)
    return 0


def cmd_export(args) -> int:
    from ..store import Store

    out = Path(args.output or Path("results") / f"metrics.{args.format}")
    path = Store(args.db).export(out, args.format, run_id=args.run, task=args.task)
    print(f"wrote {path}")
    return 0


def cmd_plot(args) -> int:
    from ..plot import plot_runs
    from ..store import Store

    out = args.output or Path("results") / f"plot-{'-'.join(map(str, args.run_ids))}-{args.metric}.png"
    print(f"wrote {plot_runs(Store(args.db), args.run_ids, args.metric, out)}")
    return 0


def cmd_migrate(args) -> int:
    from ..store import Store, migrate

    report = migrate(args.db)
    print(f"{Store(args.db).where}: {report['removed']} duplicate metric row(s) removed; metric rows are unique by "
          "run, task, name and bin")
    return 0
