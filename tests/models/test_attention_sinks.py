"""Attention sinks in bounded-memory mode: the definition (a naive per-query reference), exact under any split of a
sequence, generate(), the bounded cache, and the config's refusals."""
import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import ttt_omni.models.modeling_ttt_llama as modeling
from ttt_omni.cache import SinkWindowLayer, TTTHybridCache, sink_window_positions
from ttt_omni.hf_compat import cache_kwargs, output_cache
from ttt_omni.models import TTTLlamaForCausalLM
from ttt_omni.models.presets import tiny_config


def _ids(length, batch=1, seed=1):
    return torch.randint(0, 256, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(params=[256, 5], ids=["one-block", "blocks-of-5"])
def query_block(request, monkeypatch):
    """Run each test with the queries scored in one block and in many small ones (the blocks pick key ranges)."""
    monkeypatch.setattr(modeling, "SINK_QUERY_BLOCK", request.param)
    return request.param


def _rotate(x: torch.Tensor, position: int, inv_freq: torch.Tensor) -> torch.Tensor:
    angles = position * inv_freq.double()
    cos, sin = torch.cat([angles.cos(), angles.cos()]), torch.cat([angles.sin(), angles.sin()])
    a, b = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-b, a], dim=-1) * sin


def _reference_attention(attn, rotary, hidden: torch.Tensor, window: int, sinks: int) -> torch.Tensor:
    """One attention layer by the definition, one query at a time in float64: query m sees key j when j <= m and
    (m - j < window or j < sinks); a sink is scored with the query rotated to min(m, window + sinks - 1)."""
    T, H, F = hidden.shape[1], attn.config.num_attention_heads, attn.head_dim
    groups = attn.num_key_value_groups
    q = attn.q_proj(hidden)[0].view(T, H, F).double()
    k = attn.k_proj(hidden)[0].view(T, -1, F).double().repeat_interleave(groups, dim=1)
    v = attn.v_proj(hidden)[0].view(T, -1, F).double().repeat_interleave(groups, dim=1)
    out = torch.zeros(T, H, F, dtype=torch.float64)
    for m in range(T):
        seen = [j for j in range(m + 1) if m - j < window or j < sinks]
        for h in range(H):
            scores = torch.stack([
                _rotate(q[m, h], min(m, window + sinks - 1) if j < sinks else m, rotary.inv_freq)
                @ _rotate(k[j, h], j, rotary.inv_freq) / math.sqrt(F) for j in seen])
            out[m, h] = torch.softmax(scores, 0) @ v[seen, h]
    return attn.o_proj(out.reshape(1, T, H * F).to(hidden.dtype))


@pytest.mark.parametrize("window, sinks", [(6, 2), (9, 4), (40, 3)])
def test_sink_attention_equals_the_per_query_definition(query_block, window, sinks):
    torch.manual_seed(0)
    model = TTTLlamaForCausalLM(tiny_config(ttt_layers=[], attention_window=window, attention_sinks=sinks)).double()
    layer = model.model.layers[1]
    hidden = torch.randn(1, 23, model.config.hidden_size, dtype=torch.float64)
    positions = torch.arange(23)[None]
    layout = modeling.sink_window_layout(model.config, model.model.rotary_emb, hidden, None, positions, past=0)
    with torch.no_grad():
        got, _ = layer.self_attn(hidden, model.model.rotary_emb(hidden, positions), sink_layout=layout)
        want = _reference_attention(layer.self_attn, model.model.rotary_emb, hidden, window, sinks)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)  # RoPE tables are float32 in transformers


@pytest.mark.parametrize("ttt_type", ["linear", "mlp"])
@pytest.mark.parametrize("prefill", [1, 2, 3, 4, 15, 16, 41])
def test_any_split_equals_one_pass(make_tiny_model, query_block, ttt_type, prefill):
    model = make_tiny_model(ttt_type=ttt_type, attention_window=12, attention_sinks=3)
    x = _ids(60, batch=2)
    with torch.no_grad():
        full = model(x).logits
        cache = model.make_cache()
        steps = [model(x[:, :prefill], **cache_kwargs(cache)).logits]
        steps += [model(x[:, t:t + 7], **cache_kwargs(cache)).logits for t in range(prefill, 60, 7)]
    assert cache.get_seq_length() == 60
    assert cache.layers[0].keys.shape[-2] == 3 + 11  # the sinks and the last window - 1 tokens
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=0, atol=1e-5)


