"""`evalsuite sweep report STUDY`: the table of a study (mean and 95% t interval over seeds per setting), the best
setting against the default paired by seed, and a plot (evalsuite.sweep.report; docs/sweeps.md)."""
from __future__ import annotations

from pathlib import Path

from .tables import add_format_option, emit


def register(sub, add_db) -> None:
    sweep = sub.add_parser("sweep", help="hyperparameter sweeps run by `ttt-omni sweep`")
    actions = sweep.add_subparsers(dest="sweep_command", metavar="ACTION", required=True)
    report = actions.add_parser("report", help="a study's table per setting (mean, 95%% t interval over seeds), the "
                                "best against the default, and a plot")
    report.add_argument("study", nargs="?", default=None, help="study name (see the sweep spec's `study`)")
    report.add_argument("--from-json", default=None, metavar="FILE",
                        help="read a summary written by --json instead of the database")
    report.add_argument("--trials", action="store_true", help="list the counted trials (one per point) instead")
    report.add_argument("--json", default=None, metavar="FILE", help="also write the counted trials to FILE")
    report.add_argument("--plot", default=None, metavar="PNG",
                        help="where the plot goes (default results/sweep-STUDY.png; 'none' for no plot)")
    add_db(report)
    add_format_option(report)
    report.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from ..errors import EvalsuiteError
    from ..sweep.report import best_vs_default, plot, read_json, settings_table, write_json

    if (args.study is None) == (args.from_json is None):
        raise EvalsuiteError("sweep report: give a STUDY name or --from-json FILE (one of them)")
    if args.from_json:
        spec, rows = read_json(args.from_json)
    else:
        from ..sweep.report import trial_rows
        from ..sweep.study import load_study

        study, spec = load_study(args.study, args.db)
        rows = trial_rows(study, spec)
    if args.trials:
        columns = ["trial", "state", "setting", "seed", "value", "minutes", "eval_run_id"]
        emit(rows[[c for c in columns if c in rows.columns]], args.table_format, title=f"{spec.study}: trials")
        return 0
    table = settings_table(rows, spec)
    metric = spec.objective.metric + (f" @ {spec.objective.bin}" if spec.objective.bin else "")
    if args.table_format in ("table", "markdown"):  # for people: numbers rounded, the interval in one cell
        table = table.assign(mean=table["mean"].map(_number), **{
            "95% t interval": [f"[{_number(lo)}, {_number(hi)}]" for lo, hi in zip(table["ci_low"], table["ci_high"])],
            "default": table["default"].map({True: "yes", False: ""})})[
            ["setting", "n", "mean", "95% t interval", "seeds", "pruned", "failed", "default"]]
    emit(table, args.table_format, title=f"{spec.study}: {metric}, {spec.objective.direction}d (mean over seeds)")
    if args.table_format in ("table", "markdown"):
        comparison = best_vs_default(rows, spec)
        if comparison is not None:
            print(("\n" if args.table_format == "markdown" else "") + comparison.sentence(spec.objective.metric))
    if args.table_format == "table":
        if args.json:
            print(f"wrote {write_json(args.json, spec, rows)}")
        if args.plot != "none":
            print(f"wrote {plot(rows, spec, args.plot or Path('results') / f'sweep-{spec.study}.png')}")
    elif args.json:
        write_json(args.json, spec, rows)
    return 0


def _number(v) -> str:
    return "-" if v != v else f"{v:.4g}"  # NaN: no value (no complete trial, or one seed: no interval)
