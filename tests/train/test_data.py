"""Conversations, tokenisation and lane packing: state never crosses a conversation boundary, no inner padding."""
import json

import pytest
import torch

from ttt_omni.labels import IGNORE_INDEX
from ttt_omni.train.data import LanePacker, TokenizedConversation, load_jsonl, parse_play


def test_parse_play_reads_speaker_turns():
    text = "\n\n".join(["Nora. Do I?", "Helmer (wagging his finger). Hasn't Miss Sweet Tooth\nbeen breaking rules?",
                        "THE FLOWER GIRL [to Pickering] Buy a flower.", "[Exit.]", "Mrs. Linde. Yes."] * 5)
    turns = parse_play(text)
    assert [t.speaker for t in turns[:5]] == ["Nora", "Helmer", "The Flower Girl", "Mrs. Linde", "Nora"]
    assert turns[1].text == "Hasn't Miss Sweet Tooth been breaking rules?"
    assert turns[2].text.endswith("Buy a flower.\n[Exit.]")
    assert len(parse_play("Just prose. No speakers here.")) == 1


def _convs(lengths):
    return [TokenizedConversation(f"c{i}", list(range(1, n + 1)), [0] * n) for i, n in enumerate(lengths)]


def test_lanes_keep_conversations_whole_and_in_order():
    packer = LanePacker(_convs([100, 33, 17, 250, 64]), batch_size=3, context=32, mini_batch_size=16, seed=1)
    steps = packer.steps_per_epoch()
    seen = {}
    for step in range(steps):
        b = packer.batch(step)
        assert b["input_ids"].shape == (3, 32)
        for row in range(3):
            conv = int(b["conversation"][row])
            if conv < 0:
                assert bool(b["reset"][row]) and (b["labels"][row] == IGNORE_INDEX).all()
                continue
            window = int(b["window"][row])
            # a lane continues its conversation: the previous window of this conversation was the lane's last step
            if window > 0:
                assert seen[conv] == (step - 1, row, window - 1)
            assert bool(b["reset"][row]) == (window == 0)
            seen[conv] = (step, row, window)
            real = b["labels"][row] != IGNORE_INDEX
            n = int(real.sum())
            assert real[:n].all() and not real[n:].any(), "padding only after every real token"
            ids = packer.conversations[conv].ids
            start = window * 32
            assert b["input_ids"][row, :n].tolist() == ids[start:start + n]
            assert b["labels"][row, :n].tolist() == ids[start + 1:start + 1 + n]
    assert {c: w for c, (_, _, w) in seen.items()} == {0: 3, 1: 0, 2: 0, 3: 7, 4: 1}  # last window index = (len - 2) // 32


def test_padding_only_in_a_conversation_last_window():
    packer = LanePacker(_convs([200, 90]), batch_size=1, context=32, mini_batch_size=16)
    for step in range(packer.steps_per_epoch()):
        b = packer.batch(step)
        conv, window = int(b["conversation"][0]), int(b["window"][0])
        last = (len(packer.conversations[conv].ids) - 2) // 32
        if window < last:
            assert (b["labels"][0] != IGNORE_INDEX).all()


def test_batches_are_deterministic_and_resumable():
    a = LanePacker(_convs([100, 33, 17, 250]), 2, 32, 16, seed=3)
    b = LanePacker(_convs([100, 33, 17, 250]), 2, 32, 16, seed=3)
    later = a.steps_per_epoch() + 2  # a step of the second epoch, asked for first
    assert all(torch.equal(x, y) for x, y in zip(a.batch(later).values(), b.batch(later).values()))


def test_bad_packing_and_jsonl_inputs(tmp_path):
    with pytest.raises(ValueError, match="must be a multiple of mini_batch_size"):
        LanePacker(_convs([10]), 1, 30, 16)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversation_id": 1, "turns": [{"speaker": "A", "text": "hi"}]}\n{"turns": []}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: expected"):
        load_jsonl(bad)
    with pytest.raises(FileNotFoundError, match="conversation file not found"):
        load_jsonl(tmp_path / "missing.jsonl")


def test_jsonl_reads_audio_and_units_and_names_bad_turns(tmp_path):
    good = tmp_path / "speech" / "train.jsonl"
    good.parent.mkdir()
    good.write_text(json.dumps({"conversation_id": "c1", "turns": [
        {"speaker": "user", "audio": "q.wav"},
        {"speaker": "assistant", "text": "Sunny.", "units": [3, 3, 1]}]}) + "\n\n")
    (dialogue,) = load_jsonl(good)
    assert dialogue.conversation_id == "c1"
    assert dialogue.turns[0].audio == str(good.parent / "q.wav") and dialogue.turns[0].text == ""
    assert dialogue.turns[1].units == [3, 3, 1] and dialogue.turns[1].audio is None

    bad_lines = {
        "not json": "not JSON",
        "[1, 2]": "expected a JSON object",
        '{"conversation_id": 1.5, "turns": []}': "conversation_id to be a string or an integer",
        '{"conversation_id": "c", "turns": {"speaker": "A"}}': "turns to be a list",
        '{"conversation_id": "c", "turns": []}': "has no turns",
        '{"conversation_id": "c", "turns": ["hi"]}': r"turn 0: expected an object",
        '{"conversation_id": "c", "turns": [{"speaker": "A"}]}': r"turn 0: expected text",
        '{"conversation_id": "c", "turns": [{"text": 3}]}': "text to be a string",
        '{"conversation_id": "c", "turns": [{"speaker": 7, "text": "x"}]}': "speaker to be a string",
        '{"conversation_id": "c", "turns": [{"text": "x", "audio": 5}]}': "audio to be a WAV path",
        '{"conversation_id": "c", "turns": [{"text": "x"}, {"text": "y", "units": [1, -2]}]}':
            r"'c', turn 1: expected units to be a non-empty list of unit ids",
        '{"conversation_id": "c", "turns": [{"text": "y", "units": []}]}': "expected units",
        '{"conversation_id": "c", "turns": [{"text": "y", "units": [true]}]}': "expected units",
    }
    for line, message in bad_lines.items():
        bad = tmp_path / "bad.jsonl"
        bad.write_text(json.dumps({"conversation_id": "ok", "turns": [{"text": "fine"}]}) + "\n" + line + "\n")
        with pytest.raises(ValueError, match=rf"bad.jsonl:2: .*{message}"):
            load_jsonl(bad)
