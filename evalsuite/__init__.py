"""evalsuite: the evaluation engine of ttt-omni (tasks, runner, results store, gate, human eval)."""

__version__ = "0.1.0"
