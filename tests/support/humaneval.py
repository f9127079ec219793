"""Helpers for the human-eval tests: real system-output files (JSONL + small WAVs), bundles, raters, a live server."""

from __future__ import annotations

import hashlib
import json
import math
import socket
import struct
import threading
import time
import wave
from contextlib import contextmanager
from pathlib import Path

from evalsuite.humaneval import db
from evalsuite.humaneval.bundle import export_bundle, load_served, read_outputs_jsonl

# Distinctive names so a leak is unmistakable when the served pages are scanned for them.
SYSTEMS = ("tttomni-stage3-7b", "llamaomni-baseline-8b")


def write_wav(path: Path, freq: float, seconds: float = 0.05, rate: int = 8000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / rate))) for i in range(int(seconds * rate))
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)


def add_info_chunk(path: Path, text: str) -> None:
    """Insert a RIFF LIST/INFO chunk (ISFT: the software that made the file) before the data chunk, as audio tools
    write it."""
    data = path.read_bytes()
    assert data[12:16] == b"fmt "
    fmt_end = 20 + int.from_bytes(data[16:20], "little")
    value = text.encode() + b"\0"
    value += b"\0" * (len(value) % 2)
    info = b"INFO" + b"ISFT" + struct.pack("<I", len(value)) + value
    chunk = b"LIST" + struct.pack("<I", len(info)) + info
    body = data[12:fmt_end] + chunk + data[fmt_end:]
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body)


def write_system_outputs(root: Path, system: str, n_prompts: int, audio: bool = True) -> Path:
    """A JSONL of one system's outputs, with WAVs whose paths name the system (as real output folders do)."""
    folder = root / f"outputs-{system}"
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n_prompts):
        rec = {"prompt_id": f"p{i:03d}", "prompt": f"Tell a long story number {i}.", "text": f"story {i} as told by a model, version {len(system) % 7}-{i}"}
        if audio:
            wav = folder / f"{system}_p{i:03d}.wav"
            write_wav(wav, freq=220 + 10 * i + len(system))
            rec["audio"] = wav.name
        lines.append(json.dumps(rec))
    path = folder / f"{system}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def fixed_secret(label: object = 7) -> str:
    """A fixed 256-bit bundle secret per label, so that a test's bundle is the same on every run."""
    return hashlib.sha256(f"test secret {label}".encode()).hexdigest()


def make_bundle(tmp_path: Path, sources: dict[str, Path], n: int, secret: object = 7, name: str = "bundle") -> Path:
    outputs = {s: read_outputs_jsonl(p) for s, p in sources.items()}
    export_bundle(outputs, "longform_story", n, fixed_secret(secret), tmp_path / name,
                  sources={s: str(p) for s, p in sources.items()})
    return tmp_path / name


def add_rater(db_url: str, bundle_dir: Path, name: str, n: int | None = None) -> str:
    served = load_served(bundle_dir)
    engine = db.make_engine(db_url)
    db.register_bundle(engine, served.bundle_id, served.task, len(served.items))
    token = db.add_rater(engine, served.bundle_id, name, sorted(served.items), n)
    engine.dispose()
    return token


@contextmanager
def live_server(app):
    """uvicorn on 127.0.0.1, a free port bound up front, in a background thread; stopped on exit."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(400):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
