"""Launching a test script on several CPU processes (gloo) with torchrun."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(script, *args, processes: int = 2) -> subprocess.CompletedProcess:
    """Runs `script ARGS` on `processes` local processes, one thread each."""
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                           "--master_port", str(free_port()), str(script), *map(str, args)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def reports(stdout: str) -> list[dict]:
    """The JSON objects the processes printed as `REPORT{...}` (their lines may interleave on the shared stdout)."""
    return [json.loads(m) for m in re.findall(r"REPORT(\{.*?\})", stdout)]
