"""The triton kernels' checks (triton_interpreter_checks.py) in a fresh process: with TRITON_INTERPRET=1 on the CPU
(the interpreter is chosen when triton is first imported, which in a full test session happens earlier, through
torch), and compiled on a GPU when there is one."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECKS = Path(__file__).with_name("triton_interpreter_checks.py")


def _run_checks(env: dict) -> None:
    pytest.importorskip("triton")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CHECKS)],
                          cwd=CHECKS.parents[2], capture_output=True, text=True, timeout=1200,
                          env={**os.environ, **env})
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]


def test_triton_kernels_under_the_interpreter():
    _run_checks({"TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"})


@pytest.mark.gpu
def test_triton_kernels_compiled_on_the_gpu():
    _run_checks({"TTT_OMNI_TEST_DEVICE": "cuda", "TRITON_INTERPRET": "0"})
