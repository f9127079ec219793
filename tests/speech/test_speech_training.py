"""A few training steps on synthetic speech (espeak-ng + sox) lower the LM and the CTC unit loss; the trained model
saves and reloads with the same losses; `ttt-omni train` dispatches LLaMA-Omni checkpoints to the speech trainer."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from transformers import HubertConfig, HubertModel

from ttt_omni.cli import main
from ttt_omni.speech.omni_checkpoint import convert_omni_checkpoint, load_omni
from ttt_omni.speech.units import UnitExtractor
from ttt_omni.train.config import TrainConfig
from ttt_omni.train.data import load_jsonl
from ttt_omni.train.speech_batch import SpeechTrainer, reduce_units, speech_sequence

from support.speech import UNITS, speak


@pytest.fixture(scope="module")
def speech_data(tmp_path_factory, llama_omni_dir):
    root = tmp_path_factory.mktemp("speech-data")
    model_dir = root / "ttt-omni"
    convert_omni_checkpoint(llama_omni_dir, model_dir, ttt_layers=[3], mini_batch_size=4)
    speak("what is the weather like", root / "q1.wav")
    speak("it is sunny today", root / "a1.wav")
    speak("tell me about the cat", root / "q2.wav")
    rows = [
        {"conversation_id": "c1", "turns": [{"speaker": "user", "text": "", "audio": "q1.wav"},
                                            {"speaker": "assistant", "text": "it is sunny today.", "audio": "a1.wav"}]},
        {"conversation_id": "c2", "turns": [{"speaker": "user", "text": "", "audio": "q2.wav"},
                                            {"speaker": "assistant", "text": "the cat sat on the mat.",
                                             "units": [3, 5, 5, 7, 1, 2, 9, 4, 4, 0, 11]},
                                            {"speaker": "user", "text": "and then?"},
                                            {"speaker": "assistant", "text": "yes, that is right."}]},
    ]
    (root / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    torch.manual_seed(0)
    hubert = HubertModel(HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                      conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                                      num_conv_pos_embedding_groups=2))
    extractor = UnitExtractor(hubert, torch.randn(UNITS, 32), layer=2)
    return root, model_dir, extractor


def _cfg(root, model_dir, **kw) -> TrainConfig:
    return TrainConfig.from_dict({"output_dir": str(root / "run"), "preset": None, "model_from": str(model_dir),
                                  "books_split": None, "jsonl": str(root / "train.jsonl"), "steps": 6, "lr": 3e-3,
                                  "warmup": 1, **kw})


def test_speech_sequence_layout(speech_data):
    root, model_dir, extractor = speech_data
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    conv = load_jsonl(root / "train.jsonl")[1]
    seq = speech_sequence(conv, tok)
    assert len(seq.input_ids) == len(seq.labels) == len(seq.reply) and len(seq.speech) == 1
    assert seq.units[0].tolist() == [3, 5, 5, 7, 1, 2, 9, 4, 4, 0, 11]
    reply_tokens = tok("the cat sat on the mat.", add_special_tokens=False)["input_ids"]
    fed = [i for i, r in enumerate(seq.reply) if r == 0]
    # the positions feeding reply 0 predict its tokens (and then eos), as in generation
    assert [seq.labels[i] for i in fed] == reply_tokens + [tok.eos_token_id]
    assert max(seq.reply) == 0  # the second, text-only reply has no units
    assert reduce_units([4, 4, 1, 4, 4, 4]) == [4, 1, 4]
    with pytest.raises(ValueError, match="no units"):
        speech_sequence(load_jsonl(root / "train.jsonl")[0], tok)


def test_training_steps_lower_the_loss_and_export_reloads(speech_data):
    root, model_dir, extractor = speech_data
    trainer = SpeechTrainer(_cfg(root, model_dir), unit_extractor=extractor)
    assert len(trainer.sequences[0].units[0]) > 10  # units of the spoken reply, repeats merged
    before = trainer.evaluate()
    last = trainer.train()
    after = trainer.evaluate()
    assert last["step"] == 6 and np.isfinite(last["loss"])
    assert after["lm"] < before["lm"] and after["ctc"] < before["ctc"] and after["loss"] < before["loss"]
    assert not any(p.grad is not None for p in trainer.model.speech_encoder.parameters())  # frozen encoder
    exported = trainer.export()
    reloaded = load_omni(exported)
    seq = trainer.sequences[1]
    with torch.no_grad():
        trainer.model.eval()
        torch.testing.assert_close(reloaded.loss(seq)["loss"], trainer.model.loss(seq)["loss"])


def test_train_cli_uses_the_speech_trainer(speech_data, tmp_path, capsys):
    root, model_dir, _ = speech_data
    # the CLI has no unit extractor: give the spoken reply's units in the data
    rows = [json.loads(line) for line in (root / "train.jsonl").read_text().splitlines()]
    rows[0]["turns"][1]["units"] = [1, 2, 3, 4, 5, 6]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    for name in ("q1.wav", "q2.wav", "a1.wav"):
        (tmp_path / name).write_bytes((root / name).read_bytes())
    config = tmp_path / "speech.yaml"
    config.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "run"), "preset": None,
                                      "model_from": str(model_dir), "books_split": None, "jsonl": str(data),
                                      "steps": 2, "warmup": 1}))
    assert main(["train", str(config)]) == 0
    assert "done: step 2" in capsys.readouterr().out
    assert (tmp_path / "run" / "final" / "config.json").is_file()
