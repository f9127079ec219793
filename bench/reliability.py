"""Reliability of the results store and the rater form under load. Prints a table for each part and writes
bench/out/reliability.json.

    .venv/bin/python bench/reliability.py [--processes 4] [--units 40] [--kills 5] [--raters 50] [--votes 20]
                                          [--workers 1,4]
                                          [--sweep-trials 12] [--sweep-runs 2] [--probes-only]
    .venv/bin/python bench/reliability.py --from-json FILE

1. concurrent runs: `--processes` `evalsuite run` processes on one SQLite store, each its own run, then as many
   identical ones (they share the run while it is unfinished: every unit stored once, one finalizer, the others wait;
   one that starts after the run finished makes a new run); rows stored vs expected for the runs made.
2. kill -9 resumes: one run killed with SIGKILL `--kills` times at random moments (the last kill while it
   finalizes), resumed by the same command each time; units stored, units computed twice, metric rows.
3. rater load: `--raters` raters each voting on `--votes` pairs at once through `evalsuite raters serve` with each
   number of `--workers`; requests, votes sent vs stored, 5xx, latency p50/p99/max.
4. sweep specs: each kind of searched field (grid, uniform, log_uniform, int_range) with each sampler that takes it
   (grid, random, tpe): accepted, and `--sweep-trials` suggestions inside the space; then one real `ttt-omni sweep`
   of `--sweep-runs` trials with a random sampler over three ranges.
5. probes (issue 24's holes): attacks and bad inputs as a user would try them, each a real `evalsuite`
   command, with what it should give and what it gave: a forged hash-cache entry (item 1), a store URL's password in
   the output (item 2), one line and exit 2 for bad input (item 10). `--probes-only` runs only these; `--from-json
   FILE` prints the probes' table of a JSON written before, as markdown (docs/results-store.md shows it).

Every process is a real `evalsuite` command (task: a units-with-a-delay kind from an --include-path folder, model
tiny-baseline); the clients run on the same machine as the server.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
METRIC_ROWS = 8

KIND = textwrap.dedent('''
    import time
    from evalsuite.registry import TaskKind, Unit, register_kind

    @register_kind("bench_units")
    class BenchUnits(TaskKind):
        """params.units units of params.delay_ms each (each logs its key first); aggregate takes params.aggregate_ms
        and gives 8 metric rows."""
        metrics = frozenset({f"m{i}" for i in range(8)})

        def units(self):
            return [Unit(f"u{i:04d}") for i in range(self.spec.params["units"])]

        def run_unit(self, unit):
            with open(self.spec.params["log"], "a") as f:
                f.write(unit.key + "\\n")
            time.sleep(self.spec.params["delay_ms"] / 1000)
            return [dict(name="v", bin=f"b{j}", value=1.0, n=1) for j in range(3)]

        def aggregate(self, samples):
            time.sleep(self.spec.params["aggregate_ms"] / 1000)
            return [dict(name=f"m{i}", value=float(len(samples)), n=len(samples)) for i in range(8)]
''')


def task_folder(root: Path, name: str, units: int, delay_ms: int, aggregate_ms: int) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "kind.py").write_text(KIND)
    (folder / "task.yaml").write_text(
        f"name: {name}\nversion: 1\nkind: bench_units\nmetrics: [m0]\n"
        f"params: {{units: {units}, delay_ms: {delay_ms}, aggregate_ms: {aggregate_ms}, log: '{folder / 'log'}'}}\n")
    (folder / "log").write_text("")
    return folder


def run_command(folder: Path, db: Path, seed: int) -> list[str]:
    return [sys.executable, "-m", "evalsuite.cli", "run", "--task", folder.name, "--include-path", str(folder),
            "--db", str(db), "--model", "tiny-baseline", "--seed", str(seed), "--no-progress"]


def counts(db: Path) -> dict:
    from evalsuite.store import Store

    store = Store(db)
    runs = store.runs()
    samples = sum(len(store.samples(int(i))) for i in runs["id"])
    units = sum(len(store.done_units(int(i))) for i in runs["id"])
    metrics = store.metrics()
    duplicates = int(metrics.duplicated(["run_id", "task", "name", "bin"]).sum()) if len(metrics) else 0
    return {"runs": len(runs), "finished": int((runs["status"] == "finished").sum()), "units": units,
            "samples": samples, "metric_rows": len(metrics), "duplicate_rows": duplicates}


def concurrent_runs(root: Path, processes: int, units: int, delay_ms: int) -> list[dict]:
    rows = []
    for mode in ("separate runs", "identical runs"):
        folder = task_folder(root, f"concurrent_{mode.split()[0]}", units, delay_ms, 200)
        db = root / f"{folder.name}.db"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        start = time.perf_counter()
        procs = [subprocess.Popen(run_command(folder, db, seed=i if mode == "separate runs" else 0), env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(processes)]
        codes = [p.wait() for p in procs]
        wall = time.perf_counter() - start
        got = counts(db)
        runs = got["runs"]
        computed = len((folder / "log").read_text().split())
        rows.append({"mode": mode, "processes": processes, "exit_0": codes.count(0), "wall_s": round(wall, 1),
                     **got, "expected_units": runs * units, "expected_samples": runs * units * 3,
                     "expected_metric_rows": runs * METRIC_ROWS, "units_computed": computed})
    return rows


def kill_resumes(root: Path, kills: int, units: int, delay_ms: int, seed: int = 0) -> dict:
    from evalsuite.store import Store

    folder = task_folder(root, "killed", units, delay_ms, 3000)
    db = root / "killed.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EVALSUITE_FINALIZE_LEASE_S": "3"}
    rng = random.Random(seed)
    cmd = run_command(folder, db, seed=0)
    killed, killed_finalizing, processes = 0, 0, 0
    start = time.perf_counter()
    while killed < kills:
        processes += 1
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        last = killed == kills - 1
        while proc.poll() is None:  # wait for progress (or the finalizing state), then kill at a random moment
            runs = Store(db).runs() if db.exists() else None
            status = None if runs is None or runs.empty else runs["status"].iloc[0]
            stored = 0 if status is None else len(Store(db).done_units(int(runs["id"].iloc[0])))
            if (last and status == "finalizing") or (not last and stored > killed * units // (kills + 1)):
                time.sleep(rng.uniform(0, delay_ms / 1000))
                break
            time.sleep(0.05)
        if proc.poll() is not None:
            break  # it finished before it could be killed
        killed_finalizing += Store(db).runs()["status"].iloc[0] == "finalizing"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed += 1
    processes += 1
    final = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    computed = (folder / "log").read_text().split()
    got = counts(db)
    return {"kills": killed, "kills_while_finalizing": int(killed_finalizing), "processes": processes,
            "last_exit": final.returncode, "wall_s": round(wall, 1), **got, "expected_units": units,
            "expected_metric_rows": METRIC_ROWS, "units_computed": len(computed),
            "units_computed_twice": len(computed) - len(set(computed))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rater_load(root: Path, raters: int, votes: int, workers: int) -> dict:
    import httpx

    from evalsuite.humaneval import db as he_db
    from evalsuite.humaneval.bundle import Output, export_bundle, load_served, new_secret

    folder = root / f"raters_w{workers}"
    outputs = {s: {f"p{i:03d}": Output(f"p{i:03d}", f"Tell story {i}.", f"{s} tells story {i}.") for i in range(votes)}
               for s in ("system_a", "system_b")}
    export_bundle(outputs, "bench", votes, new_secret(), folder / "bundle")
    served = load_served(folder / "bundle")
    url = f"sqlite:///{folder / 'votes.db'}"
    engine = he_db.make_engine(url)
    he_db.register_bundle(engine, served.bundle_id, served.task, len(served.items))
    tokens = [he_db.add_rater(engine, served.bundle_id, f"rater{i:03d}", sorted(served.items)) for i in range(raters)]
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "evalsuite.cli", "raters", "serve", "--bundle",
                               str(folder / "bundle"), "--db", url, "--port", str(port), "--workers", str(workers)],
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(base + "/", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, "the rater server did not start"
                time.sleep(0.2)

        def rate(i: int) -> list[tuple[str, int, float]]:
            out = []
            with httpx.Client(base_url=base, timeout=120) as http:
                def timed(kind, fn):
                    t = time.perf_counter()
                    r = fn()
                    out.append((kind, r.status_code, time.perf_counter() - t))
                    return r
                page = timed("get", lambda: http.get(f"/r/{tokens[i]}"))
                pairs = list(dict.fromkeys(re.findall(r"/p/([0-9a-f]{24})", page.text)))
                for j, pair in enumerate(pairs):
                    timed("get", lambda: http.get(f"/r/{tokens[i]}/p/{pair}"))
                    timed("post", lambda: http.post(f"/r/{tokens[i]}/p/{pair}", data={
                        "choice": ("left", "right", "tie")[(i + j) % 3], "rev": "0"}))
            return out

        start = time.perf_counter()
        with ThreadPoolExecutor(raters) as pool:
            results = [r for rows in pool.map(rate, range(raters)) for r in rows]
        wall = time.perf_counter() - start
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    stored = len(he_db.bundle_votes(engine, served.bundle_id))
    posts = [r for r in results if r[0] == "post"]
    lat = np.array([r[2] for r in results])
    post_lat = np.array([r[2] for r in posts])
    return {"workers": workers, "raters": raters, "requests": len(results), "votes_sent": len(posts),
            "votes_accepted": sum(r[1] == 303 for r in posts), "votes_stored": stored,
            "status_5xx": sum(r[1] >= 500 for r in results), "wall_s": round(wall, 1),
            "requests_per_s": round(len(results) / wall, 1),
            "p50_ms": round(1000 * float(np.percentile(lat, 50)), 1),
            "p99_ms": round(1000 * float(np.percentile(lat, 99)), 1), "max_ms": round(1000 * float(lat.max()), 1),
            "vote_p50_ms": round(1000 * float(np.percentile(post_lat, 50)), 1),
            "vote_p99_ms": round(1000 * float(np.percentile(post_lat, 99)), 1)}


# --- probes: issue 24's holes, each one row {item, probe, expected, result, ok} ----------------------------------

PASSWORD = "S3cr3t-pw"
CURRICULUM = """
output_dir: runs/probe
stages:
  - stage: 1
    context: 128
    gate:
      rules:
        - {name: degradation, task: ppl_vs_length, metric: degradation_pct, bin: "length={context}", op: "<",
           threshold: 1000}
  - stage: 2
    context: 256
