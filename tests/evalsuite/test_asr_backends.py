"""The `hf-whisper:DIR` ASR backend on a tiny random Whisper written in the Hub's on-disk layout, built offline:
config.json, generation_config.json with the real keys, model.safetensors, preprocessor_config.json, and
tokenizer.json + tokenizer_config.json as transformers writes them (a byte-level BPE with Whisper's special and
timestamp tokens in Whisper's order). Variants (English-only, no alignment heads) and bad directories."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from evalsuite.asr import ASRError, Transcript, load_asr
from ttt_omni.speech.audio import save_wav

SENTENCES = ["hello there, how are you today?", "the cat sat on the mat.", "what time is it now?"]


def write_hf_whisper(out: Path, *, multilingual: bool = True, alignment_heads: bool = True) -> Path:
    """A random 1+1-layer Whisper (d=64, 80 mel bins, 30 s windows) with the files openai/whisper-large-v3 has."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperTokenizer)
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(SENTENCES * 4, trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    bpe_model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split()) for m in bpe_model["merges"]]
    tok = WhisperTokenizer(vocab=dict(bpe_model["vocab"]), merges=merges)
    # Whisper's vocabulary order: BPE, <|endoftext|>, <|startoftranscript|>, languages, tasks, ..., <|notimestamps|>,
    # then the timestamp tokens (generation relies on timestamps starting right after <|notimestamps|>)
    languages = [f"<|{k}|>" for k in LANGUAGES] if multilingual else []
    tok.add_tokens(["<|endoftext|>"], special_tokens=True)
    tok.add_special_tokens({"additional_special_tokens": [
        "<|endoftext|>", "<|startoftranscript|>", *languages, "<|translate|>", "<|transcribe|>", "<|startoflm|>",
        "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]})
    tok.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(1501)])
    tok.pad_token = "<|endoftext|>"
    ids = tok.convert_tokens_to_ids
    eot, sot = ids("<|endoftext|>"), ids("<|startoftranscript|>")
    torch.manual_seed(0)
    special = dict(decoder_start_token_id=sot, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
                   begin_suppress_tokens=[ids("Ġ"), eot])
    model = WhisperForConditionalGeneration(WhisperConfig(
        vocab_size=len(tok), num_mel_bins=80, d_model=64, encoder_layers=1, encoder_attention_heads=1,
        decoder_layers=1, decoder_attention_heads=1, encoder_ffn_dim=128, decoder_ffn_dim=128,
        max_source_positions=1500, max_target_positions=448, **special)).eval()
    gen = dict(max_length=448, is_multilingual=multilingual, return_timestamps=False, suppress_tokens=[],
               no_timestamps_token_id=ids("<|notimestamps|>"), prev_sot_token_id=ids("<|startofprev|>"),
               max_initial_timestamp_index=50, **special)
    if multilingual:
        gen.update(lang_to_id={t: ids(t) for t in languages},
                   task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")})
    if alignment_heads:
        gen["alignment_heads"] = [[0, 0]]
    model.generation_config = GenerationConfig(**gen)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(out)  # preprocessor_config.json
    return out


@pytest.fixture(scope="module")
def hf_whisper_dir(tmp_path_factory) -> Path:
    return write_hf_whisper(tmp_path_factory.mktemp("hf-whisper") / "whisper-tiny-random")


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory) -> Path:
    t = np.arange(int(1.5 * 16000)) / 16000
    samples = 0.3 * np.sin(2 * math.pi * 220 * t) * (1 + np.sin(2 * math.pi * 3 * t)) / 2
    return save_wav(tmp_path_factory.mktemp("wav") / "short.wav", samples.astype(np.float32))


def _check(transcript, wav_seconds: float):
    assert isinstance(transcript, Transcript) and isinstance(transcript.text, str)
    assert transcript.duration_s == pytest.approx(wav_seconds)
    assert all(isinstance(w, str) and isinstance(t, float) and t >= 0 for w, t in transcript.words)
    assert transcript.text == " ".join(w for w, _ in transcript.words)


def test_hf_whisper_reads_the_hub_layout(hf_whisper_dir, speech_wav):
    assert {"config.json", "generation_config.json", "model.safetensors", "preprocessor_config.json",
            "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in hf_whisper_dir.iterdir()}
    asr = load_asr(f"hf-whisper:{hf_whisper_dir}")
    assert asr.name == "hf-whisper:whisper-tiny-random" and asr.timestamps == "word"
    _check(asr.transcribe(speech_wav), 1.5)


@pytest.mark.parametrize("variant", ["english-only", "no-alignment-heads"])
def test_hf_whisper_variants(variant, tmp_path, speech_wav):
    """`*.en` checkpoints refuse a language/task; fine-tunes without alignment_heads get segment timestamps."""
    path = write_hf_whisper(tmp_path / variant, multilingual=variant != "english-only",
                            alignment_heads=variant != "no-alignment-heads")
    asr = load_asr(f"hf-whisper:{path}")
    assert asr.timestamps == (True if variant == "no-alignment-heads" else "word")
    _check(asr.transcribe(speech_wav), 1.5)


def test_hf_whisper_bad_paths_are_named(hf_whisper_dir, tmp_path):
    with pytest.raises(ASRError, match="nowhere: directory not found"):
        load_asr(f"hf-whisper:{tmp_path / 'nowhere'}")
    with pytest.raises(ASRError, match="expected .*config.json"):
        load_asr(f"hf-whisper:{tmp_path}")
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ASRError, match="model_type 'llama'; expected 'whisper'"):
        load_asr(f"hf-whisper:{llama}")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ASRError, match="unreadable config.json"):
        load_asr(f"hf-whisper:{broken}")
    weights_only = tmp_path / "weights-only"  # the model without its tokenizer / feature extractor
    weights_only.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        (weights_only / name).symlink_to(hf_whisper_dir / name)
    with pytest.raises(ASRError, match="weights-only"):
        load_asr(f"hf-whisper:{weights_only}")
    with pytest.raises(ASRError, match="not understood"):
        load_asr("hf-whisper:")
    asr = load_asr(f"hf-whisper:{hf_whisper_dir}")
    with pytest.raises(ASRError, match="not found"):
        asr.transcribe(tmp_path / "missing.wav")
