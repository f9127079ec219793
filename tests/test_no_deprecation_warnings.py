"""Our calls into the libraries raise no deprecation: a demo-sized evaluation, generate(), a conversation and a
training step run with FutureWarning/DeprecationWarning recorded, and transformers' deprecation log lines captured.

Such warnings are attributed to the library frame that calls the deprecated function (an nn.Module wrapper), not to
our module, so pyproject's `filterwarnings` (errors for warnings raised in ttt_omni / evalsuite / dashboards)
cannot see them; transformers 5.24's `past_key_values` -> `cache` rename announced itself only this way.
"""
import json
import logging
import warnings

import pytest
import torch

DEPRECATIONS = (FutureWarning, DeprecationWarning)


@pytest.fixture
def no_deprecations(caplog):
    caplog.set_level(logging.WARNING, logger="transformers")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield
    found = [f"{w.category.__name__} at {w.filename}:{w.lineno}: {w.message}" for w in seen
             if issubclass(w.category, DEPRECATIONS)]
    found += [f"log {r.name}: {r.getMessage()}" for r in caplog.records if "deprecat" in r.getMessage().lower()]
    assert not found, "deprecated calls:\n" + "\n".join(found)


def test_demo_sized_evaluation(tmp_path, no_deprecations):
    from evalsuite.runner import run_task
    from evalsuite.store import Store

    for spec in ("tiny", "tiny-baseline"):
        run_task("ppl_vs_length", spec, store=Store(tmp_path / "s.db"), limit=1, lengths=[256, 2304],
                 progress=False)


def test_generate_and_a_conversation(tmp_path, no_deprecations):
    from evalsuite.models import load_model
    from ttt_omni.conversation import ConversationStore

    model = load_model("tiny").model
    prompt = torch.tensor([[10, 20, 30, 40]])
    model.generate(prompt, max_new_tokens=4, do_sample=False)
    model.generate(prompt, max_new_tokens=3, num_beams=2, do_sample=False)
    store = ConversationStore(model, tmp_path / "conv")
    store.append("a", [1, 2, 3])
    store.generate("a", [4], max_new_tokens=3, do_sample=False)
    store.save("a")


def test_a_training_step(tmp_path, no_deprecations):
    from ttt_omni.data_manifest import books
    from ttt_omni.train.config import TrainConfig
    from ttt_omni.train.trainer import Trainer

    text = " ".join(books("train")[0].read().split())[:6000]
    data = tmp_path / "c.jsonl"
    data.write_text(json.dumps({"conversation_id": "c", "turns": [{"speaker": "A", "text": text}]}) + "\n")
    cfg = TrainConfig.from_dict(dict(
        output_dir=str(tmp_path / "run"), jsonl=str(data), books_split=None, bpe_vocab_size=300, context=64,
        batch_size=1, steps=2, warmup=1, save_every=2, monitor_every=1,
        model_overrides={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                         "num_attention_heads": 2, "num_key_value_heads": 1, "ttt_layers": [1],
                         "mini_batch_size": 16}))
    Trainer(cfg).train()
