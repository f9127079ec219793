"""The rater form against a hostile client, over a real socket (uvicorn): a chunked body (no Content-Length) is not
read at all for a wrong link, and is cut off at MAX_BODY while it streams for a right one."""

from __future__ import annotations

import re
import select
import socket
import time
from urllib.parse import urlparse

import pytest
from support.humaneval import add_rater, live_server

from evalsuite.humaneval.app import FORM_TYPE, MAX_BODY, create_app
from evalsuite.humaneval.bundle import load_served

CHUNK = 16 * 1024


def chunked_upload(base: str, path: str, total: int, wait_s: float = 15.0) -> tuple[str, int]:
    """POST `total` bytes to `path` in chunks, never sending the last chunk; returns (the status line of the answer,
    the bytes sent before it came) or ("", bytes sent) when no answer came within `wait_s` of the last chunk."""
    url = urlparse(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {url.hostname}\r\nContent-Type: {FORM_TYPE}\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n".encode())
    sent, answer = 0, b""
    try:
        while sent < total:
            if select.select([sock], [], [], 0.02)[0]:
                break
            try:
                sock.sendall(f"{CHUNK:x}\r\n".encode() + b"a" * CHUNK + b"\r\n")
            except OSError:  # the server answered and closed the connection
                break
            sent += CHUNK
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and b"\r\n" not in answer:
            if select.select([sock], [], [], 0.1)[0]:
                part = sock.recv(4096)
                if not part:
                    break
                answer += part
    finally:
        sock.close()
    return answer.split(b"\r\n", 1)[0].decode(errors="replace"), sent


@pytest.fixture
def server(bundle, db_url):
    with live_server(create_app(bundle, db_url)) as base:
        yield base


def test_a_wrong_link_is_refused_before_its_body_is_read(server, bundle):
    pair = sorted(load_served(bundle).items)[0]
    status, sent = chunked_upload(server, f"/r/{'x' * 32}/p/{pair}", 64 * 1024 * 1024)
    assert status.startswith("HTTP/1.1 403"), status
    assert sent <= 4 * CHUNK  # answered at once: the 64 MB were never read


def test_a_chunked_body_past_the_limit_is_cut_off_while_it_streams(server, bundle, db_url):
    token = add_rater(db_url, bundle, "alice")
    pair = sorted(load_served(bundle).items)[0]
    status, sent = chunked_upload(server, f"/r/{token}/p/{pair}", 64 * 1024 * 1024)
    assert status.startswith("HTTP/1.1 413"), status
    assert sent <= MAX_BODY + 8 * CHUNK  # not read to its end


def test_a_vote_still_works_over_the_same_server(server, bundle, db_url):
    import httpx

    token = add_rater(db_url, bundle, "bob")
    page = httpx.get(f"{server}/r/{token}").text
    pair = re.findall(r"/p/([0-9a-f]{24})", page)[0]
    r = httpx.post(f"{server}/r/{token}/p/{pair}", data={"choice": "tie", "rev": "0"})
    assert r.status_code == 303
