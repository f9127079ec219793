"""Task registry: versioned task specs (YAML) plus the Python kinds that run them.

A task spec is a YAML file (`tasks/*.yaml`) with `name`, `version`, `kind`, `description`, `dataset`, `lengths`,
`metrics`, `thresholds` and free-form `params`. Its `kind` names a `TaskKind` subclass registered with
`@register_kind`. Specs and kinds come from three places, in this order:

1. built in: the bundled `tasks/*.yaml` (ttt_omni.resources) and the kinds in `evalsuite.kinds`;
2. the entry point group `evalsuite.tasks`: each entry point is loaded (importing it registers its kinds); when it
   is a callable it is called and returns paths to task YAML files or folders of them;
3. `--include-path DIR` (like lm-eval): every `*.py` in DIR is imported (registering kinds), every `*.yaml` loaded.

A task YAML from an entry point or an include path that cannot be read or is not a valid spec does not take the
others down: it is skipped, and named in one warning line when another task is asked for or the tasks are listed;
asking for its task (its name, or its file's stem when the name cannot be read) is the error itself.

Tasks of lm-eval are reachable as `lm_eval:NAME` (kind `lm_eval`), see `evalsuite.kinds.lm_eval_task`. The spec and
kind classes are in `evalsuite.task` (re-exported here for task authors: `from evalsuite.registry import TaskKind,
Unit, register_kind`).
"""
from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from typing import Any

import yaml

from ttt_omni.resources import bundled

from . import kinds  # noqa: F401  (registers the built-in kinds)
from .errors import TaskSpecError, UnknownTaskError
from .kinds.lm_eval_task import lm_eval_spec
from .task import (KINDS, LM_EVAL_PREFIX, TaskKind, TaskSpec, Unit, parse_length, register_kind, spec_from_dict,
                   validate_spec)

ENTRY_POINT_GROUP = "evalsuite.tasks"
__all__ = ["KINDS", "LM_EVAL_PREFIX", "Registry", "TaskKind", "TaskSpec", "Unit", "load_spec", "parse_length",
           "register_kind", "spec_from_dict", "validate_spec"]


def load_spec(path: str | Path) -> TaskSpec:
    return spec_from_dict(_read_yaml(Path(path)), str(path))


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise TaskSpecError(f"{path}: cannot read task spec ({e.strerror or e})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise TaskSpecError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    return data


def _is_lm_eval_yaml(data: Any) -> bool:
    """lm-eval's own task YAMLs (`task:` instead of `name:`/`kind:`) may share an include path; lm-eval reads them."""
    return isinstance(data, dict) and ("task" in data or "group" in data) and "kind" not in data


class Registry:
    """All task specs visible with the given include paths, by name; `skipped`: file -> why it was not loaded."""

    def __init__(self, include_paths: list[str | Path] | tuple = ()):
        self.include_paths = [str(p) for p in include_paths]
        self.specs: dict[str, TaskSpec] = {}
        self.skipped: dict[Path, TaskSpecError] = {}
        self._skipped_names: dict[str, Path] = {}
        for p in _yaml_files(bundled("tasks")):  # ours: a broken one is an error
            self._add(p)
        yaml_paths: list[Path] = []
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            obj = ep.load()
            if callable(obj) and not isinstance(obj, type):
                for p in obj() or []:
                    yaml_paths.extend(_yaml_files(Path(p)))
        for inc in include_paths:
            inc = Path(inc)
            if not inc.is_dir():
                raise TaskSpecError(f"include path {inc}: not a directory (expected a folder of task YAMLs)")
            for py in sorted(inc.glob("*.py")):
                _import_file(py)
            yaml_paths.extend(_yaml_files(inc))
        for p in yaml_paths:
            try:
                self._add(p)
            except TaskSpecError as e:
                self.skipped[p] = e
                data = _read_yaml_or_none(p)
                name = data.get("name") if isinstance(data, dict) else None
                self._skipped_names[name if isinstance(name, str) and name else p.stem] = p

    def _add(self, path: Path) -> None:
        data = _read_yaml(path)
        if _is_lm_eval_yaml(data):
            return
        spec = spec_from_dict(data, str(path))
        self.specs[spec.name] = spec  # later sources override earlier ones

    def names(self) -> list[str]:
        self._warn_skipped()
        return sorted(self.specs)

    def get(self, name: str) -> TaskSpec:
        if name.startswith(LM_EVAL_PREFIX):
            return lm_eval_spec(name[len(LM_EVAL_PREFIX):], self.include_paths)
        if name in self._skipped_names and name not in self.specs:
            raise self.skipped[self._skipped_names[name]]
        if name in self.specs:
            self._warn_skipped()
            return self.specs[name]
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        skipped = f"; skipped, unreadable: {', '.join(map(str, self.skipped))}" if self.skipped else ""
        raise UnknownTaskError(f"unknown task {name!r}{hint} (known: {', '.join(sorted(self.specs)) or 'none'}; "
                               f"lm-eval tasks as lm_eval:NAME{skipped})")


    def _warn_skipped(self) -> None:
        for path, error in self.skipped.items():
            line = f"evalsuite: warning: {error}; its task is skipped, the other tasks load"
            if line not in _WARNED:
                _WARNED.add(line)
                print(line, file=sys.stderr)


_WARNED: set[str] = set()  # each skipped file is named once per process, however many registries are built


def _read_yaml_or_none(path: Path) -> Any:
    try:
        return _read_yaml(path)
    except TaskSpecError:
        return None


def _yaml_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else []


def _import_file(py: Path) -> None:
    name = f"evalsuite_include_{abs(hash(str(py.resolve())))}_{py.stem}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, py)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
