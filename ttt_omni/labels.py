"""The label of a position that teaches nothing (prompt, padding, speech frames): cross-entropy skips it.

-100 is PyTorch's default `ignore_index` and what transformers and LLaMA-Omni use. It lives here, below every
package, so the model side (speech) and the trainer share one constant without importing upward.
"""
IGNORE_INDEX = -100

__all__ = ["IGNORE_INDEX"]
