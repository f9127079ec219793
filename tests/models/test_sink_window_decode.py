"""The sink-window decode step (SinkWindowLayer.attend_next: a ring buffer, no window copy, no repeated KV heads)
gives the one-pass outputs token by token across many wraps of the ring, and its cache saves and restores in
position order."""
import pytest
import torch

from ttt_omni.cache import SinkWindowLayer, TTTHybridCache
from ttt_omni.hf_compat import cache_kwargs


@pytest.mark.parametrize("window, sinks", [(5, 2), (8, 3), (1, 2)])
def test_token_by_token_decode_equals_one_pass(make_tiny_model, window, sinks):
    model = make_tiny_model(attention_window=window, attention_sinks=sinks)
    x = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        full = model(x).logits
        cache = model.make_cache()
        steps = [model(x[:, :3], **cache_kwargs(cache)).logits]
        steps += [model(x[:, t:t + 1], **cache_kwargs(cache)).logits for t in range(3, 40)]
    layer = cache.layers[0]
    assert isinstance(layer, SinkWindowLayer) and layer.keys.shape[-2] == sinks + window - 1
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=0, atol=1e-5)


def test_a_ring_saved_mid_wrap_restores_in_position_order(make_tiny_model):
    model = make_tiny_model(attention_window=6, attention_sinks=2)
    x = torch.randint(0, 256, (1, 30), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        cache = model.make_cache()
        model(x[:, :10], **cache_kwargs(cache))
        for t in range(10, 23):  # decode steps rotate the ring
            model(x[:, t:t + 1], **cache_kwargs(cache))
        data = cache.to_dict()
        ring = cache.layers[0]
        assert torch.equal(data["layers.0.keys"], ring.ordered()) and not torch.equal(ring.ordered(), ring.keys)
        restored = TTTHybridCache.from_dict(model.config, data)
        a = torch.cat([model(x[:, t:t + 1], **cache_kwargs(cache)).logits for t in range(23, 30)], 1)
        b = model(x[:, 23:], **cache_kwargs(restored)).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
