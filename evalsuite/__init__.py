"""evalsuite: the evaluation engine of ttt-omni (tasks, runner, results store, gate, human eval)."""
