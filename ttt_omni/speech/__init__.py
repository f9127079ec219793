"""The Omni speech path: audio I/O, Whisper encoder, projector, CTC unit generator, unit vocoder, unit extractor,
LLaMA-Omni checkpoint loading and conversion, and chat. The model that joins them is `ttt_omni.models.omni`."""
