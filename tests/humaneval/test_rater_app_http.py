"""The rater form over HTTP (TestClient): no system identity anywhere it serves, auth, votes, malformed posts."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from support.humaneval import SYSTEMS, add_rater
from sqlalchemy import func, select

from evalsuite.humaneval import db
from evalsuite.humaneval.app import create_app
from evalsuite.humaneval.bundle import load_key, load_served


@pytest.fixture
def client(bundle, db_url):
    with TestClient(create_app(bundle, db_url), follow_redirects=False) as c:
        yield c


def rater_pairs(client, token) -> list[str]:
    page = client.get(f"/r/{token}").text
    return list(dict.fromkeys(re.findall(r"/p/([0-9a-f]{24})", page)))


def test_nothing_served_names_a_system_or_a_path(client, bundle, db_url, sources, tmp_path):
    token = add_rater(db_url, bundle, "alice")
    key = load_key(bundle)
    needles = set(SYSTEMS) | {str(tmp_path), "outputs-", "key.json", "src/"}
    for p in sources.values():
        needles |= {str(p), p.name} | {w.name for w in p.parent.glob("*.wav")} | {w.stem for w in p.parent.glob("*.wav")}
    for pair in key["pairs"].values():
        needles |= {pair[s]["audio_source"] for s in ("left", "right")}
    seen = []
    for url in [f"/r/{token}"] + [f"/r/{token}/p/{pid}" for pid in rater_pairs(client, token)]:
        r = client.get(url)
        assert r.status_code == 200
        seen.append((url, r.text, dict(r.headers)))
        for audio in re.findall(r'<audio[^>]*src="([^"]+)"', r.text):
            a = client.get(audio)
            assert a.status_code == 200 and a.headers["content-type"] == "audio/wav"
            assert a.content[:4] == b"RIFF"
            seen.append((audio, "", dict(a.headers)))
    assert len(seen) > 12  # overview + 6 pairs + their audio
    for url, html, headers in seen:
        blob = url + html + " ".join(f"{k}: {v}" for k, v in headers.items())
        for needle in needles:
            assert needle not in blob, f"{needle!r} leaks through {url}"
    # the key and the bundle files are not reachable over HTTP
    for path in ("/key/key.json", "/bundle.json", "/items.jsonl", f"/r/{token}/key.json", "/docs", "/openapi.json"):
        assert client.get(path).status_code in (401, 403, 404)


def test_auth(client, bundle, db_url):
    alice = add_rater(db_url, bundle, "alice", n=3)
    bob = add_rater(db_url, bundle, "bob", n=3)
    assert client.get("/").status_code == 401
    assert client.get("/r/" + "x" * 32).status_code == 403
    assert client.get("/r/bad token!").status_code in (403, 404)
    mine, theirs = set(rater_pairs(client, alice)), set(rater_pairs(client, bob))
    others = sorted(set(load_served(bundle).items) - mine)
    assert len(mine) == 3 and others
    r = client.get(f"/r/{alice}/p/{others[0]}")
    assert r.status_code == 403
    r = client.post(f"/r/{alice}/p/{others[0]}", data={"choice": "left", "rev": "0"})
    assert r.status_code == 403
    page = client.get(f"/r/{bob}/p/{sorted(theirs)[0]}").text
    audio = re.findall(r'<audio[^>]*src="/r/[^/]+/a/([0-9a-f]+)"', page)[0]
    if sorted(theirs)[0] not in mine:
        assert client.get(f"/r/{alice}/a/{audio}").status_code == 403
    assert client.get(f"/r/{'y' * 32}/p/{others[0]}").status_code == 403


def test_vote_replace_is_audited_and_replay_refused(client, bundle, db_url):
    token = add_rater(db_url, bundle, "alice")
    pairs = rater_pairs(client, token)
    r = client.post(f"/r/{token}/p/{pairs[0]}", data={"choice": "left", "rev": "0", "comment": " fine "})
    assert r.status_code == 303 and r.headers["location"] == f"/r/{token}/p/{pairs[1]}"
    assert client.post(f"/r/{token}/p/{pairs[0]}", data={"choice": "left", "rev": "0"}).status_code == 409
    page = client.get(f"/r/{token}/p/{pairs[0]}").text
    assert 'name="rev" value="1"' in page and "replaces your answer" in page
    assert client.post(f"/r/{token}/p/{pairs[0]}", data={"choice": "tie", "rev": "1"}).status_code == 303
    assert client.post(f"/r/{token}/p/{pairs[0]}", data={"choice": "right", "rev": "1"}).status_code == 409
    engine = db.make_engine(db_url)
    votes = db.bundle_votes(engine, load_served(bundle).bundle_id)
    assert [(v["pair_id"], v["choice"], v["revision"]) for v in votes] == [(pairs[0], "tie", 2)]
    with engine.begin() as c:
        audit = c.execute(select(db.vote_audit)).all()
    assert [(a.old_choice, a.old_comment, a.new_choice) for a in audit] == [("left", "fine", "tie")]
    assert "1 of 6 pairs answered" in client.get(f"/r/{token}").text


@pytest.mark.parametrize(
    "data, status",
    [
        ({"rev": "0"}, 422),  # no choice
        ({"choice": "left"}, 422),  # no rev
        ({}, 422),
        ({"choice": "both", "rev": "0"}, 422),
        ({"choice": "left", "rev": "zero"}, 422),
        ({"choice": "left", "rev": "0", "comment": "x" * (db.MAX_COMMENT + 1)}, 422),
        ({"choice": "left", "rev": "0", "comment": "x" * 70_000}, 413),
        ({"choice": "left", "rev": "5"}, 409),  # a form that was never rendered (replay of another revision)
    ],
)
def test_malformed_posts_get_4xx(client, bundle, db_url, data, status):
    token = add_rater(db_url, bundle, "alice")
    pid = rater_pairs(client, token)[0]
    r = client.post(f"/r/{token}/p/{pid}", data=data)
    assert r.status_code == status, r.text
    engine = db.make_engine(db_url)
    with engine.begin() as c:
        assert c.execute(select(func.count()).select_from(db.votes)).scalar_one() == 0


def test_wrong_pair_ids_and_bodies(client, bundle, db_url):
    token = add_rater(db_url, bundle, "alice")
    for pid in ("0" * 24, "not-a-pair", "../../key/key.json", "%2e%2e"):
        r = client.post(f"/r/{token}/p/{pid}", data={"choice": "left", "rev": "0"})
        assert 400 <= r.status_code < 500, (pid, r.status_code)
    pid = rater_pairs(client, token)[0]
    r = client.post(f"/r/{token}/p/{pid}", content=b"\xff\xfe garbage", headers={"content-type": "application/x-www-form-urlencoded"})
    assert 400 <= r.status_code < 500
    r = client.post(f"/r/{token}/p/{pid}", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"})
    assert 400 <= r.status_code < 500
    r = client.post(f"/r/{token}/p/{pid}", json={"choice": "left", "rev": 0})
    assert 400 <= r.status_code < 500
    assert client.get(f"/r/{token}/a/{'0' * 24}").status_code == 404
