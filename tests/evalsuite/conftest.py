"""Small real models written in the real on-disk layout (HF directories with a tokenizer), and a small corpus."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ttt_omni.speech.tiny import write_llama_omni
from ttt_omni.data_manifest import books

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MICRO_VOCAB = 320


def _train_tokenizer(out_dir: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    text = books("train")[0].read()[:200_000]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([text], trainers.BpeTrainer(vocab_size=MICRO_VOCAB, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        special_tokens=["<|endoftext|>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(out_dir)
    return fast


@pytest.fixture(autouse=True)
def kinds_of_this_test_only():
    """Kinds a test registers from its own --include-path files are forgotten after it (the registry refuses a
    second kind of one name, and tests reuse names). The built-in kinds are imported first, so that a test that
    happens to import them is not taken for one that registered them (which wiped them for every later test)."""
    import evalsuite.kinds  # noqa: F401
    from evalsuite.task import KINDS

    before = dict(KINDS)
    yield
    KINDS.clear()
    KINDS.update(before)


@pytest.fixture(scope="session")
def micro_llama_dir(tmp_path_factory) -> Path:
    """A 2-layer Llama with a 96-token context (so long documents are windowed), saved as an HF directory."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("micro_llama")
    tok = _train_tokenizer(out)
    torch.manual_seed(1)
    cfg = LlamaConfig(vocab_size=MICRO_VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=96,
                      bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def micro_ttt_dir(tmp_path_factory) -> Path:
    """A 2-layer TTT-Llama hybrid (layer 1 is TTT-Linear), saved as an HF directory."""
    from ttt_omni.models import TTTLlamaForCausalLM
    from ttt_omni.models.presets import tiny_config

    out = tmp_path_factory.mktemp("micro_ttt")
    tok = _train_tokenizer(out)
    torch.manual_seed(2)
    cfg = tiny_config(vocab_size=MICRO_VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, ttt_layers=[1], mini_batch_size=8,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = TTTLlamaForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".inner." in name:
                p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """Four documents of a few hundred tokens each: the openings of the eval books."""
    out = tmp_path_factory.mktemp("corpus")
    for b in books("eval")[:4]:
        (out / b.file).write_text(b.read()[5000:6500], encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def llama_omni_dir(tmp_path_factory) -> Path:
    """The tiny random LLaMA-Omni-layout checkpoint of tests/speech (tokenizer, Whisper .pt, vocoder/ inside)."""
    return write_llama_omni(tmp_path_factory.mktemp("omni") / "llama-omni")
