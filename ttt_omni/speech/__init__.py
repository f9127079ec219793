"""The Omni speech path: audio I/O, Whisper encoder, projector, CTC unit generator, unit vocoder, unit extractor,
LLaMA-Omni checkpoint loading and conversion, and chat. The model that joins them is `OmniSpeechTTT` (model.py);
`load_omni` / `save_omni` read and write it in LLaMA-Omni's checkpoint layout."""
from .model import OmniSpeechTTT
from .omni_checkpoint import load_omni, save_omni

__all__ = ["OmniSpeechTTT", "load_omni", "save_omni"]
