"""50 raters x 20 votes at once through HTTP on loopback (uvicorn + SQLite WAL): every vote lands, none twice."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
from support.humaneval import SYSTEMS, live_server, make_bundle, write_system_outputs

from evalsuite.humaneval import db
from evalsuite.humaneval.app import create_app
from evalsuite.humaneval.bundle import load_served

RATERS, VOTES = 50, 20


def test_50_raters_20_votes_lose_nothing(tmp_path, db_url):
    sources = {s: write_system_outputs(tmp_path / "src", s, VOTES, audio=False) for s in SYSTEMS}
    bundle = make_bundle(tmp_path, sources, n=VOTES)
    served = load_served(bundle)
    engine = db.make_engine(db_url)
    db.register_bundle(engine, served.bundle_id, served.task, len(served.items))
    raters = []
    for i in range(RATERS):
        token = db.add_rater(engine, served.bundle_id, f"rater{i:02d}", sorted(served.items))
        rid = db.rater_for_token(engine, served.bundle_id, token).id
        raters.append((f"rater{i:02d}", token, db.rater_state(engine, rid)[0]))
    expected = {(name, pid): db.CHOICES[(i + j) % 3] for i, (name, _, order) in enumerate(raters) for j, pid in enumerate(order)}
    start = threading.Barrier(RATERS)

    def rate(base: str, name: str, token: str, order: list[str]) -> list[int]:
        statuses = []
        with httpx.Client(base_url=base, timeout=120) as http:
            start.wait(timeout=120)
            for pid in order:
                r = http.post(f"/r/{token}/p/{pid}", data={"choice": expected[(name, pid)], "rev": "0", "comment": name})
                statuses.append(r.status_code)
        return statuses

    with live_server(create_app(bundle, db_url)) as base, ThreadPoolExecutor(RATERS) as pool:
        results = list(pool.map(lambda r: rate(base, *r), raters))
    assert [s for statuses in results for s in statuses] == [303] * (RATERS * VOTES)
    got = {(v["rater"], v["pair_id"]): v["choice"] for v in db.bundle_votes(engine, served.bundle_id)}
    assert got == expected
    assert all(r["voted"] == VOTES and r["replaced"] == 0 for r in db.bundle_raters(engine, served.bundle_id))
