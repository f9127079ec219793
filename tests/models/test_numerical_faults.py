"""NaN/Inf never passes silently through the model: a corrupt cached state, NaN weights or NaN input embeddings
give an error that names the TTT layer and what is not finite."""
import pytest
import torch

from ttt_omni.hf_compat import cache_kwargs
from ttt_omni.ops.validate import NonFiniteInputError, NonFiniteStateError


def test_nan_in_a_cached_ttt_state_names_the_layer(make_tiny_model):
    model = make_tiny_model()
    cache = model.make_cache()
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]]), **cache_kwargs(cache))
        cache.get_ttt_state(3).W1[0, 0, 0, 0] = float("nan")
        with pytest.raises(NonFiniteStateError, match=r"TTT layer 3: state contains NaN/Inf in \['W1'\]"):
            model(torch.tensor([[4]]), **cache_kwargs(cache))


def test_nan_weights_before_a_ttt_layer_name_it(make_tiny_model):
    model = make_tiny_model()
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[0, 0] = float("nan")
        with pytest.raises(NonFiniteInputError, match=r"TTT layer 2: inputs \[.*'xq'.*\] contain NaN/Inf"):
            model(torch.tensor([[1, 2, 3]]))


def test_nan_input_embeddings_are_refused(make_tiny_model):
    model = make_tiny_model()
    embeds = torch.randn(1, 5, model.config.hidden_size)
    embeds[0, 2, 7] = float("nan")
    with torch.no_grad(), pytest.raises(NonFiniteInputError, match="TTT layer 2"):
        model(inputs_embeds=embeds)
