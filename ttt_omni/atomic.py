"""Writes that leave either the previous version or the complete new one, never a half-written file or folder: the
new content goes to a temporary sibling, is flushed to disk (fsync), and is renamed into place; on any error the
temporary is removed and what was there before is untouched."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replacing_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `path` for the caller to write; then it replaces `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with replacing_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj, **dump_kwargs) -> Path:
    return write_text(path, json.dumps(obj, **{"indent": 2, **dump_kwargs}) + "\n")


@contextmanager
def replacing_dir(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yields a temporary directory beside `path` for the caller to fill; then it takes `path`'s place (see
    `publish_dir`). With overwrite=False a non-empty `path` is refused first."""
    path = Path(path)
    if not overwrite and path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"output {path} already exists and is not an empty directory; choose a new path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        publish_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish_dir(tmp: Path, path: Path) -> None:
    """Moves the finished directory `tmp` (a sibling of `path`) into `path`'s place: its files are flushed to disk
    first, and an existing `path` is removed only once the new one is there. For writers that cannot use
    `replacing_dir` (several processes filling one directory)."""
    for file in (p for p in tmp.rglob("*") if p.is_file()):
        _fsync(file)
    old = tmp.with_name(tmp.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        if old.exists():
            os.replace(old, path)
        raise
    _fsync(path.parent)
    shutil.rmtree(old, ignore_errors=True)
