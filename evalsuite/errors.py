"""Errors for bad input: each names the input and what was expected. The CLI prints them as one line (exit 2)."""
from __future__ import annotations


class EvalsuiteError(Exception):
    """Base of the errors the CLI reports without a traceback."""


class TaskSpecError(EvalsuiteError, ValueError):
    """A task YAML is malformed: missing field, wrong type, unknown kind or metric."""


class UnknownTaskError(EvalsuiteError, KeyError):
    """No task of that name; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class ModelSpecError(EvalsuiteError, ValueError):
    """A model spec string (ttt:PATH, hf:PATH, tiny, tiny-baseline) that cannot be resolved."""


class CorpusError(EvalsuiteError, FileNotFoundError):
    """A corpus that is missing, unreadable or empty."""


class StoreError(EvalsuiteError, ValueError):
    """A results-store URL or run id that does not work."""


class NonFiniteModelError(EvalsuiteError, ValueError):
    """A model whose weights, TTT state or outputs hold NaN/Inf: its results would be meaningless."""
