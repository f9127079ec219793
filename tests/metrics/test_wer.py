"""WER on hand-computed examples, per time segment, and through the real pipeline: espeak-ng speech of known
sentences transcribed by the embedded Whisper-base; silence and noise score 1.0 without a crash."""

import os
import platform
import subprocess
import sys

import numpy as np
import pytest
import torchmetrics.functional.text as tmf

from evalsuite.metrics.wer import (Errors, corpus_wer, mean_utterance_wer, normalize, segment_errors,
                                   utterance_errors)

SENTENCES = [
    "The old man walked slowly down to the harbour, where the fishing boats were coming in.",
    "She opened the letter with trembling hands and read it twice before she spoke.",
    "It was a bright cold day in April, and the clocks were striking thirteen.",
]


def test_normalization_is_whispers():
    assert normalize("Hello,   World!") == "hello world"
    assert normalize("The colour of it, twenty-five.") == "the color of it 25"
    assert normalize("Hmm, um, yes.") == "yes"


def test_utterance_errors_by_hand():
    e = utterance_errors("the cat sat on the mat", "the cat sat on a mat today")
    assert (e.substitutions, e.deletions, e.insertions, e.ref_words) == (1, 0, 1, 6)
    assert e.wer == pytest.approx(2 / 6)
    assert utterance_errors("One, two.", "one two").wer == 0.0  # punctuation and case do not count
    assert utterance_errors("a b c", "").wer == 1.0
    with pytest.raises(ValueError, match="no words after normalization"):
        utterance_errors(" , ; ! [music]", "anything")


def test_mean_of_utterances_versus_corpus_wer():
    errors = [Errors(1, 0, 0, 2), Errors(0, 0, 0, 8)]  # per utterance 0.5 and 0.0
    assert mean_utterance_wer(errors) == pytest.approx(0.25)
    assert corpus_wer(errors) == pytest.approx(1 / 10)
    refs, hyps = ["the cat sat on the mat", "a dog"], ["the cat sat on a mat today", "a dog barked"]
    ours = corpus_wer([utterance_errors(r, h) for r, h in zip(refs, hyps)])
    assert ours == pytest.approx(float(tmf.word_error_rate(hyps, refs)))


def test_segment_errors_follow_word_times():
    # reference 6 words; the transcript gets word 5 wrong; words 4-6 are spoken after 60 s
    words = [("the", 0.0), ("cat", 10.0), ("sat", 20.0), ("on", 61.0), ("a", 62.0), ("mat", 63.0), ("today", 64.0)]
    segs = segment_errors("the cat sat on the mat", words, segment_s=60)
    assert segs == [Errors(0, 0, 0, 3), Errors(1, 0, 1, 3)]
    assert segment_errors("a b", [], 60) == [Errors(0, 2, 0, 2)]


@pytest.fixture(scope="module")
def asr():
    from evalsuite.asr import load_asr

    return load_asr("faster-whisper")


def test_espeak_speech_of_known_sentences_is_understood(asr, tmp_path):
    from evalsuite.tts import espeak

    errors = [utterance_errors(s, asr.transcribe(espeak(s, tmp_path / f"{i}.wav")).text)
              for i, s in enumerate(SENTENCES)]
    assert mean_utterance_wer(errors) < 0.25 and corpus_wer(errors) < 0.25


def test_the_same_text_gives_the_same_audio_and_transcript(asr, tmp_path):
    """WERs in the docs are checked in CI: sox must not dither at random, nor Whisper fall back to sampling."""
    from evalsuite.tts import espeak

    text = " ".join(SENTENCES)
    first, second = espeak(text, tmp_path / "a.wav"), espeak(text, tmp_path / "b.wav")
    assert first.read_bytes() == second.read_bytes()
    assert asr.transcribe(first).words == asr.transcribe(second).words


@pytest.mark.parametrize("kind", ["silence", "noise"])
def test_silence_and_noise_score_one(asr, tmp_path, kind):
    from ttt_omni.speech.audio import save_wav

    samples = np.zeros(32000) if kind == "silence" else np.random.default_rng(0).normal(0, 0.3, 48000)
    transcript = asr.transcribe(save_wav(tmp_path / f"{kind}.wav", samples))
    assert utterance_errors(SENTENCES[0], transcript.text).wer == 1.0


def test_missing_audio_is_a_clear_error(asr, tmp_path):
    from evalsuite.asr import ASRError

    with pytest.raises(ASRError, match="not found"):
        asr.transcribe(tmp_path / "nowhere.wav")
    (tmp_path / "x.wav").write_text("not audio")
    with pytest.raises(ASRError, match="not a WAV file"):
        asr.transcribe(tmp_path / "x.wav")


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="the pinned kernels are x86-64's")
def test_whisper_runs_on_the_pinned_cpu_kernels():
    """CTranslate2 would pick MKL or oneDNN, the widest ISA and int8 kernels by CPU: the docs' WERs moved by machine."""
    code = "from evalsuite.asr import load_asr; load_asr('faster-whisper')"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT2_", "ONEDNN_"))}
    proc = subprocess.run([sys.executable, "-c", code], env={**env, "CT2_VERBOSE": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for line in ("Selected ISA: AVX2", "Use Intel MKL: false", "Selected compute type: float32"):
        assert line in proc.stderr, proc.stderr[-2000:]
