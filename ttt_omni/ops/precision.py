"""tl.dot's operand precision in the triton kernels, chosen by $TTT_OMNI_TRITON_PRECISION (default tf32x3: float32-level
error; tf32 is faster and less exact; ieee is exact and slowest). Read without importing triton, so a run records it."""
from __future__ import annotations

import os

TRITON_PRECISIONS = ("ieee", "tf32x3", "tf32")
DEFAULT_TRITON_PRECISION = "tf32x3"


def triton_precision() -> str:
    p = os.environ.get("TTT_OMNI_TRITON_PRECISION", DEFAULT_TRITON_PRECISION)
    if p not in TRITON_PRECISIONS:
        raise ValueError(f"TTT_OMNI_TRITON_PRECISION={p!r}; expected one of {TRITON_PRECISIONS}")
    return p