def test_sinks_change_the_result_and_a_window_covering_everything_is_full_attention(make_tiny_model):
    x = _ids(40)
    full = make_tiny_model()
    windowed, with_sinks, wide = (make_tiny_model(**kw) for kw in (
        {"attention_window": 8}, {"attention_window": 8, "attention_sinks": 2},
        {"attention_window": 64, "attention_sinks": 2}))
    for model in (windowed, with_sinks, wide):
        model.load_state_dict(full.state_dict())
    with torch.no_grad():
        assert not torch.allclose(windowed(x).logits, with_sinks(x).logits, atol=1e-3)
        torch.testing.assert_close(wide(x).logits, full(x).logits, rtol=0, atol=1e-5)


def test_no_ttt_layers_and_a_wide_window_equal_transformers_llama():
    torch.manual_seed(0)
    hybrid = TTTLlamaForCausalLM(tiny_config(ttt_layers=[], attention_window=100, attention_sinks=4)).eval()
    fields = {k: v for k, v in hybrid.config.to_dict().items() if k in LlamaConfig().to_dict()}
    fields.pop("sliding_window", None)
    llama = LlamaForCausalLM(LlamaConfig(**fields)).eval()
    llama.load_state_dict(hybrid.state_dict())
    x = _ids(50, batch=2)
    with torch.no_grad():
        torch.testing.assert_close(hybrid(x).logits, llama(x).logits, rtol=0, atol=1e-5)


def test_generate_sampling_scores_match_teacher_forcing(make_tiny_model):
    model = make_tiny_model(attention_window=8, attention_sinks=2)
    torch.manual_seed(3)
    out = model.generate(_ids(19, batch=2), max_new_tokens=24, do_sample=True, top_k=0, temperature=1.0,
                         return_dict_in_generate=True, output_logits=True)
    with torch.no_grad():
        full = model(out.sequences).logits
    torch.testing.assert_close(torch.stack(out.logits, 1), full[:, 18:-1], rtol=0, atol=1e-5)


def test_the_cache_stays_bounded_and_round_trips(make_tiny_model):
    model = make_tiny_model(attention_window=16, attention_sinks=4)
    x = _ids(300)
    cache, sizes = model.make_cache(), []
    with torch.no_grad():
        for start in range(0, 280, 40):
            model(x[:, start:start + 40], **cache_kwargs(cache))
            sizes.append(cache.nbytes()["kv"])
        restored = TTTHybridCache.from_dict(model.config, {k: v.clone() for k, v in cache.to_dict().items()})
        a = model(x[:, 280:], **cache_kwargs(cache)).logits
        b = model(x[:, 280:], **cache_kwargs(restored)).logits
    assert isinstance(cache.layers[0], SinkWindowLayer) and len(set(sizes)) == 1
    assert torch.equal(a, b)


def test_kept_positions():
    assert sink_window_positions(0, 5, 2).tolist() == []
    assert sink_window_positions(3, 5, 2).tolist() == [0, 1, 2]
    assert sink_window_positions(6, 5, 2).tolist() == [0, 1, 2, 3, 4, 5]
    assert sink_window_positions(20, 5, 2).tolist() == [0, 1, 16, 17, 18, 19]


def test_padded_keys_are_hidden_and_padded_rows_stay_finite():
    """An attention-only model may take a padded batch: a left-padded row scores its tokens as the same tokens
    alone at the same positions (the padding, here where the sinks would be, is never seen)."""
    torch.manual_seed(0)
    model = TTTLlamaForCausalLM(tiny_config(ttt_layers=[], attention_window=6, attention_sinks=2)).eval()
    x = _ids(12, batch=2)
    mask = torch.ones_like(x)
    mask[0, :3] = 0
    with torch.no_grad():
        padded = model(x, attention_mask=mask).logits
        alone = model(x[:1, 3:], position_ids=torch.arange(3, 12)[None]).logits
        unpadded = model(x[1:]).logits
    assert torch.isfinite(padded).all()
    torch.testing.assert_close(padded[0, 3:], alone[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(padded[1], unpadded[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    ({"attention_sinks": 4}, "needs attention_window"),
    ({"attention_window": 8, "attention_sinks": -1}, "attention_sinks=-1"),
])
def test_bad_sink_settings_are_clear_errors(kwargs, match):
    with pytest.raises(Exception, match=match):
        tiny_config(**kwargs)


def test_sinks_are_saved_in_the_config(make_tiny_model, tmp_path):
    model = make_tiny_model(attention_window=8, attention_sinks=2)
    model.save_pretrained(tmp_path)
    loaded = TTTLlamaForCausalLM.from_pretrained(tmp_path)
    assert loaded.config.attention_sinks == 2
    x = _ids(30)
    with torch.no_grad():
        assert torch.equal(model(x).logits, loaded(x).logits)
    with torch.no_grad():
        assert output_cache(loaded(x, use_cache=True)).attention_sinks == 2
