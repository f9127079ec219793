"""TTTHybridCache: layer kinds, lengths, persistence round trip, refusals."""
import pytest
import torch
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from ttt_omni.cache import TTTHybridCache, TTTStateLayer
from ttt_omni.hf_compat import cache_kwargs, output_cache
from ttt_omni.models.presets import tiny_config


@pytest.mark.parametrize("window", [None, 8])
def test_round_trip_through_dict_continues_exactly(make_tiny_model, window):
    model = make_tiny_model(attention_window=window)
    x = torch.randint(0, 256, (1, 30), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cache = output_cache(model(x[:, :21], use_cache=True))
        restored = TTTHybridCache.from_dict(model.config, {k: v.clone() for k, v in cache.to_dict().items()})
        assert restored.get_seq_length() == 21 and restored.nbytes() == cache.nbytes()
        a = model(x[:, 21:], **cache_kwargs(cache)).logits
        b = model(x[:, 21:], **cache_kwargs(restored)).logits
    assert torch.equal(a, b)


def test_layer_kinds_follow_the_config():
    kinds = [type(layer) for layer in TTTHybridCache(tiny_config(attention_window=4)).layers]
    assert kinds == [DynamicSlidingWindowLayer, DynamicSlidingWindowLayer, TTTStateLayer, TTTStateLayer]
    assert [type(layer) for layer in TTTHybridCache(tiny_config()).layers][:2] == [DynamicLayer, DynamicLayer]


def test_refusals_are_clear(make_tiny_model):
    model = make_tiny_model()
    with torch.no_grad():
        cache = output_cache(model(torch.tensor([[1, 2, 3]]), use_cache=True))
    with pytest.raises(ValueError, match="does not match the model layout"):
        TTTHybridCache.from_dict(tiny_config(ttt_layers=[3]), cache.to_dict())
    with pytest.raises(NotImplementedError, match="cannot be cropped"):
        cache.crop(-1)
    assert [cache.layers[i].get_seq_length() for i in range(4)] == [3, 3, 3, 3]  # nothing cropped half-way
    with pytest.raises(ValueError, match="layer 0 is an attention layer"):
        cache.get_ttt_state(0)