"""
# `evalsuite ARGS` with the store's engine swapped for a SQLite file (argv[1]), so that a PostgreSQL URL with a
# password works without a server; everything that shows the URL sees the PostgreSQL one.
FAKE_POSTGRES = """
import sys
import evalsuite.store
from evalsuite.cli import main
make_engine = evalsuite.store.make_engine
evalsuite.store.make_engine = lambda url: make_engine("sqlite:///" + sys.argv[1])
sys.exit(main(sys.argv[2:]))
"""
# `evalsuite ARGS` whose 4th stored unit meets a full disk (OSError ENOSPC), as a write on a full disk would.
DISK_FULL = """
import errno, sys
from evalsuite.cli import main
from evalsuite.store import Store
add_unit = Store.add_unit
def full_after_3(self, run_id, key, samples, shard=0):
    if len(self.done_units(run_id)) == 3:
        raise OSError(errno.ENOSPC, "No space left on device")
    return add_unit(self, run_id, key, samples, shard)
Store.add_unit = full_after_3
sys.exit(main(sys.argv[1:]))
"""


def evalsuite(*args: str, env: dict | None = None, script: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "evalsuite.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def message_lines(stderr: str) -> list[str]:
    """stderr without progress bars (transformers' weight loading)."""
    return [line for line in stderr.splitlines() if line.strip() and "it/s]" not in line and "%|" not in line]


def one_line(proc: subprocess.CompletedProcess, code: int = 2, prefix: str = "evalsuite: error:") -> tuple[str, bool]:
    """(what happened, whether it is exit `code` with exactly one message line starting with `prefix`)."""
    lines = message_lines(proc.stderr)
    traceback = any(line.startswith("Traceback") for line in lines)
    result = f"exit {proc.returncode}, {len(lines)} line(s)" + (", a traceback" if traceback else "")
    if lines and not traceback:
        last = lines[-1]
        result += ": " + (last if len(last) <= 170 else f"{last[:110]} ... {last[-55:]}")
    return result, proc.returncode == code and len(lines) == 1 and lines[0].startswith(prefix)


def probe_forged_hash_cache(root: Path) -> list[dict]:
    """Item 1: the hash of tampered, never-evaluated weights written into the good checkpoint's entry in the hash
    cache evalsuite kept until then (cache_dir()/hashes/<its files' stats>); the good checkpoint evaluated; the gate
    asked about the tampered weights."""
    import hashlib
    import shutil

    from safetensors.torch import load_file, save_file

    from evalsuite import gate_db
    from evalsuite.checkpoint_id import checkpoint_identity
    from evalsuite.store import Store
    from ttt_omni.resources import bundled

    folder = root / "forged"
    good, tampered = folder / "good", folder / "tampered"
    shutil.copytree(bundled("checkpoints", "tiny-ttt"), good)
    shutil.copytree(good, tampered)
    weights = load_file(tampered / "model.safetensors")
    name = next(k for k in weights if k.endswith("inner.W1"))
    weights[name] = weights[name] * 3
    save_file(weights, tampered / "model.safetensors", metadata={"format": "pt"})
    real, forged = checkpoint_identity(good)[1], checkpoint_identity(tampered)[1]
    stats = [(str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
             for p in sorted(q for q in good.rglob("*") if q.is_file()) for st in [p.stat()]]
    entry = folder / "cache" / "hashes" / hashlib.sha256(repr(stats).encode()).hexdigest()
    entry.parent.mkdir(parents=True)
    entry.write_text(forged)
    (folder / "curriculum.yaml").write_text(CURRICULUM)
    db, env = str(folder / "r.db"), {"TTT_OMNI_CACHE": str(folder / "cache")}
    ran = evalsuite("run", "--task", "ppl_vs_length", "--model", f"ttt:{good}", "--lengths", "64,128",
                    "--db", db, "--no-progress", env=env)
    stored = Store(db).runs()["model_hash"].tolist() if ran.returncode == 0 else []
    config = str(folder / "curriculum.yaml")
    gates = {name: evalsuite("gate", "--checkpoint", str(ckpt), "--stage", "1", "--config", config, "--db", db, env=env)
             for name, ckpt in (("tampered", tampered), ("good", good))}
    outcomes = {name: gate_db.latest(db, digest, 1) for name, digest in (("tampered", forged), ("good", real))}
    said = {name: f"exit {gates[name].returncode}, {(outcomes[name] or {}).get('outcome', 'no decision')}"
            for name in gates}
    under = "the good weights' hash" if stored == [real] else f"hash(es) {stored} (good: {real}, forged: {forged})"
    return [{"item": 1, "probe": "forged hash-cache entry: good checkpoint evaluated, then the gate on each",
             "expected": "results under the good weights' hash; the gate passes the good weights only",
             "result": f"results under {under}; gate on the tampered weights: {said['tampered']}; on the good: "
                       f"{said['good']}",
             "ok": stored == [real] and gates["tampered"].returncode == 1 and gates["good"].returncode == 0}]


def probe_passwords(root: Path) -> list[dict]:
    """Item 2: every line a run and the commands after it print, with a PostgreSQL URL holding a password."""
    folder = task_folder(root, "passwords", units=2, delay_ms=0, aggregate_ms=0)
    url = f"postgresql://ev:{PASSWORD}@db.example:5432/results"
    sqlite = str(root / "passwords.db")
    commands = [["run", "--task", folder.name, "--include-path", str(folder), "--model", "tiny-baseline",
                 "--no-progress"], ["runs"], ["show", "1"], ["show", "99"], ["migrate"]]
    procs = [evalsuite(sqlite, *args, "--db", url, script=FAKE_POSTGRES) for args in commands]
    printed = "".join(p.stdout + p.stderr for p in procs)
    unreachable = evalsuite("runs", "--db", f"postgresql://ev:{PASSWORD}@127.0.0.1:9/results")
    codes = [p.returncode for p in procs]
    return [{"item": 2, "probe": "run, runs, show, show 99, migrate with --db postgresql://ev:PASSWORD@...",
             "expected": "the password in no line printed",
             "result": f"exits {codes}; the password {printed.count(PASSWORD)} times in {len(printed.splitlines())} "
                       "lines",
             "ok": codes == [0, 0, 0, 2, 0] and PASSWORD not in printed},
            {"item": 2, "probe": "a store that cannot be reached (postgresql://ev:PASSWORD@127.0.0.1:9/...)",
             "expected": "one line without the password",
             "result": one_line(unreachable)[0].replace(PASSWORD, "PASSWORD"),
             "ok": one_line(unreachable)[1] and PASSWORD not in unreachable.stderr}]


def probe_one_line(root: Path) -> list[dict]:
    """Item 10: bad input is one line and exit 2, with no failed run left behind unless the line says so."""
    import torch

    from evalsuite.store import Store

    folder = root / "one_line"
    folder.mkdir()
    db = str(folder / "r.db")
    run = ["run", "--task", "ppl_vs_length", "--db", db, "--no-progress", "--lengths", "64", "--limit", "1"]
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = "cuda" if gpus == 0 else f"cuda:{gpus}"
    afile = folder / "afile"
    afile.write_text("a file")
    outputs = folder / "outputs.jsonl"
    outputs.write_text("".join(json.dumps({"prompt_id": f"p{i}", "prompt": f"Say {i}.", "text": f"{i}"}) + "\n"
                               for i in range(3)))
    corpus = folder / "corpus"
    corpus.mkdir()
    (corpus / "empty.txt").write_text("")  # the first document: the one --limit 1 reads
    (corpus / "text.txt").write_text("Some text to read.")
    tasks = task_folder(folder, "with_a_bad_yaml", units=2, delay_ms=0, aggregate_ms=0)
    (tasks / "broken.yaml").write_text("name: broken\nversion: 1\nkind: bench_units\nmetrics: [bleu]\n")
    disk = run_command(task_folder(folder, "disk_full", units=8, delay_ms=0, aggregate_ms=0), Path(db), seed=0)[3:]

    def runs_stored() -> int:
        return len(Store(db).runs())

    rows = []

    def row(probe: str, proc, expected: str = "exit 2, one line", code: int = 2, prefix: str = "evalsuite: error:",
            stored: int | None = None, contains: str = ""):
        result, ok = one_line(proc, code, prefix)
        if stored is not None:
            result += f"; {stored} run(s) stored"
        ok = ok and contains in proc.stderr
        rows.append({"item": 10, "probe": probe, "expected": expected, "result": result, "ok": ok})

    row(f"run --device {device} ({gpus} GPU here)", evalsuite(*run, "--device", device), stored=runs_stored())
    row("run --seed 1180591620717411303424", evalsuite(*run, "--seed", "1180591620717411303424"),
        stored=runs_stored())
    row("pairs export --out afile/b (afile a file)",
        evalsuite("pairs", "export", "--systems", "a,b", "--task", "t", "--n", "2", "--from-jsonl",
                  f"a={outputs},b={outputs}", "--out", str(afile / "b")))
    row("runs --last -1", evalsuite("runs", "--last", "-1", "--db", db))
    row("run --corpus with an empty document", evalsuite(*run, "--corpus", str(corpus)),
        expected="exit 2, one line; no run stored", stored=runs_stored())
    before = runs_stored()
    row("run passkey --lengths 16 (too short for a sample: found mid-run)",
        evalsuite("run", "--task", "passkey", "--lengths", "16", "--limit", "1", "--db", db, "--no-progress"),
        expected="exit 2, one line saying the run is stored as failed", contains="is stored as failed",
        stored=runs_stored() - before)
    proc = evalsuite(*disk, script=DISK_FULL)
    last = Store(db).runs().iloc[-1]
    row("a full disk at the 4th unit (OSError ENOSPC, simulated)", proc,
        expected="exit 2, one line; the run failed, not running", contains="the disk is full")
    rows[-1]["result"] += f"; run {last['id']} {last['status']}"
    rows[-1]["ok"] = rows[-1]["ok"] and last["status"] == "failed"
    resumed = evalsuite(*disk)
    rows.append({"item": 10, "probe": "the same command after the full disk", "expected": "exit 0, run resumed",
                 "result": f"exit {resumed.returncode}; run {last['id']} {Store(db).run(int(last['id']))['status']}",
                 "ok": resumed.returncode == 0 and Store(db).run(int(last["id"]))["status"] == "finished"})
    row("list --include-path DIR with one bad task YAML", evalsuite("list", "--include-path", str(tasks)),
        expected="exit 0, one warning naming the file", code=0, prefix="evalsuite: warning:", contains="broken.yaml")
    row("run --task broken (the bad YAML's task)",
        evalsuite("run", "--task", "broken", "--include-path", str(tasks), "--db", db, "--no-progress"),
        contains="broken.yaml")
    return rows


def probes(root: Path) -> list[dict]:
    rows = [*probe_forged_hash_cache(root), *probe_passwords(root), *probe_one_line(root)]
    return [{**r, "result": r["result"].replace(str(root), "TMP")} for r in rows]


def markdown(rows: list[dict]) -> str:
    cols = ["item", "probe", "expected", "result", "ok"]
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for r in rows:
        cells = [str(r[c]) if c != "ok" else ("yes" if r[c] else "**no**") for c in cols]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


SWEEP_SPACES = {  # a kind of searched field: (training option, its space, a check of a suggested value)
    "grid": ("model_overrides.ttt_type", "{grid: [linear, mlp]}", lambda v: v in ("linear", "mlp")),
    "uniform": ("lr", "{uniform: [0.001, 0.01]}", lambda v: type(v) is float and 0.001 <= v <= 0.01),
    "log_uniform": ("ttt_lr", "{log_uniform: [0.0001, 0.01]}", lambda v: type(v) is float and 1e-4 <= v <= 1e-2),
    "int_range": ("warmup", "{int_range: [1, 3]}", lambda v: type(v) is int and 1 <= v <= 3),
}


def sweep_spec(root: Path, name: str, space: dict[str, str], sampler: str, trials: int | None, extra: str = "") -> Path:
    path = root / f"{name}.yaml"
    lines = [f"study: {name}", "train: tiny-ttt", "seeds: [0]", f"sampler: {sampler}", "space:"]
    lines += [f"  {field}: {value}" for field, value in space.items()]
    lines += [f"trials: {trials}"] if trials is not None else []
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def sweep_spaces(root: Path, trials: int) -> list[dict]:
    """Every kind of searched field with every sampler that takes it (grid needs grids): is the spec, written as
    YAML, accepted, and are the suggestions of the study a worker opens (`trials`, or every grid point) inside it?"""
    from evalsuite.sweep.spec import SweepSpecError, load_spec
    from evalsuite.sweep.study import open_study, params_of

    rows = []
    for kind, (field, space, inside) in SWEEP_SPACES.items():
        for sampler in ("grid", "random", "tpe") if kind == "grid" else ("random", "tpe"):
            name = f"{kind}-{sampler}".replace("_", "-")
            n = None if sampler == "grid" else 2 if kind == "grid" else trials
            row = {"space": kind, "sampler": sampler, "accepted": "no", "trials": 0, "inside": 0, "distinct": 0}
            try:
                spec = load_spec(sweep_spec(root, name, {field: space}, sampler, n, "set: {steps: 4}\n"))
            except SweepSpecError as e:
                rows.append({**row, "error": str(e).split(": ", 1)[-1][:60]})
                continue
            seen = []
            study = open_study(spec, str(root / f"{name}.db"))
            study.optimize(lambda t: seen.append(params_of(spec, t)[field]) or float(len(seen)),
                           n_trials=spec.n_trials())
            rows.append({**row, "accepted": "yes", "trials": len(seen), "inside": sum(map(inside, seen)),
                         "distinct": len(set(seen)), "error": ""})
    return rows


def sweep_over_ranges(root: Path, trials: int) -> dict:
    """One real `ttt-omni sweep` (training and evaluating each trial) with a random sampler over a log_uniform, a
    uniform and an int_range field."""
    import optuna

    from ttt_omni.data_manifest import books

    text = books("train")[0].read()[:40_000]  # a few short conversations: tokenising every book costs each trial
    data = root / "conversations.jsonl"
    data.write_text("".join(json.dumps({"conversation_id": i, "turns": [{"speaker": "book", "text": text[
        i * 8000:(i + 1) * 8000]}]}) + "\n" for i in range(5)))
    space = {name: SWEEP_SPACES[kind][1] for kind, name in (("log_uniform", "ttt_lr"), ("uniform", "lr"),
                                                             ("int_range", "warmup"))}
    path = sweep_spec(root, "ranges", space, "random", trials, textwrap.dedent(f"""\
        set: {{steps: 4, context: 64, batch_size: 2, monitor_every: 2, books_split: null, jsonl: {data},
              tokenizer: bundled:checkpoints/tiny-ttt}}
        objective: {{task: ppl_vs_length, metric: cum_ppl, bin: length=256, lengths: [256], limit: 1}}
        output_dir: {root}/runs/{{study}}
        """))
    db = root / "ranges.db"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ttt_omni.cli", "sweep", str(path), "--db", str(db),
                           "--no-progress"], env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True)
    wall = time.perf_counter() - start
    study = optuna.load_study(study_name="ranges", storage=f"sqlite:///{db}") if db.exists() else None
    complete = [t for t in (study.trials if study else []) if t.state.name == "COMPLETE"]
    inside = sum(all(SWEEP_SPACES[k][2](t.params[n]) for k, n in (("log_uniform", "ttt_lr"), ("uniform", "lr"),
                                                                   ("int_range", "warmup"))) for t in complete)
    return {"trials": trials, "exit": done.returncode, "complete": len(complete), "params_inside": inside,
            "wall_s": round(wall, 1), "last_line": (done.stdout.strip().splitlines() or done.stderr.strip()
                                                    .splitlines() or [""])[-1][:70]}


