"""HF-compatible TTT-Llama: `TTTLlamaConfig`, `TTTLlamaForCausalLM`, registered with the Auto classes on import."""
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from . import presets
from .configuration_ttt_llama import TTTLlamaConfig
from .modeling_ttt_llama import TTTLlamaForCausalLM, TTTLlamaModel

AutoConfig.register(TTTLlamaConfig.model_type, TTTLlamaConfig, exist_ok=True)
AutoModel.register(TTTLlamaConfig, TTTLlamaModel, exist_ok=True)
AutoModelForCausalLM.register(TTTLlamaConfig, TTTLlamaForCausalLM, exist_ok=True)

__all__ = ["TTTLlamaConfig", "TTTLlamaForCausalLM", "TTTLlamaModel", "presets"]
