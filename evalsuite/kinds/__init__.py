"""Built-in task kinds; importing this package registers them."""
from . import lm_eval_task, ppl_vs_length  # noqa: F401
