"""ConversationStore: turns carry the state, save/restore continues exactly, resets only when asked, atomic saves."""
import pytest
import torch

import ttt_omni.conversation as conversation_module
from ttt_omni.conversation import ConversationStore

TURN1, TURN2, TURN3 = [5, 17, 99, 3, 42, 8, 250, 11, 64], [7, 7, 130, 2, 9], [33, 1, 200]


@pytest.fixture
def model(make_tiny_model):
    return make_tiny_model(mini_batch_size=4)


def test_turns_equal_one_forward_over_the_whole_conversation(model):
    store = ConversationStore(model)
    store.append("c1", TURN1)
    reply = store.generate("c1", TURN2, max_new_tokens=6, do_sample=False)
    last = store.append("c1", TURN3)
    history = store.get("c1").token_ids
    assert history == TURN1 + TURN2 + reply + TURN3 and len(reply) == 6
    with torch.no_grad():
        full = model(torch.tensor([history])).logits[0]
    torch.testing.assert_close(last, full[-len(TURN3):], rtol=0, atol=1e-5)


@pytest.mark.parametrize("window", [None, 8])
def test_save_restore_equals_uninterrupted_run(make_tiny_model, tmp_path, window):
    model = make_tiny_model(mini_batch_size=4, attention_window=window)
    uninterrupted = ConversationStore(model)
    uninterrupted.append("a", TURN1)
    reply = uninterrupted.generate("a", TURN2, max_new_tokens=5, do_sample=False)
    expected = uninterrupted.append("a", TURN3)

    first = ConversationStore(model, tmp_path)
    first.append("a", TURN1)
    assert first.generate("a", TURN2, max_new_tokens=5, do_sample=False) == reply
    first.save("a")
    second = ConversationStore(model, tmp_path)  # e.g. after a restart
    assert second.list() == ["a"]
    restored = second.get("a")
    assert restored.token_ids == TURN1 + TURN2 + reply
    assert torch.equal(second.append("a", TURN3), expected)


def test_state_resets_only_when_asked_or_for_a_new_conversation(model):
    store = ConversationStore(model)
    fresh = store.append("x", TURN1)
    continued = store.append("x", TURN1)
    assert not torch.allclose(fresh, continued)  # same words, later in the conversation: the state carried on
    assert torch.equal(store.append("y", TURN1), fresh)  # a new conversation starts fresh
    store.reset("x")
    assert store.get("x").token_ids == [] and store.get("x").cache.get_seq_length() == 0
    assert torch.equal(store.append("x", TURN1), fresh)


def test_list_and_delete(model, tmp_path):
    store = ConversationStore(model, tmp_path)
    store.append("saved", TURN1)
    store.save("saved")
    store.append("open-only", TURN2)
    assert store.list() == ["open-only", "saved"]
    store.delete("saved")
    assert not (tmp_path / "saved.safetensors").exists() and store.list() == ["open-only"]
    with pytest.raises(KeyError, match="no conversation 'saved'"):
        store.delete("saved")


def test_failed_save_leaves_previous_file_intact(model, tmp_path, monkeypatch):
    store = ConversationStore(model, tmp_path)
    store.append("c", TURN1)
    path = store.save("c")
    before = path.read_bytes()
    store.append("c", TURN2)

    def disk_full(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(conversation_module, "save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.save("c")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]  # no temp file left behind
    assert ConversationStore(model, tmp_path).get("c").token_ids == TURN1


def test_bad_input_is_a_clear_error(model, make_tiny_model, tmp_path):
    store = ConversationStore(model, tmp_path)
    with pytest.raises(ValueError, match="conversation id '../etc' is invalid"):
        store.get("../etc")
    with pytest.raises(ValueError, match="is empty"):
        store.generate("empty", max_new_tokens=2)
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="broken.safetensors is not a readable safetensors file"):
        store.get("broken")
    store.append("c", TURN1)
    store.save("c")
    other = make_tiny_model(mini_batch_size=8)
    with pytest.raises(ValueError, match="another layout.*mini_batch_size"):
        ConversationStore(other, tmp_path).get("c")
    memory_only = ConversationStore(model)
    memory_only.append("x", TURN1)
    with pytest.raises(ValueError, match="no directory"):
        memory_only.save("x")
