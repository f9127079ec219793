"""`evalsuite pairs export|summarize` and `evalsuite raters add|list|serve`: blind A/B human evaluation."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..database import database_url, redact
from ..errors import EvalsuiteError
from ..humaneval import db, results
from ..humaneval.bundle import export_bundle, load_key, load_served, new_secret, read_outputs_jsonl
from ..humaneval.summary import format_table, summarize
from .tables import add_format_option, emit


class UsageError(EvalsuiteError, ValueError):
    """Arguments that do not fit together (named by their flags: this is the command line)."""


def register(subparsers, add_db) -> None:
    pairs = subparsers.add_parser("pairs", help="blind A/B pair bundles for human evaluation")
    psub = pairs.add_subparsers(dest="pairs_command", required=True)

    p = psub.add_parser("export", help="build a blind pair bundle (the key is written apart)")
    p.add_argument("--systems", required=True, help="comma-separated system names, e.g. ttt,baseline")
    p.add_argument("--task", required=True, help="task whose outputs are compared")
    p.add_argument("--n", type=int, required=True, help="number of prompts (pairs per pair of systems)")
    p.add_argument("--out", required=True, type=Path, help="new bundle directory")
    p.add_argument("--from-jsonl", help="SYSTEM=path.jsonl,... (each line: prompt_id, prompt, text, audio?)")
    p.add_argument("--checkpoints", metavar="SYSTEM=CHECKPOINT,...",
                   help="with --from-jsonl: the checkpoint (directory or model spec) behind each system's outputs, so "
                   "the gate can use the votes (store outputs are bound to their run's checkpoint already)")
    p.add_argument("--secret-from", type=Path, metavar="KEY",
                   help="rebuild the bundle of an earlier key.json with its secret (default: a new 256-bit secret, "
                   "recorded in the key)")
    p.add_argument("--key-out", type=Path, help="where to write the key (default: OUT/key/key.json)")
    add_db(p)
    p.set_defaults(func=cmd_export)

    p = psub.add_parser("summarize", help="win rates, Bradley–Terry, agreement; writes human_pref metric rows")
    p.add_argument("--bundle", required=True, type=Path)
    p.add_argument("--key", type=Path, help="key.json (default: BUNDLE/key/key.json)")
    p.add_argument("--json", type=Path, help="also write the full summary as JSON here")
    p.add_argument("--no-store", action="store_true", help="print only; do not write metric rows to the store")
    add_format_option(p)
    add_db(p)
    p.set_defaults(func=cmd_summarize)

    raters = subparsers.add_parser("raters", help="raters and the rating web form")
    rsub = raters.add_subparsers(dest="raters_command", required=True)

    p = rsub.add_parser("add", help="create a rater and print their secret link (shown once)")
    p.add_argument("--bundle", required=True, type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--n", type=int, help="pairs to assign (default: all, in a random order)")
    p.add_argument("--base-url", default="http://127.0.0.1:8000", help="where `raters serve` is reachable")
    add_db(p)
    p.set_defaults(func=cmd_add)

    p = rsub.add_parser("list", help="raters of a bundle and their progress")
    p.add_argument("--bundle", required=True, type=Path)
    add_db(p)
    p.set_defaults(func=cmd_list)

    p = rsub.add_parser("serve", help="serve the rating form")
    p.add_argument("--bundle", required=True, type=Path)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1,
                   help="server processes (more raters at once: see docs/human-eval.md for measurements)")
    add_db(p)
    p.set_defaults(func=cmd_serve)


def _parse_sources(spec: str, systems: list[str]) -> dict[str, Path]:
    sources = {}
    for part in spec.split(","):
        name, sep, path = part.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise UsageError(f"--from-jsonl: expected SYSTEM=path.jsonl,..., got {part!r}")
        sources[name.strip()] = Path(path.strip())
    if sorted(sources) != sorted(systems):
        raise UsageError(f"--from-jsonl: expected one file for each of --systems {systems}, got {sorted(sources)}")
    return sources


def _checkpoint_hashes(spec: str, systems: list[str]) -> dict[str, str]:
    """SYSTEM=CHECKPOINT,... -> system -> the checkpoint's verified content hash."""
    from ..checkpoint_id import checkpoint_identity

    out = {}
    for part in spec.split(","):
        name, sep, ckpt = part.partition("=")
        if not sep or name.strip() not in systems or not ckpt.strip():
            raise UsageError(f"--checkpoints: expected SYSTEM=CHECKPOINT,... with systems from --systems {systems}, "
                             f"got {part!r}")
        out[name.strip()] = checkpoint_identity(ckpt.strip())[1]
    return out


