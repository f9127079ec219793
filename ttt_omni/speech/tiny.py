"""Tiny random checkpoints in the real on-disk layouts: openai-whisper `.pt`, LLaMA-Omni checkpoint directory (with or
without the encoder weights inside), fairseq unit HiFi-GAN. They run the whole speech pipeline in seconds on a CPU
(`ttt-omni try-speech`, and the tests) and say nothing about quality: the weights are random."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, WhisperModel

from ttt_omni.tokenizer import train_bpe

from .encoder import hf_to_openai, whisper_config, whisper_dims
from .generator import SpeechGeneratorCTC
from .projector import SpeechProjector
from .vocoder import UnitVocoder

UNITS = 20
CTC_DECODER = "(2,32,2,64)"
UPSAMPLE = 3
# 1-second Whisper windows (50 encoder frames), 16 mel bins, d=64 with one 64-dim head like every real Whisper
WHISPER = dict(n_mels=16, d_model=64, layers=2, heads=1, n_ctx=50)
SENTENCES = ["hello there, how are you today?", "the cat sat on the mat.", "what time is it now?",
             "tell me a short story about a dog.", "yes, that is right.", "speech in, text and speech out."]


def tiny_whisper(seed: int = 0) -> WhisperModel:
    torch.manual_seed(seed)
    cfg = whisper_config(WHISPER["n_mels"], WHISPER["d_model"], WHISPER["layers"], WHISPER["heads"], WHISPER["n_ctx"])
    return WhisperModel(cfg).eval()


def write_openai_whisper(path: Path, model: WhisperModel) -> Path:
    """openai-whisper's checkpoint format: {"dims", "model_state_dict"} with encoder.* and decoder.* tensors."""
    dims = {**whisper_dims(model.config), "n_vocab": 51866, "n_text_ctx": 448, "n_text_state": model.config.d_model,
            "n_text_head": 1, "n_text_layer": 1}
    state = {f"encoder.{k}": v.clone() for k, v in hf_to_openai(model.encoder.state_dict()).items()}
    state["decoder.ln.weight"] = torch.ones(model.config.d_model)  # the decoder is present in real files, unused
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dims, "model_state_dict": state}, path)
    return path


def tiny_vocoder_config() -> dict:
    return {"resblock": "1", "upsample_rates": [5, 4], "upsample_kernel_sizes": [11, 8],
            "upsample_initial_channel": 32, "resblock_kernel_sizes": [3, 7],
            "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]], "num_embeddings": UNITS, "embedding_dim": 16,
            "model_in_dim": 16, "sampling_rate": 16000, "code_hop_size": 20,
            "dur_predictor_params": {"encoder_embed_dim": 16, "var_pred_hidden_dim": 16, "var_pred_kernel_size": 3,
                                     "var_pred_dropout": 0.5}}


def write_vocoder(directory: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    return UnitVocoder(tiny_vocoder_config()).save_pretrained(directory)


def write_llama_omni(path: Path, *, encoder_inside: bool = True, seed: int = 0, speaks: bool = False) -> Path:
    """A LLaMA-Omni checkpoint directory (OmniSpeech2SLlamaForCausalLM layout) with tiny random weights, its
    tokenizer, the Whisper `.pt` its config points at (relative path), and a unit vocoder under vocoder/. With
    `speaks`, the unit generator's CTC blank is turned down so that the random model emits units (audio) at all."""
    torch.manual_seed(seed)
    tokenizer = train_bpe(SENTENCES * 4, vocab_size=300)
    llama = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                        tie_word_embeddings=False, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    llm = LlamaForCausalLM(llama)
    whisper = tiny_whisper(seed)
    projector = SpeechProjector(WHISPER["d_model"], llama.hidden_size, k=5)
    generator = SpeechGeneratorCTC(llama, CTC_DECODER, UPSAMPLE, UNITS)
    if speaks:
        with torch.no_grad():
            generator.output_proj.bias[generator.blank] = -10.0
    tensors = dict(llm.state_dict())
    if encoder_inside:
        tensors.update({f"model.speech_encoder.{k}": v for k, v in hf_to_openai(whisper.encoder.state_dict()).items()})
    tensors.update({f"model.speech_projector.{k}": v for k, v in projector.state_dict().items()})
    tensors.update({f"speech_generator.{k}": v for k, v in generator.state_dict().items()})
    path.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "model.safetensors"),
              metadata={"format": "pt"})
    config = llama.to_dict()
    config.update({"model_type": "omni_speech2s_llama", "architectures": ["OmniSpeech2SLlamaForCausalLM"],
                   "speech_encoder": "speech_encoder/tiny-whisper.pt", "speech_encoder_type": "whisper",
                   "speech_projector_type": "linear", "speech_encoder_ds_rate": 5,
                   "speech_encoder_hidden_size": WHISPER["d_model"], "speech_generator_type": "ctc",
                   "ctc_decoder_config": CTC_DECODER, "ctc_upsample_factor": UPSAMPLE, "ctc_loss_weight": 1.0,
                   "unit_vocab_size": UNITS, "speech_normalize": False, "tune_speech_projector": False})
    (path / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer.save_pretrained(str(path))
    write_openai_whisper(path / "speech_encoder" / "tiny-whisper.pt", whisper)
    write_vocoder(path / "vocoder", seed)
    return path
