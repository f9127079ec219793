"""A throwaway PostgreSQL server for the tests: the machine's own binaries (Debian's postgresql, which
scripts/setup.sh installs as root), `initdb` + `pg_ctl` in a temporary folder, listening on 127.0.0.1 at a free
port with a password, stopped and deleted at the end. initdb refuses to run as root, so as root the server runs as
the unprivileged `postgres` user (or `nobody`) through runuser."""
from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

USER = "evalsuite"


def binaries() -> Path | None:
    """The newest PostgreSQL server's bin/ folder on this machine, if any."""
    found = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if (Path(p) / "initdb").exists()]
    if found:
        return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def require_binaries() -> Path:
    """The bin/ folder; where it is missing, a failure if scripts/setup.sh could have installed it (root with
    apt-get: the setup is incomplete), else a skip with the reason."""
    bin_dir = binaries()
    if bin_dir is not None:
        return bin_dir
    how = "bash scripts/setup.sh as root installs Debian's postgresql"
    if os.geteuid() == 0 and shutil.which("apt-get"):
        pytest.fail(f"PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: {how}")
    pytest.skip(f"PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin and this user cannot install "
                f"them ({how})")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server() -> Iterator[tuple[str, str]]:
    """Starts a server; yields (URL of its `postgres` database for the superuser `evalsuite`, its password)."""
    bin_dir = require_binaries()
    owner = None
    if os.geteuid() == 0:  # initdb and postgres refuse root
        owner = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
        if owner is None:
            pytest.fail("running as root, no unprivileged user (postgres, nobody) to run the PostgreSQL server as")
    prefix = ["runuser", "-u", owner, "--"] if owner else []
    home = Path(tempfile.mkdtemp(prefix="evalsuite-pg-"))
    data = home / "data"
    password = secrets.token_hex(12)
    (home / "pw").write_text(password + "\n")
    if owner:
        user = pwd.getpwnam(owner)
        os.chown(home, user.pw_uid, user.pw_gid)
        os.chown(home / "pw", user.pw_uid, user.pw_gid)
    started = False
    try:
        _run(prefix + [str(bin_dir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={home / 'pw'}",
                       "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8",
                       "--locale=C"])
        for _ in range(5):  # another process may take the free port between the probe and the start
            port = _free_port()
            options = (f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                       "-c full_page_writes=off -c max_connections=200")
            started = subprocess.run(prefix + [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(home / "log"),
                                               "-w", "-t", "60", "-o", options, "start"],
                                     capture_output=True, text=True).returncode == 0
            if started:
                break
        if not started:
            log = (home / "log").read_text()[-2000:] if (home / "log").exists() else ""
            pytest.fail(f"the PostgreSQL server in {home} did not start:\n{log}")
        yield f"postgresql://{USER}:{password}@127.0.0.1:{port}/postgres", password
    finally:
        if started:
            subprocess.run(prefix + [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _run(cmd: list[str]) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")


def new_database(url: str, name: str) -> str:
    """Creates database `name` on the server at `url` (its `postgres` database); returns its URL."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)
