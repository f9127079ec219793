"""Beside mode (`ttt_mode="beside"`): the attention stays and a gated TTT branch runs beside it. With the gate at 0
the model is its attention-only control exactly; with a gate it is still split-invariant, and its cache holds both
the (bounded) KV and the fixed-size TTT state."""
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ttt_omni.convert import convert_checkpoint
from ttt_omni.delta import load_delta, save_delta
from ttt_omni.hf_compat import cache_kwargs
from ttt_omni.models import TTTLlamaConfig, TTTLlamaForCausalLM
from ttt_omni.models.presets import tiny_config

BOUNDED = [{}, {"attention_window": 6}, {"attention_window": 6, "attention_sinks": 2}]


@pytest.fixture
def llama_dir(tmp_path):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "llama")
    return tmp_path / "llama"


def _beside(llama_dir, tmp_path, layers=(1, 3), **bounded):
    out = tmp_path / f"beside-{len(list(tmp_path.iterdir()))}"
    convert_checkpoint(llama_dir, out, ttt_layers=list(layers), ttt_mode="beside", mini_batch_size=4, **bounded)
    model = TTTLlamaForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():  # make the branch's output matter wherever a gate opens
        for name, p in model.named_parameters():
            if ".inner." in name:
                p.add_(0.05 * torch.randn_like(p))
    return model


def _control(llama_dir, **bounded):
    """The same weights without any TTT layer: the plain Llama, or in bounded mode a TTT-Llama with no TTT layer."""
    llama = LlamaForCausalLM.from_pretrained(llama_dir).eval()
    if not bounded:
        return llama
    fields = {k: v for k, v in llama.config.to_dict().items() if k not in ("model_type", "architectures")}
    model = TTTLlamaForCausalLM(TTTLlamaConfig(**fields, ttt_layers=[], **bounded)).eval()
    model.load_state_dict(llama.state_dict(), strict=False)
    return model


def _decode(model, ids):
    cache = model.make_cache() if isinstance(model, TTTLlamaForCausalLM) else None
    steps = []
    for t in range(ids.shape[1]):
        out = model(ids[:, t:t + 1], **cache_kwargs(cache))
        cache = out.past_key_values if cache is None else cache
        steps.append(out.logits)
    return torch.cat(steps, dim=1)


@pytest.mark.parametrize("bounded", BOUNDED, ids=["full", "window", "window+sinks"])
def test_gate_at_zero_is_the_control_exactly_in_prefill_and_decode(llama_dir, tmp_path, bounded):
    beside, control = _beside(llama_dir, tmp_path, **bounded), _control(llama_dir, **bounded)
    assert all(torch.count_nonzero(m.self_attn.ttt_gate) == 0 for m in (beside.model.layers[1], beside.model.layers[3]))
    ids = torch.randint(0, 128, (2, 19))
    with torch.no_grad():
        assert torch.equal(beside(ids).logits, control(ids).logits)
        assert torch.equal(_decode(beside, ids[:1]), _decode(control, ids[:1]))


@pytest.mark.parametrize("bounded", BOUNDED[1:], ids=["window", "window+sinks"])
def test_open_gate_changes_the_output_and_any_split_gives_one_pass(llama_dir, tmp_path, bounded):
    beside, control = _beside(llama_dir, tmp_path, **bounded), _control(llama_dir, **bounded)
    with torch.no_grad():
        for i in (1, 3):
            beside.model.layers[i].self_attn.ttt_gate.normal_(0, 0.5)
        ids = torch.randint(0, 128, (1, 23))
        whole = beside(ids).logits
        assert not torch.allclose(whole, control(ids).logits, atol=1e-4)
        cache = beside.make_cache()
        parts = [beside(ids[:, a:b], **cache_kwargs(cache)).logits for a, b in ((0, 5), (5, 6), (6, 17), (17, 23))]
        torch.testing.assert_close(torch.cat(parts, dim=1), whole, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(_decode(beside, ids), whole, atol=1e-5, rtol=1e-5)


def test_cache_holds_bounded_kv_and_fixed_ttt_state(llama_dir, tmp_path):
    beside = _beside(llama_dir, tmp_path, attention_window=6, attention_sinks=2)
    sizes = []
    with torch.no_grad():
        for length in (16, 40):
            cache = beside.make_cache()
            beside(torch.randint(0, 128, (1, length)), **cache_kwargs(cache))
            sizes.append(cache.nbytes())
    assert sizes[0] == sizes[1]  # flat in length
    assert sizes[0]["ttt"] > 0 and sizes[0]["kv"] > 0
    assert cache.attention_layers == [0, 1, 2, 3] and cache.ttt_layers == [1, 3]
    assert cache.layers[1].keys.shape[-2] == 2 + 5  # sinks + window - 1, in a layer with a TTT branch too
    assert cache.get_ttt_state(3).W1.dtype == torch.float32
    restored = type(cache).from_dict(beside.config, cache.to_dict())
    assert restored.nbytes() == cache.nbytes()


def test_only_the_gate_learns_first_and_the_delta_round_trips(llama_dir, tmp_path):
    beside = _beside(llama_dir, tmp_path, layers=(2,))
    beside.train()
    beside(torch.randint(0, 128, (1, 12)), labels=torch.randint(0, 128, (1, 12))).loss.backward()
    attn = beside.model.layers[2].self_attn
    assert attn.ttt_gate.grad.abs().sum() > 0  # the gate moves first; the branch's own weights get no gradient at g=0
    assert attn.ttt.q_proj.weight.grad is None or attn.ttt.q_proj.weight.grad.abs().sum() == 0
    with torch.no_grad():
        attn.ttt_gate.fill_(0.25)
    hybrid = tmp_path / "trained"
    beside.save_pretrained(hybrid)
    manifest = save_delta(hybrid, llama_dir, tmp_path / "delta")
    assert manifest["ttt_mode"] == "beside"
    rebuilt = load_delta(llama_dir, tmp_path / "delta")
    ids = torch.randint(0, 128, (1, 9))
    with torch.no_grad():
        # the delta keeps the branch's q/k/v/o in bf16
        torch.testing.assert_close(rebuilt(ids).logits, beside.eval()(ids).logits, atol=1e-2, rtol=0)
        assert torch.equal(rebuilt.model.layers[2].self_attn.q_proj.weight, attn.q_proj.weight)


def test_unknown_ttt_mode_is_refused():
    with pytest.raises(Exception, match="ttt_mode='inside' is unknown"):
        tiny_config(ttt_mode="inside")
