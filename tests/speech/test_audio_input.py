"""Bad audio: other sample rates are resampled, several channels downmixed; empty, non-WAV, NaN and missing files get
a clear error naming the file. Writing is atomic."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.io import wavfile

from ttt_omni.speech.audio import SAMPLE_RATE, AudioError, load_wav, save_wav, validate_samples

from support.speech import speak, tone


def test_resampled_and_downmixed(tmp_path):
    stereo_44k = np.stack([tone(1.0, 44100), tone(1.0, 44100)], axis=1)
    wavfile.write(tmp_path / "stereo.wav", 44100, (stereo_44k * 32767).astype(np.int16))
    out = load_wav(tmp_path / "stereo.wav")
    assert out.dtype == np.float32 and out.shape == (SAMPLE_RATE,)
    reference = tone(1.0)
    # the same 220 Hz tone, up to resampling error away from the edges
    np.testing.assert_allclose(out[200:-200], reference[200:-200], atol=2e-3)
    wavfile.write(tmp_path / "8k.wav", 8000, tone(0.5, 8000))  # float32 WAV at 8 kHz
    assert load_wav(tmp_path / "8k.wav").shape == (8000,)
    wavfile.write(tmp_path / "u8.wav", 16000, (tone(0.25) * 127 + 128).astype(np.uint8))
    np.testing.assert_allclose(load_wav(tmp_path / "u8.wav"), tone(0.25), atol=2e-2)  # 8-bit steps


def test_espeak_speech_loads(tmp_path):
    samples = load_wav(speak("testing one two three", tmp_path / "s.wav"))
    assert samples.ndim == 1 and samples.size > SAMPLE_RATE // 2 and np.abs(samples).max() > 0.01


@pytest.mark.parametrize("content, match", [
    (b"", "not a WAV file"),
    (b"ID3\x03\x00\x00\x00\x00\x00\x00 definitely an mp3", "not a WAV file"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "unreadable WAV"),
])
def test_bad_files(tmp_path, content, match):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=match) as e:
        load_wav(path)
    assert str(path) in str(e.value)


def test_empty_nan_missing(tmp_path):
    wavfile.write(tmp_path / "empty.wav", 16000, np.zeros(0, dtype=np.int16))
    with pytest.raises(AudioError, match="no samples"):
        load_wav(tmp_path / "empty.wav")
    with pytest.raises(AudioError, match="NaN"):
        validate_samples(np.array([0.0, np.nan]))
    with pytest.raises(AudioError, match="mono"):
        validate_samples(np.zeros((2, 5)))
    with pytest.raises(FileNotFoundError, match="audio file not found"):
        load_wav(tmp_path / "nope.wav")


def test_save_wav_is_atomic_and_round_trips(tmp_path):
    path = save_wav(tmp_path / "out" / "a.wav", tone(0.5))
    np.testing.assert_allclose(load_wav(path), tone(0.5), atol=1e-4)
    save_wav(path, tone(0.2))
    assert load_wav(path).shape == (3200,) and [p.name for p in path.parent.iterdir()] == ["a.wav"]