def cmd_export(args) -> int:
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if len(systems) < 2 or len(set(systems)) != len(systems):
        raise UsageError(f"--systems: expected two or more distinct comma-separated names, got {args.systems!r}")
    if args.checkpoints and not args.from_jsonl:
        raise UsageError("--checkpoints: only with --from-jsonl (outputs from the store are bound to the checkpoint "
                         "their run measured)")
    for flag, path in (("--out", args.out), ("--key-out", args.key_out)):
        blocker = path and next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker:
            raise UsageError(f"{flag} {path}: {blocker} is a file, not a folder; expected a path in a folder")
    if args.from_jsonl:
        paths = _parse_sources(args.from_jsonl, systems)
        outputs = {s: read_outputs_jsonl(paths[s]) for s in systems}
        sources = {s: str(paths[s].resolve()) for s in systems}
        checkpoints = _checkpoint_hashes(args.checkpoints, systems) if args.checkpoints else {}
    else:
        outputs, checkpoints = results.samples_outputs(database_url(args.db), args.task, systems)
        sources = {s: f"store samples: task={args.task} model={s}" for s in systems}
    secret = new_secret()
    if args.secret_from is not None:
        secret = load_key(args.secret_from).get("secret")
        if not secret:
            raise UsageError(f"--secret-from {args.secret_from}: the key holds no secret (written by an older "
                             "version, whose bundles cannot be rebuilt)")
    key = export_bundle(outputs, args.task, args.n, secret, args.out, args.key_out, sources, checkpoints)
    key_path = args.key_out or args.out / "key" / "key.json"
    print(f"bundle {key['bundle_id']}: {len(key['pairs'])} pairs in {args.out}; key: {key_path} (it unblinds the "
          "bundle: keep it from raters and the server)")
    return 0


def cmd_summarize(args) -> int:
    bundle = load_served(args.bundle)
    key = load_key(args.key or args.bundle)
    if key["bundle_id"] != bundle.bundle_id:
        raise UsageError(f"--key: key is for bundle {key['bundle_id']}, not {bundle.bundle_id}")
    url = database_url(args.db)
    engine = db.make_engine(url)
    votes = db.bundle_votes(engine, bundle.bundle_id)
    if not votes:
        raise UsageError(f"--bundle: no votes recorded yet for bundle {bundle.bundle_id} in {redact(url)}")
    summary = summarize(key, votes)
    if args.table_format == "table":
        print(format_table(summary))
    else:  # the per-pair table for programs; the rest of the summary is in --json
        import pandas as pd

        emit(pd.DataFrame(summary["comparisons"]), args.table_format)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if not args.no_store:
        run_id = results.write_rows(url, key, summary["rows"])
        bound = results.bound_hash(key)
        print(f"wrote {len(summary['rows'])} metric rows (task human_pref) as run {run_id}, "
              + (f"bound to {key['systems'][0]}'s checkpoint {bound}: the gate's human_pref rules of that checkpoint "
                 "read it" if bound else f"not bound to a checkpoint ({key['systems'][0]}'s outputs came from JSONL "
                 "without --checkpoints): no gate rule can use it"),
              file=sys.stdout if args.table_format == "table" else sys.stderr)
    return 0


def cmd_add(args) -> int:
    bundle = load_served(args.bundle)
    engine = db.make_engine(database_url(args.db), write=True)
    db.register_bundle(engine, bundle.bundle_id, bundle.task, len(bundle.items))
    token = db.add_rater(engine, bundle.bundle_id, args.name, sorted(bundle.items), args.n)
    print(f"{args.base_url.rstrip('/')}/r/{token}")
    print("(this link is the rater's password; it is shown only now)", file=sys.stderr)
    return 0


def cmd_list(args) -> int:
    bundle = load_served(args.bundle)
    engine = db.make_engine(database_url(args.db))
    rows = db.bundle_raters(engine, bundle.bundle_id)
    if not rows:
        print(f"no raters yet for bundle {bundle.bundle_id}")
    for r in rows:
        print(f"{r['rater']}: {r['voted']}/{r['assigned']} voted, {r['replaced']} replaced")
    return 0


def cmd_serve(args) -> int:
    import os

    import uvicorn

    from ..humaneval.app import BUNDLE_ENV, DB_ENV, create_app
    from .ports import check_port

    if args.workers < 1:
        raise UsageError(f"--workers {args.workers}: expected one or more server processes")
    check_port(args.host, args.port)
    url = database_url(args.db)
    app = create_app(args.bundle, url)  # a bad bundle or store is reported here, before any worker starts
    print(f"serving bundle {args.bundle} on http://{args.host}:{args.port}/ with {args.workers} worker(s) (raters open "
          "their /r/... links)")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print("warning: not loopback; the links are secrets, so expose the form only behind HTTPS", file=sys.stderr)
    if args.workers == 1:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    else:
        os.environ[BUNDLE_ENV], os.environ[DB_ENV] = str(Path(args.bundle).resolve()), url
        uvicorn.run("evalsuite.humaneval.app:app_from_env", factory=True, workers=args.workers, host=args.host,
                    port=args.port, log_level="warning")
    return 0
