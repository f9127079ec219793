"""What produced a run besides its task, model, config and seed: the code, the libraries, the device, the numerics.

Every run records it in its manifest (`runs.environment`), and it is part of the run's identity for resuming, so an
interrupted run is never continued under other code or libraries (transformers 5.24 changed the TTT model's
numbers without any other trace). `differences` names what differs between runs that are combined (gate, compare).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import platform
import subprocess
from pathlib import Path

import torch

from ttt_omni.ops import backend_name, triton_precision

from . import __version__

PACKAGES = ("torch", "transformers", "lm_eval", "triton", "numpy", "tokenizers", "accelerate")
SOURCE_PACKAGES = ("ttt_omni", "evalsuite")


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def code_hash() -> str:
    """sha256 (16 hex) over the Python sources of ttt_omni and evalsuite: changes with any edit, committed or not."""
    h = hashlib.sha256()
    for package in SOURCE_PACKAGES:
        root = Path(__import__(package).__file__).parent
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root.parent)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


SOURCE_ROOT = Path(__file__).resolve().parent.parent


def code_version() -> str:
    """`git describe --always --dirty` of a source checkout, or the package version when installed from a wheel."""
    if (SOURCE_ROOT / "pyproject.toml").is_file():
        try:
            out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=SOURCE_ROOT, capture_output=True,
                                 text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return f"evalsuite-{__version__}"


def device_name(device: torch.device | str) -> str:
    """'cuda: NVIDIA H200' or 'cpu: <processor model>'."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"{device.type}: {_cpu_model()}"


@functools.cache
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _has_ttt_layers(model: torch.nn.Module) -> bool:
    return bool(getattr(getattr(model, "config", None), "ttt_layers", None))


def environment(model: torch.nn.Module) -> dict:
    """The environment a run of `model` is measured in (JSON-ready)."""
    param = next(model.parameters())
    backend = backend_name(param.device) if _has_ttt_layers(model) else None
    return {
        "python": platform.python_version(),
        **{name: package_version(name) for name in PACKAGES},
        "code_hash": code_hash(),
        "device": device_name(param.device),
        "dtype": str(getattr(model, "dtype", param.dtype)).removeprefix("torch."),
        "ttt_backend": backend,
        "triton_precision": triton_precision() if backend == "triton" else None,
    }


def differences(environments: dict[object, dict | None]) -> dict[str, dict[object, object]]:
    """{field: {label: value}} for each field whose value is not the same in every environment (labels are e.g.
    run ids). Runs recorded before environments were stored (None) are named under the field 'environment'."""
    known = {label: env for label, env in environments.items() if env}
    fields = sorted({k for env in known.values() for k in env})
    out = {f: {label: env.get(f) for label, env in known.items()} for f in fields
           if len({repr(env.get(f)) for env in known.values()}) > 1}
    if len(known) < len(environments) > 1:
        out["environment"] = {label: "recorded" if env else "not recorded" for label, env in environments.items()}
    return out


def describe(diffs: dict[str, dict[object, object]]) -> str:
    """'transformers: 5.23.0 (3), 5.24.0 (5); dtype: ...' for a note (labels in parentheses, '-' = unknown)."""
    parts = []
    for field, by_label in diffs.items():
        groups: dict[str, list[str]] = {}
        for label, value in by_label.items():
            groups.setdefault("-" if value is None else str(value), []).append(str(label))
        parts.append(f"{field}: " + ", ".join(f"{v} ({', '.join(ls)})" for v, ls in groups.items()))
    return "; ".join(parts)
