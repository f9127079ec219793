"""TTT-Llama: equivalence with transformers' Llama, exact prefill/decode, generate(), bf16, save/load, bad input."""
import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from ttt_omni.cache import TTTHybridCache
from ttt_omni.hf_compat import cache_kwargs, output_cache
from ttt_omni.models import TTTLlamaConfig, TTTLlamaForCausalLM
from ttt_omni.models.presets import llama31_8b_config, tiny_config


def _ids(length, batch=1, seed=1):
    return torch.randint(0, 256, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_no_ttt_layers_equals_transformers_llama(make_tiny_model):
    hybrid = make_tiny_model(ttt_layers=[])
    fields = {k: v for k, v in hybrid.config.to_dict().items() if k in LlamaConfig().to_dict()}
    llama = LlamaForCausalLM(LlamaConfig(**fields)).eval()
    llama.load_state_dict(hybrid.state_dict())
    x = _ids(50, batch=2)
    with torch.no_grad():
        assert torch.equal(hybrid(x).logits, llama(x).logits)
    assert torch.equal(hybrid.generate(x, max_new_tokens=8, do_sample=False),
                       llama.generate(x, max_new_tokens=8, do_sample=False))


@pytest.mark.parametrize("ttt_type", ["linear", "mlp"])
@pytest.mark.parametrize("window", [None, 12])
@pytest.mark.parametrize("prefill", [1, 15, 16, 17, 41])
def test_prefill_then_decode_equals_one_forward(make_tiny_model, ttt_type, window, prefill):
    model = make_tiny_model(ttt_type=ttt_type, attention_window=window)
    x = _ids(60, batch=2)
    with torch.no_grad():
        full = model(x).logits
        cache = model.make_cache()
        steps = [model(x[:, :prefill], **cache_kwargs(cache)).logits]
        steps += [model(x[:, t:t + 1], **cache_kwargs(cache)).logits for t in range(prefill, 60)]
    assert cache.get_seq_length() == 60
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=0, atol=1e-5)


@pytest.mark.filterwarnings("ignore:`past_key_values` is deprecated:FutureWarning")  # 5.24 on the old name: expected
@pytest.mark.parametrize("name", ["cache", "past_key_values"])
@pytest.mark.parametrize("level", ["causal_lm", "base_model"])
def test_the_cache_works_under_either_name_on_every_release(make_tiny_model, name, level):
    """transformers 5.24 renamed past_key_values to cache; user code written for either name must keep the state."""
    model = make_tiny_model()
    call = model if level == "causal_lm" else model.model
    x = _ids(40)
    with torch.no_grad():
        full = call(x).logits if level == "causal_lm" else call(x).last_hidden_state
        cache = model.make_cache()
        parts = [call(x[:, a:b], use_cache=True, **{name: cache}) for a, b in ((0, 25), (25, 26), (26, 40))]
    out = [p.logits if level == "causal_lm" else p.last_hidden_state for p in parts]
    torch.testing.assert_close(torch.cat(out, 1), full, rtol=0, atol=1e-5)
    assert cache.get_seq_length() == 40


def test_two_different_caches_in_one_call_are_refused(make_tiny_model):
    model = make_tiny_model()
    with pytest.raises(ValueError, match="two different caches"):
        model.model(_ids(3), cache=model.make_cache(), past_key_values=model.make_cache())


def test_generate_greedy_equals_manual_loop(make_tiny_model):
    model = make_tiny_model()
    prompt = _ids(21)
    out = model.generate(prompt, max_new_tokens=20, do_sample=False, return_dict_in_generate=True)
    assert isinstance(output_cache(out), TTTHybridCache)
    ids, cache = prompt, model.make_cache()
    with torch.no_grad():
        logits = model(ids, **cache_kwargs(cache)).logits
        for _ in range(20):
            ids = torch.cat([ids, logits[:, -1:].argmax(-1)], 1)
            logits = model(ids[:, -1:], **cache_kwargs(cache)).logits
    assert torch.equal(out.sequences, ids)


@pytest.mark.parametrize("backend", ["naive", "chunked"])
def test_generate_with_each_backend_equals_manual_loop(make_tiny_model, backend, monkeypatch):
    """generate() runs under no_grad from a fresh state: every backend must work there (naive once raised)."""
    model = make_tiny_model()
    prompt = _ids(9)
    reference = model.generate(prompt, max_new_tokens=5, do_sample=False)
    monkeypatch.setenv("TTT_OMNI_BACKEND", backend)
    assert torch.equal(model.generate(prompt, max_new_tokens=5, do_sample=False), reference)


@pytest.mark.parametrize("window", [None, 8])
def test_generate_sampling_scores_match_teacher_forcing(make_tiny_model, window):
    """Every sampled step's logits equal a single forward over the finished sequence: the cache carried it exactly."""
    model = make_tiny_model(attention_window=window)
    torch.manual_seed(3)
    out = model.generate(_ids(19, batch=2), max_new_tokens=24, do_sample=True, top_k=0, temperature=1.0,
                         return_dict_in_generate=True, output_logits=True)
    with torch.no_grad():
        full = model(out.sequences).logits
    steps = torch.stack(out.logits, 1)
    torch.testing.assert_close(steps, full[:, 18:-1], rtol=0, atol=1e-5)


def _reference_beam_search(model, prompt, beams: int, steps: int) -> list[tuple[list[int], float]]:
    """Beam search by its definition, with no cache: every step scores each beam by a full forward over its whole
    sequence, and the `beams` best continuations (by summed log-probability) survive. No EOS (the tiny config has
    none), so every hypothesis has the same length; HF scores it by log-probability per generated token."""
    hyps = [(prompt[0].tolist(), 0.0)]
    with torch.no_grad():
        for _ in range(steps):
            grown = []
            for tokens, score in hyps:
                logp = torch.log_softmax(model(torch.tensor([tokens])).logits[0, -1].double(), -1)
                top = logp.topk(beams)
                grown += [(tokens + [int(t)], score + float(v)) for v, t in zip(top.values, top.indices)]
            hyps = sorted(grown, key=lambda h: -h[1])[:beams]
    return hyps


