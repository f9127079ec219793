import json

import pytest

from ttt_omni.data_manifest import books
from ttt_omni.train.config import TrainConfig


@pytest.fixture(scope="session")
def conversations_jsonl(tmp_path_factory):
    """Six two-speaker conversations cut from a bundled play."""
    text = " ".join(books("train")[-1].read().split())[:48000]
    path = tmp_path_factory.mktemp("data") / "conv.jsonl"
    with path.open("w") as f:
        for i in range(6):
            part = text[i * 8000:(i + 1) * 8000]
            f.write(json.dumps({"conversation_id": f"c{i}", "turns": [
                {"speaker": "Ann", "text": part[:4000]}, {"speaker": "Bob", "text": part[4000:]}]}) + "\n")
    return path


@pytest.fixture
def tiny_train_config(tmp_path, conversations_jsonl):
    def make(**overrides):
        data = dict(output_dir=str(tmp_path / "run"), jsonl=str(conversations_jsonl), books_split=None,
                    bpe_vocab_size=300, context=64, batch_size=2, steps=6, lr=3e-3, warmup=2, save_every=3,
                    monitor_every=2, model_overrides={"hidden_size": 32, "intermediate_size": 64,
                                                      "num_hidden_layers": 2, "num_attention_heads": 2,
                                                      "num_key_value_heads": 1, "ttt_layers": [1],
                                                      "mini_batch_size": 16})
        data.update(overrides)
        return TrainConfig.from_dict(data)
    return make


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """accelerate keeps one process-wide state; each test's Trainer sets its own mixed precision."""
    from accelerate.state import AcceleratorState
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
