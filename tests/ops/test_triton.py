"""The triton kernels' checks (triton_interpreter_checks.py) in a fresh process with TRITON_INTERPRET=1: the
interpreter is chosen when triton is first imported, which in a full test session happens earlier, through torch."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECKS = Path(__file__).with_name("triton_interpreter_checks.py")


def test_triton_kernels_under_the_interpreter():
    pytest.importorskip("triton")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CHECKS)],
                          cwd=CHECKS.parents[2], capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