@pytest.mark.parametrize("ttt_layers", [[], [2, 3]], ids=["attention", "ttt"])
def test_beam_search_equals_the_reference(make_tiny_model, ttt_layers):
    """generate() keeps every beam's TTT state with its tokens (the cache reorders the states as beams swap)."""
    model = make_tiny_model(ttt_layers=ttt_layers)
    prompt = _ids(20)
    out = model.generate(prompt, max_new_tokens=6, num_beams=3, do_sample=False, num_return_sequences=3,
                         output_scores=True, return_dict_in_generate=True)
    reference = _reference_beam_search(model, prompt, beams=3, steps=6)
    assert [row.tolist() for row in out.sequences] == [tokens for tokens, _ in reference]
    torch.testing.assert_close(out.sequences_scores.double(),
                               torch.tensor([score / 6 for _, score in reference], dtype=torch.double),
                               rtol=0, atol=1e-4)


def test_bf16_model_keeps_fp32_ttt_weights_and_state(make_tiny_model, tmp_path):
    model = make_tiny_model().to(torch.bfloat16)
    inner = model.model.layers[2].self_attn.ttt.inner
    assert model.model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in inner.parameters())
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    assert {d for k, d in dtypes.items() if ".inner." in k} == {"F32"}
    assert dtypes["model.layers.2.self_attn.ttt.q_proj.weight"] == "BF16"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert isinstance(loaded, TTTLlamaForCausalLM) and loaded.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for n, p in loaded.named_parameters() if ".inner." in n)
    with torch.no_grad():
        cache = output_cache(loaded(_ids(30), use_cache=True))
    for i in loaded.config.ttt_layers:
        assert {t.dtype for t in cache.get_ttt_state(i).tensors().values()} == {torch.float32}


def test_save_pretrained_round_trip_float32(make_tiny_model, tmp_path):
    model = make_tiny_model(ttt_type="mlp", attention_window=16)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert isinstance(loaded, TTTLlamaForCausalLM)
    assert loaded.config.ttt_type == "mlp" and loaded.config.attention_window == 16
    x = _ids(40)
    with torch.no_grad():
        assert torch.equal(model(x).logits, loaded(x).logits)


def test_bounded_memory_cache_is_flat_in_sequence_length(make_tiny_model):
    model = make_tiny_model(attention_window=64, mini_batch_size=64)
    x = _ids(8192)
    cache, sizes = model.make_cache(), {}
    with torch.inference_mode():
        for start in range(0, 8192, 1024):
            model(x[:, start:start + 1024], **cache_kwargs(cache), logits_to_keep=1)
            sizes[start + 1024] = cache.nbytes()
            model(x[:, :1], **cache_kwargs(cache))  # one decode step
    assert sizes[1024] == sizes[8192]
    assert sizes[8192]["kv"] > 0 and sizes[8192]["ttt"] > 0
    full = make_tiny_model(mini_batch_size=64)
    full_cache = full.make_cache()
    with torch.inference_mode():
        full(x[:, :2048], **cache_kwargs(full_cache), logits_to_keep=1)
    assert full_cache.nbytes()["kv"] > sizes[8192]["kv"]  # full attention grows


def test_presets():
    tiny = tiny_config()
    n = sum(p.numel() for p in TTTLlamaForCausalLM(tiny).parameters())
    assert 1e5 < n < 1e7 and tiny.vocab_size == 256
    assert tiny_config(vocab_size=1000).vocab_size == 1000
    big = llama31_8b_config()
    assert (big.num_hidden_layers, big.hidden_size, big.num_key_value_heads, big.vocab_size) == (32, 4096, 8, 128256)
    assert big.ttt_layers == list(range(24, 32))
    assert TTTLlamaConfig().ttt_layers == list(range(24, 32))


@pytest.mark.parametrize("kwargs, match", [
    ({"ttt_type": "conv"}, "ttt_type='conv' is unknown"),
    ({"ttt_layers": [4]}, r"ttt_layers \[4\] are out of range"),
    ({"ttt_layers": [-1]}, "out of range"),
    ({"mini_batch_size": 0}, "mini_batch_size"),
    ({"attention_window": 0}, "attention_window"),
])
def test_bad_config_is_a_clear_error(kwargs, match):
    with pytest.raises(Exception, match=match):
        tiny_config(**kwargs)


def test_padding_is_refused_for_ttt_models(make_tiny_model):
    model = make_tiny_model()
    x = _ids(10, batch=2)
    left_padded = torch.ones_like(x)
    left_padded[0, :3] = 0
    with pytest.raises(ValueError, match="padding"):
        model.generate(x, attention_mask=left_padded, max_new_tokens=2)
    with pytest.raises(ValueError, match="padding"):
        model(x, attention_mask=left_padded, use_cache=False)
    right_padded = torch.ones_like(x)
    right_padded[0, -3:] = 0
    with torch.no_grad():
        model(x, attention_mask=right_padded, use_cache=False)  # harmless without a cache
    with pytest.raises(ValueError, match="padding"):
        model(x, attention_mask=right_padded, use_cache=True)


def test_foreign_cache_is_a_clear_error(make_tiny_model):
    from transformers import DynamicCache
    model = make_tiny_model()
    with pytest.raises(TypeError, match="TTTHybridCache"):
        model(_ids(5), **cache_kwargs(DynamicCache()))
