"""nn.Modules over the TTT ops: TTTLinear and TTTMLP, usable in place of Llama self-attention."""
from .ttt import TTTBase, TTTInnerParams, TTTLinear, TTTMLP, keep_float32

__all__ = ["TTTBase", "TTTInnerParams", "TTTLinear", "TTTMLP", "keep_float32"]
