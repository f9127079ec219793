import pytest
import torch

from ttt_omni.models import TTTLlamaForCausalLM
from ttt_omni.models.presets import tiny_config


def _tiny_model(seed: int = 0, **overrides) -> TTTLlamaForCausalLM:
    """A tiny hybrid in eval mode with seeded weights; the TTT inner parameters (zero biases at init) are perturbed
    so that every one of them matters."""
    torch.manual_seed(seed)
    model = TTTLlamaForCausalLM(tiny_config(**overrides)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".inner." in name:
                p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models are all small ops: one intra-op thread is as fast uncontended and avoids the OpenMP spin-wait
    slowdown (tens of times) when other processes share the two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_tiny_model():
    return _tiny_model
