"""Speech training through the one Trainer, on synthetic speech (espeak-ng + sox): a few steps lower the LM and the
CTC unit loss; the exported final/ loads with load_omni and gives the same losses; a resumed run is bit-identical to
an uninterrupted one; the monitor watches the TTT layers; `ttt-omni train` trains LLaMA-Omni checkpoints and
resumes them; bad speech data is refused by name; DDP and FSDP on two CPU processes."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from transformers import AutoTokenizer, HubertConfig, HubertModel

from ttt_omni.cli import main
from ttt_omni.speech.omni_checkpoint import convert_omni_checkpoint, is_omni_checkpoint, load_omni
from ttt_omni.speech.units import UnitExtractor
from ttt_omni.train.config import TrainConfig
from ttt_omni.train.data import load_jsonl
from ttt_omni.train.speech_data import reduce_units, speech_sequence
from ttt_omni.train.trainer import Trainer

from support.distributed import reports, torchrun
from support.speech import speak
from ttt_omni.speech.tiny import UNITS


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


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """accelerate keeps one process-wide state; each Trainer sets its own (as in tests/train)."""
    from accelerate.state import AcceleratorState
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="module")
def units_only(speech_data, tmp_path_factory):
    """The same conversations with units for the spoken reply, so no unit extractor is needed (as for the CLI)."""
    root, _, _ = speech_data
    rows = [json.loads(line) for line in (root / "train.jsonl").read_text().splitlines()]
    rows[0]["turns"][1]["units"] = [1, 2, 3, 4, 5, 6]
    data = tmp_path_factory.mktemp("units-only") / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    for name in ("q1.wav", "q2.wav", "a1.wav"):
        (data.parent / name).write_bytes((root / name).read_bytes())
    return data


def _cfg(root, model_dir, **kw) -> TrainConfig:
    return TrainConfig.from_dict({"output_dir": str(root / "run"), "preset": None, "model_from": str(model_dir),
                                  "books_split": None, "jsonl": str(root / "train.jsonl"), "steps": 6, "lr": 3e-3,
                                  "warmup": 1, **kw})


def _mean_losses(model, sequences) -> dict[str, float]:
    """Mean losses over all conversations, without updating anything."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        parts = [model.loss(s) for s in sequences]
    model.train(was_training)
    return {k: float(np.mean([p[k].item() for p in parts if k in p])) for k in parts[0]}


def _weights(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.unwrapped.state_dict().items()}


def test_speech_sequence_layout(speech_data):
    root, model_dir, extractor = speech_data
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
    trainer = Trainer(_cfg(root, model_dir, save_every=100), unit_extractor=extractor)
    sequences = trainer.task.sequences
    assert len(sequences[0].units[0]) > 10  # units of the spoken reply, repeats merged
    before = _mean_losses(trainer.unwrapped, sequences)
    last = trainer.train()
    after = _mean_losses(trainer.unwrapped, sequences)
    assert last["step"] == 6 and np.isfinite(last["loss"])
    assert after["lm"] < before["lm"] and after["ctc"] < before["ctc"] and after["loss"] < before["loss"]
    assert not any(p.grad is not None for p in trainer.unwrapped.speech_encoder.parameters())  # frozen encoder
    log = pd.read_csv(root / "run" / "train_log.csv")
    assert list(log.columns) == ["step", "loss", "lm", "ctc", "grad_norm", "lr"] and log["step"].tolist() == [1, 2, 3,
                                                                                                              4, 5, 6]
    assert is_omni_checkpoint(last["final"])
    reloaded = load_omni(last["final"])
    seq = sequences[1]
    with torch.no_grad():
        trainer.unwrapped.eval()
        torch.testing.assert_close(reloaded.loss(seq)["loss"], trainer.unwrapped.loss(seq)["loss"])


def test_resume_after_interruption_is_bit_identical(speech_data, units_only, tmp_path):
    root, model_dir, _ = speech_data

    def cfg(run):
        return _cfg(root, model_dir, output_dir=str(tmp_path / run), jsonl=str(units_only), steps=5, save_every=2,
                    monitor_every=2)

    straight = Trainer(cfg("a"))
    straight.train()
    interrupted = Trainer(cfg("b"))
    interrupted.train(until=3)  # the process dies here; only the step-2 checkpoint survives
    assert (tmp_path / "b" / "checkpoints" / "step-0000002" / "model" / "config.json").is_file()
    resumed = Trainer(cfg("b"))
    assert resumed.resume() and resumed.step == 2
    resumed.train()
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log_a = pd.read_csv(tmp_path / "a" / "train_log.csv")
    log_b = pd.read_csv(tmp_path / "b" / "train_log.csv").drop_duplicates("step", keep="last")
    for column in ("loss", "lm", "ctc", "grad_norm"):
        assert log_a[column].tolist() == log_b[column].tolist()
    # the monitor watched the LLM's TTT layer at steps 0, 2 and 4
    monitor = pd.read_csv(tmp_path / "a" / "monitor.csv")
    assert set(monitor["step"]) == {0, 2, 4} and set(monitor["layer"]) == {"llm.model.layers.3.self_attn.ttt"}
    assert {"W1_maxabs", "inner_loss_before", "inner_loss_after", "eta_mean"} <= set(monitor.columns)
    assert np.isfinite(monitor["inner_loss_after"]).all()


