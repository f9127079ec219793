"""`evalsuite run | list | show | export | plot | migrate`: running tasks and looking at their stored results.

Commands import what they use when they run, so `evalsuite --help` stays fast and each needs only its own extra."""
from __future__ import annotations

from pathlib import Path

from ..errors import EvalsuiteError
from ..task import parse_length

DEFAULT_TASK_MODEL = "tiny"


def _console():
    from rich.console import Console

    console = Console()
    return Console(width=140) if console.width < 140 else console  # the metric table needs ~130 columns


def register(sub, add_db) -> None:
    run = sub.add_parser("run", help="run a task on a model and store the results")
    run.add_argument("--task", required=True, help="task name (see `evalsuite list`) or lm_eval:NAME")
    run.add_argument("--model", default=DEFAULT_TASK_MODEL,
                     help="ttt:PATH | hf:PATH | omni:PATH | tiny | tiny-baseline (default: tiny, the bundled tiny model)")
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
    run.add_argument("--new", action="store_true", help="start a new run instead of resuming an unfinished one")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)

    ls = sub.add_parser("list", help="list tasks with versions and descriptions")
    ls.add_argument("--include-path", action="append", default=[], metavar="DIR")
    ls.set_defaults(func=cmd_list)

    show = sub.add_parser("show", help="show a run: its manifest and metric rows")
    show.add_argument("run_id", type=int, metavar="RUN")
    add_db(show)
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
                      world_size=args.world_size, resume=not args.new, progress=not args.no_progress)
    console = _console()
    for old, diff in result.not_resumed.items():
        console.print(f"run {old} of the same task, model and config is unfinished but was not resumed: it ran "
                      f"under another environment ({diff}); this is run {result.run_id}")
    if result.status != "finished":
        console.print(f"shard done: {result.units_run} units run here; run {result.run_id} is finished by the last "
                      f"shard. Then: evalsuite show {result.run_id}" + _db_flag(args.db))
        return 0
    if result.units_skipped:
        console.print(f"resumed run {result.run_id}: {result.units_skipped} finished units kept, "
                      f"{result.units_run} run now")
    _print_run(console, store, result.run_id)
    for note in result.notes:
        console.print(f"note: {note}")
    console.print(f"\nResults: run {result.run_id} in {store.where}\n"
                  f"  evalsuite show {result.run_id}{_db_flag(args.db)}        this table and the run manifest\n"
                  f"  evalsuite export --format csv --run {result.run_id}{_db_flag(args.db)}   "
                  "metric rows as csv | json | parquet\n"
                  "  evalsuite dashboard" + _db_flag(args.db) + "        curves, runs, gate and leaderboards in a browser")
    return 0


def _db_flag(db: str | None) -> str:
    return f" --db {db}" if db else ""


def _print_run(console, store, run_id: int) -> None:
    from rich import box
    from rich.table import Table

    run = store.run(run_id)
    df = store.metrics(run_id=run_id)
    table = Table(title=f"run {run_id}: {run['task']} v{run['task_version']} | {run['model_id']} "
                        f"(hash {run['model_hash']}) | seed {run['seed']} | {run['status']}",
                  caption="value [95% CI]", box=box.SIMPLE_HEAD)
    names = list(dict.fromkeys(df["name"]))
    table.add_column("bin", no_wrap=True)
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("n", justify="right")
    for bin_, part in df.groupby("bin", sort=False):
        cells = {r.name: _fmt(r.value, r.ci_low, r.ci_high) for r in part.itertuples()}
        table.add_row(bin_ or "-", *[cells.get(n, "") for n in names], str(int(part["n"].max()))
                      if part["n"].notna().any() else "")
    console.print(table)


def _fmt(value, low, high) -> str:
    def f(x):
        return "nan" if x is None or _nan(x) else f"{x:.4g}"
    return f"{f(value)} [{f(low)}, {f(high)}]" if low is not None and not _nan(low) else f(value)


def _nan(x) -> bool:
    return isinstance(x, float) and x != x


def cmd_list(args) -> int:
    from rich.table import Table

    from ..registry import Registry

    reg = Registry(args.include_path)
    table = Table(title="evalsuite tasks (lm-eval tasks: --task lm_eval:NAME)")
    for col in ("task", "version", "kind", "description"):
        table.add_column(col)
    for name in reg.names():
        s = reg.specs[name]
        table.add_row(s.name, s.version, s.kind, s.description)
    _console().print(table)
    return 0


def cmd_show(args) -> int:
    from ..store import Store

    store = Store(args.db)
    run = store.run(args.run_id)
    console = _console()
    for key in ("task", "task_version", "task_kind", "model_id", "model_hash", "model_spec", "seed", "code_version",
                "host", "status", "started_at", "finished_at", "n_units", "error", "config", "data", "data_hash"):
        if run.get(key) is not None:
            console.print(f"[bold]{key}[/bold]: {run[key]}")
    env = run["environment"] or {}
    console.print("[bold]environment[/bold]: " + (", ".join(f"{k} {'-' if v is None else v}" for k, v in env.items())
                                                   or "not recorded (run stored by an older evalsuite)"))
    console.print(f"units done: {len(store.done_units(args.run_id))}/{run['n_units']}")
    _print_run(console, store, args.run_id)
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
