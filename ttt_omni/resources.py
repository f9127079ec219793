"""Where the project's bundled files live: task specs (tasks/), training configs (configs/), leaderboard definitions
(leaderboards/), the dashboard app (dashboards/), the bundled books (data/books/) and the reference checkpoints
(checkpoints/).

In a source checkout (run from the tree, or an editable install) that is the repository root. A wheel installs the
same folders under `<prefix>/share/ttt-omni/` (pyproject.toml's data-files). `$TTT_OMNI_ROOT` overrides both.
"""
from __future__ import annotations

import os
import site
import sys
from pathlib import Path

ENV_VAR = "TTT_OMNI_ROOT"
SHARE = Path("share") / "ttt-omni"
FOLDERS = ("tasks", "configs", "leaderboards", "dashboards", "data/books", "checkpoints")


def _is_root(path: Path) -> bool:
    return (path / "tasks").is_dir() and (path / "data" / "books").is_dir()


def root() -> Path:
    """The folder holding the bundled files (see the module docstring); FileNotFoundError naming where it looked."""
    if os.environ.get(ENV_VAR):
        path = Path(os.environ[ENV_VAR]).expanduser()
        if not _is_root(path):
            raise FileNotFoundError(f"${ENV_VAR}={path} does not hold the project's bundled files (expected the "
                                    f"folders {', '.join(FOLDERS)})")
        return path
    candidates = [Path(__file__).resolve().parent.parent, Path(sys.prefix) / SHARE, Path(site.getuserbase()) / SHARE]
    for path in candidates:
        if _is_root(path):
            return path
    raise FileNotFoundError(f"the project's bundled files are not installed; looked in "
                            f"{', '.join(map(str, candidates))} (set ${ENV_VAR} to a folder holding "
                            f"{', '.join(FOLDERS)})")


def bundled(*parts: str) -> Path:
    """A path inside the bundled files, e.g. bundled("configs", "tiny-ttt.yaml")."""
    return root().joinpath(*parts)


def config_path(name_or_path: str | os.PathLike) -> Path:
    """A training/curriculum YAML: an existing file as given, else a bundled config by name (`tiny-ttt`,
    `tiny-ttt.yaml` or `configs/tiny-ttt.yaml`), so the bundled configs work from any directory."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    name = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
    try:
        folder = bundled("configs")
    except FileNotFoundError:
        folder = None
    if folder is not None and (folder / name).is_file() and path.parent in (Path("."), Path("configs")):
        return folder / name
    known = sorted(p.stem for p in folder.glob("*.yaml")) if folder is not None else []
    raise FileNotFoundError(f"config {str(name_or_path)!r} not found: expected a YAML file or the name of a bundled "
                            f"config ({', '.join(known) or 'none installed'})")