def table(title: str, rows: list[dict]) -> str:
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = [title, "  ".join(c.rjust(width[c]) for c in cols)]
    lines += ["  ".join(str(r[c]).rjust(width[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--units", type=int, default=40)
    ap.add_argument("--delay-ms", type=int, default=50)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--raters", type=int, default=50)
    ap.add_argument("--votes", type=int, default=20)
    ap.add_argument("--workers", default="1,4")
    ap.add_argument("--sweep-trials", type=int, default=12, help="suggestions per sampler over each kind of field")
    ap.add_argument("--sweep-runs", type=int, default=2, help="trials of the real sweep over ranges (0: none)")
    ap.add_argument("--probes-only", action="store_true", help="run only the probes of issue 24's holes")
    ap.add_argument("--from-json", type=Path, help="print the probes' table of this JSON as markdown; run nothing")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "reliability.json")
    args = ap.parse_args(argv)
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        print(markdown(result["probes"]))
        return result
    workers = [] if args.probes_only else [int(w) for w in args.workers.split(",")]
    parts = 1 + (0 if args.probes_only else 2 + len(workers))
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp, tqdm(total=parts, desc="reliability",
                                                                         unit="part") as bar:
        root = Path(tmp)
        result = {"cpus": os.cpu_count()}
        if not args.probes_only:
            result["concurrent_runs"] = concurrent_runs(root, args.processes, args.units, args.delay_ms)
            bar.update()
            result["kill_resumes"] = kill_resumes(root, args.kills, args.units, 4 * args.delay_ms)
            bar.update()
            result["rater_load"] = []
            for w in workers:
                result["rater_load"].append(rater_load(root, args.raters, args.votes, w))
                bar.update()
            result["sweep_spaces"] = sweep_spaces(root, args.sweep_trials)
            if args.sweep_runs:
                result["sweep_over_ranges"] = sweep_over_ranges(root, args.sweep_runs)
        result["probes"] = probes(root)
        bar.update()
    if not args.probes_only:
        print(table("concurrent runs on one SQLite store", result["concurrent_runs"]))
        print()
        print(table("kill -9, then the same command resumes", [result["kill_resumes"]]))
        print()
        print(table(f"rater load ({os.cpu_count()} CPUs, clients on the same machine)", result["rater_load"]))
        print()
        print(table("sweep specs: every kind of searched field with every sampler", result["sweep_spaces"]))
        if "sweep_over_ranges" in result:
            print()
            print(table("a real sweep over ranges (random sampler)", [result["sweep_over_ranges"]]))
        print()
    print(table("probes (issue 24): what should happen, what did", result["probes"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
