"""`evalsuite raters ...` and `evalsuite dashboard` on bad input: one line, exit 2, before any server starts."""

from __future__ import annotations

import socket

import pytest

from evalsuite.cli import main


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("port", ["99999", "0", "-1"])
def test_a_port_out_of_range_is_one_line(bundle, db_url, capsys, port):
    assert main(["raters", "serve", "--bundle", str(bundle), "--db", db_url, "--port", port]) == 2
    assert f"--port {port}: expected a TCP port number in 1..65535" in one_line_error(capsys)
    assert main(["dashboard", "--db", db_url, "--port", port]) == 2
    assert f"--port {port}: expected a TCP port number in 1..65535" in one_line_error(capsys)


def test_a_port_in_use_is_one_line(bundle, db_url, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert main(["raters", "serve", "--bundle", str(bundle), "--db", db_url, "--port", port]) == 2
        assert f"--port {port}: cannot listen on 127.0.0.1:{port}" in one_line_error(capsys)


def test_workers_and_stores_that_cannot_work(bundle, tmp_path, db_url, capsys):
    assert main(["raters", "serve", "--bundle", str(bundle), "--db", db_url, "--workers", "0"]) == 2
    assert "--workers 0: expected one or more server processes" in one_line_error(capsys)
    notes = tmp_path / "notes.db"
    notes.write_text("not a database\n" * 40)
    for args in (["raters", "add", "--bundle", str(bundle), "--name", "ann"], ["raters", "list", "--bundle", str(bundle)]):
        assert main([*args, "--db", str(notes)]) == 2
        assert "the file is not an SQLite database" in one_line_error(capsys)
    assert main(["raters", "add", "--bundle", str(bundle), "--name", "ann", "--db",
                 "postgresql://rater:hunter2-secret@127.0.0.1:1/votes"]) == 2
    err = one_line_error(capsys)
    assert "hunter2-secret" not in err and "rater:***@" in err
