"""Fixtures over support.speech: the tiny LLaMA-Omni checkpoint and a WAV tone."""
from pathlib import Path

import pytest

from support.speech import tone
from ttt_omni.speech.tiny import write_llama_omni
from ttt_omni.speech.audio import save_wav


@pytest.fixture(scope="session")
def llama_omni_dir(tmp_path_factory) -> Path:
    return write_llama_omni(tmp_path_factory.mktemp("omni") / "llama-omni")


@pytest.fixture
def wav_file(tmp_path) -> Path:
    return save_wav(tmp_path / "tone.wav", tone(1.3))