def test_train_cli_uses_the_one_trainer_for_speech(speech_data, tmp_path, capsys):
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


def test_train_cli_resumes_speech(speech_data, units_only, tmp_path, capsys):
    root, model_dir, _ = speech_data
    config = tmp_path / "speech.yaml"
    config.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "run"), "preset": None,
                                      "model_from": str(model_dir), "books_split": None, "jsonl": str(units_only),
                                      "steps": 4, "save_every": 2, "warmup": 1}))
    Trainer(TrainConfig.from_yaml(config)).train(until=3)  # interrupted after the step-2 checkpoint
    assert main(["train", str(config)]) == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert main(["train", str(config), "--resume"]) == 0
    out = capsys.readouterr().out
    assert "resumed at step 2" in out and "done: step 4" in out
    final = tmp_path / "run" / "final"
    assert is_omni_checkpoint(final) and load_omni(final).config.ttt_layers == [3]


def test_bad_speech_data_is_refused_by_name(speech_data, tmp_path):
    root, model_dir, extractor = speech_data
    with pytest.raises(ValueError, match="turn 1: a reply has audio but no units.*unit_extractor"):
        Trainer(_cfg(root, model_dir))  # the spoken reply of c1 needs a UnitExtractor or `units`
    user, reply = {"speaker": "user", "text": "hi"}, {"speaker": "assistant", "text": "yes.", "units": [1, 2]}
    cases = {
        "out of range": ([user, {**reply, "units": [UNITS]}], f"turn 1: unit id {UNITS} is out of range"),
        "user units": ([{**user, "units": [1]}, reply], "turn 0: a user turn .* has units"),
        "no audio file": ([{"speaker": "user", "audio": "missing.wav"}, reply], "'x': audio file not found"),
        "reply first": ([reply, user, reply], "starts with a reply"),
        "nothing to learn": ([user, user], "no assistant reply to learn from"),
    }
    for name, (turns, message) in cases.items():
        data = tmp_path / f"{name}.jsonl"
        data.write_text(json.dumps({"conversation_id": "x", "turns": turns}) + "\n")
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            Trainer(_cfg(root, model_dir, jsonl=str(data)))
    with pytest.raises(ValueError, match="reads conversations from `jsonl`"):
        Trainer(_cfg(root, model_dir, jsonl=None, books_split="train"))
    with pytest.raises(ValueError, match="unit_extractor is for speech training"):
        Trainer(TrainConfig.from_dict({"output_dir": str(tmp_path / "text"), "jsonl": str(root / "train.jsonl"),
                                       "books_split": None}), unit_extractor=extractor)


SCRIPT = textwrap.dedent("""
    import json, sys
    from ttt_omni.train.config import TrainConfig
    from ttt_omni.train.trainer import Trainer
    trainer = Trainer(TrainConfig.from_yaml(sys.argv[1]))
    conversation = trainer.task.batch(0)
    result = trainer.train()
    inner = {n: p for n, p in trainer.model.named_parameters() if ".inner." in n}
    print("REPORT" + json.dumps({
        "sharded": all(type(p).__name__ == "DTensor" for p in inner.values()),
        "inner_dtypes": sorted({str(p.dtype) for p in inner.values()}),
        "first": [s is conversation for s in trainer.task.sequences].index(True), "loss": result["loss"]}), flush=True)
""")


@pytest.mark.fsdp
@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_two_processes(speech_data, units_only, tmp_path, fsdp):
    root, model_dir, _ = speech_data
    config = tmp_path / "speech.yaml"
    config.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "run"), "preset": None,
                                      "model_from": str(model_dir), "books_split": None, "jsonl": str(units_only),
                                      "steps": 2, "save_every": 2, "warmup": 1, "monitor_every": 1, "fsdp": fsdp,
                                      "bf16": fsdp}))
    script = tmp_path / "run_speech.py"
    script.write_text(SCRIPT)
    proc = torchrun(script, config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = reports(proc.stdout)
    assert len(found) == 2 and all(np.isfinite(r["loss"]) for r in found)
    assert found[0]["first"] != found[1]["first"], "each process trains on its own conversation"
    if fsdp:
        assert all(r["sharded"] and r["inner_dtypes"] == ["torch.float32"] for r in found)
    final = load_omni(tmp_path / "run" / "final")
    assert final.llm.model.layers[3].self_attn.ttt.inner.W1.dtype == torch.float32
    assert (tmp_path / "run" / "checkpoints" / "step-0000002" / "rank1.pt").is_file()
    assert (tmp_path / "run" / "monitor.csv").is_file()
