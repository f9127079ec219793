"""The built-in task kinds, all registered here (importing this package registers them). Entry points of the
`evalsuite.tasks` group are for other packages' kinds."""
from . import asr_wer, coherence, compare, degeneration, entity_drift, lm_eval_task, ppl_vs_length, retrieval  # noqa: F401
