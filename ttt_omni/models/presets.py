"""Named configurations: `tiny` (a few M parameters, for tests and the demo) and `llama-3.1-8b` geometry (random
weights, for benchmarks)."""
from __future__ import annotations

from .configuration_ttt_llama import TTTLlamaConfig

BYTE_VOCAB_SIZE = 256


def tiny_config(vocab_size: int = BYTE_VOCAB_SIZE, **overrides) -> TTTLlamaConfig:
    """4 layers, hidden 128, 4 heads (2 KV heads), the top 2 layers TTT-Linear, mini-batch 16; ~0.5M parameters
    plus the embeddings (byte-level vocabulary by default)."""
    fields = dict(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1 << 17,
        ttt_layers=[2, 3],
        ttt_type="linear",
        mini_batch_size=16,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
    )
    fields.update(overrides)
    return TTTLlamaConfig(**fields)


def llama31_8b_config(**overrides) -> TTTLlamaConfig:
    """Llama-3.1-8B geometry (32 layers, hidden 4096, GQA 32/8, vocab 128256, rope theta 5e5 with llama3 scaling),
    the top 8 layers TTT-Linear with mini-batch 64."""
    fields = dict(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        bos_token_id=128000,
        eos_token_id=128001,
        tie_word_embeddings=False,
        ttt_layers=list(range(24, 32)),
        ttt_type="linear",
        mini_batch_size=64,
    )
    fields.update(overrides)
    return TTTLlamaConfig(**fields)


PRESETS = {"tiny": tiny_config, "llama-3.1-8b": llama31_8b_config}


def preset_config(name: str, **overrides) -> TTTLlamaConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name](**overrides)
