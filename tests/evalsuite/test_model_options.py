"""Model spec options (`SPEC@window=N,sinks=N,dtype=...`) and ppl_vs_length's note on positions past
max_position_embeddings."""
import pytest
import torch

from evalsuite.errors import ModelSpecError
from evalsuite.models import load_model, split_options
from evalsuite.registry import Registry
from evalsuite.runner import run_task
from evalsuite.store import Store
from ttt_omni.models import TTTLlamaForCausalLM


def test_options_are_parsed_and_checked():
    assert split_options("tiny") == ("tiny", {})
    assert split_options("ttt:/a@b/ckpt") == ("ttt:/a@b/ckpt", {})  # an '@' in a path is no option
    assert split_options("hf:/m@window=64,sinks=4,dtype=bfloat16") == (
        "hf:/m", {"window": 64, "sinks": 4, "dtype": "bfloat16"})
    for bad, match in [("tiny@window=0", "window='0'"), ("tiny@sinks=2", "needs window=N"),
                       ("tiny@dtype=int8", "dtype='int8'"), ("tiny@size=3", "option 'size=3' not understood"),
                       ("tiny@window=8,window=9", "at most once")]:
        with pytest.raises(ModelSpecError, match=match):
            split_options(bad)


def test_a_plain_llama_in_bounded_memory_mode(micro_llama_dir):
    plain = load_model(f"hf:{micro_llama_dir}")
    wide = load_model(f"hf:{micro_llama_dir}@window=512")
    narrow = load_model(f"hf:{micro_llama_dir}@window=8,sinks=2,dtype=bfloat16")
    assert isinstance(wide.model, TTTLlamaForCausalLM) and wide.model.config.ttt_layers == []
    assert (narrow.model.config.attention_window, narrow.model.config.attention_sinks) == (8, 2)
    assert narrow.model.dtype == torch.bfloat16 and narrow.context_limit is None and plain.context_limit == 96
    assert len({plain.model_hash, wide.model_hash, narrow.model_hash}) == 3  # other runs, other identities
    assert narrow.model_id.endswith("@window=8,sinks=2,dtype=bfloat16")
    ids = torch.randint(0, 320, (1, 60), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(wide.model(ids).logits, plain.model(ids).logits)  # a window wider than the text


def test_a_ttt_model_keeps_its_ttt_layers(micro_ttt_dir):
    loaded = load_model(f"ttt:{micro_ttt_dir}@window=16,sinks=4")
    assert loaded.model.config.ttt_layers == [1] and loaded.model.config.attention_sinks == 4
    original = load_model(f"ttt:{micro_ttt_dir}").model
    for name, p in loaded.model.state_dict().items():
        assert torch.equal(p, original.state_dict()[name]), name


def test_ppl_vs_length_notes_full_attention_past_the_trained_positions(micro_ttt_dir, small_corpus, tmp_path):
    """A TTT model streams every document in one pass: its full-attention layers then see distances past the
    trained positions (here a 64-position model on 128 tokens); a sliding window or a shorter length does not."""
    spec = Registry().get("ppl_vs_length")
    store = Store(str(tmp_path / "r.db"))

    def notes(model_spec, lengths):
        loaded = load_model(model_spec)
        loaded.model.config.max_position_embeddings = 64
        return run_task(spec, loaded, store=store, limit=1, corpus=str(small_corpus), lengths=lengths,
                        progress=False).notes

    found = notes(f"ttt:{micro_ttt_dir}", [32, 128])
    assert len(found) == 1 and "past max_position_embeddings=64" in found[0]
    assert "1 full-attention layers" in found[0] and "up to 128" in found[0]
    assert notes(f"ttt:{micro_ttt_dir}@window=16", [32, 128]) == []
    assert notes(f"ttt:{micro_ttt_dir}", [32, 64]) == []
