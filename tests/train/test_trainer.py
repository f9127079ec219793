"""The trainer: learns, resumes bit-identically, keeps TTT inner params float32, and stops on monitor alarms."""
import pandas as pd
import pytest
import torch

from ttt_omni.train.config import TrainConfig
from ttt_omni.train.monitor import MonitorAlarm
from ttt_omni.train.trainer import Trainer


def _weights(trainer):
    return {k: v.detach().clone() for k, v in trainer.unwrapped.state_dict().items()}


def test_a_few_steps_lower_the_loss(tiny_train_config):
    cfg = tiny_train_config(steps=1, save_every=100)
    trainer = Trainer(cfg)
    batch = trainer.task.packer.batch(0)
    with torch.no_grad():
        before = trainer.loss(batch).item()
    trainer.carried = {}
    for _ in range(8):  # repeated steps on one batch: the loss must fall
        loss = trainer.loss(batch)
        trainer.carried = {}
        trainer.optimizer.zero_grad()
        trainer.accelerator.backward(loss)
        trainer.optimizer.step()
    with torch.no_grad():
        after = trainer.loss(batch).item()
    assert after < before - 0.1


def test_resume_after_interruption_is_bit_identical(tiny_train_config, tmp_path):
    straight = Trainer(tiny_train_config(output_dir=str(tmp_path / "a"), steps=6, save_every=3))
    straight.train()
    interrupted = Trainer(tiny_train_config(output_dir=str(tmp_path / "b"), steps=6, save_every=3))
    interrupted.train(until=3)  # the process dies here; only the step-3 checkpoint survives
    resumed = Trainer(tiny_train_config(output_dir=str(tmp_path / "b"), steps=6, save_every=3))
    assert resumed.resume() and resumed.step == 3
    assert resumed.carried, "the TTT states carried across windows are part of the checkpoint"
    resumed.train()
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log_a = pd.read_csv(tmp_path / "a" / "train_log.csv")
    log_b = pd.read_csv(tmp_path / "b" / "train_log.csv")
    assert log_a["loss"].tolist() == log_b["loss"].tolist()


def test_a_run_killed_between_checkpoints_logs_each_step_once_after_resuming(tiny_train_config, tmp_path):
    """Killed after step 5 with its last checkpoint at step 3: steps 4-5 (train_log) and 4 (monitor) were logged
    and are trained again; the logs end as an uninterrupted run's, byte for byte."""
    straight = Trainer(tiny_train_config(output_dir=str(tmp_path / "a"), steps=6, save_every=3, monitor_every=1))
    expected = straight.train()
    Trainer(tiny_train_config(output_dir=str(tmp_path / "b"), steps=6, save_every=3, monitor_every=1)).train(until=5)
    with (tmp_path / "b" / "train_log.csv").open("a") as f:
        f.write("6,2.5")  # and a row cut short by the kill
    resumed = Trainer(tiny_train_config(output_dir=str(tmp_path / "b"), steps=6, save_every=3, monitor_every=1))
    assert resumed.resume() and resumed.step == 3
    assert pd.read_csv(tmp_path / "b" / "train_log.csv")["step"].tolist() == [1, 2, 3]
    assert resumed.train()["loss"] == expected["loss"]
    for name in ("train_log.csv", "monitor.csv"):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "a" / name).read_bytes(), name
    assert sorted(set(pd.read_csv(tmp_path / "b" / "monitor.csv")["step"])) == [0, 1, 2, 3, 4, 5]
    done = Trainer(tiny_train_config(output_dir=str(tmp_path / "b"), steps=6, save_every=3, monitor_every=1))
    assert done.resume() and done.train()["loss"] == expected["loss"]  # nothing left to train: the log's last row


def test_inner_params_stay_float32_through_bf16_autocast_steps(tiny_train_config):
    trainer = Trainer(tiny_train_config(bf16=True, steps=2, save_every=100))
    trainer.train()
    inner = {n: p for n, p in trainer.unwrapped.named_parameters() if ".inner." in n}
    assert inner and all(p.dtype == torch.float32 for p in inner.values())
    assert all(t.dtype == torch.float32 for s in trainer.carried.values() for t in s.tensors().values())
    group = [g for g in trainer.optimizer.param_groups if g.get("name") == "ttt_inner_fp32"]
    assert group and {id(p) for p in group[0]["params"]} == {id(p) for p in inner.values()}


def test_train_only_ttt_freezes_the_rest(tiny_train_config):
    trainer = Trainer(tiny_train_config(train_only_ttt=True, steps=1, save_every=100))
    before = _weights(trainer)
    trainer.train()
    after = _weights(trainer)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".self_attn.ttt." in k for k in changed)


def test_monitor_writes_csv_and_stops_on_nan(tiny_train_config, tmp_path):
    trainer = Trainer(tiny_train_config(steps=4, save_every=100, monitor_every=2))
    trainer.train()
    df = pd.read_csv(tmp_path / "run" / "monitor.csv")
    assert set(df["step"]) == {0, 2}
    assert {"W1_maxabs", "b1_mean", "inner_loss_before", "inner_loss_after", "eta_mean"} <= set(df.columns)

    poisoned = Trainer(tiny_train_config(output_dir=str(tmp_path / "nan"), steps=4, monitor_every=1))
    layer = next(iter(poisoned.ttt.values()))
    with torch.no_grad():
        layer.inner.b1[0, 0, 0] = float("nan")
    with pytest.raises(MonitorAlarm, match="NaN"):
        poisoned.train()
    assert (tmp_path / "nan" / "checkpoints" / "last-good" / "trainer_state.pt").is_file()


def test_bad_config_errors(tmp_path):
    with pytest.raises(ValueError, match=r"config: contxt: unknown key; expected one of output_dir, seed"):
        TrainConfig.from_dict({"output_dir": "x", "contxt": 5})
    with pytest.raises(ValueError, match="config: output_dir: required"):
        TrainConfig.from_dict({})
    bad = tmp_path / "bad.yaml"
    bad.write_text("output_dir: [unclosed\n")
    with pytest.raises(ValueError, match="malformed YAML"):
        TrainConfig.from_yaml(bad)
    with pytest.raises(FileNotFoundError, match="nope.yaml.* not found: expected a YAML file or the name of a bundled"):
        TrainConfig.from_yaml(tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match="no stage 3"):
        TrainConfig.from_dict({"output_dir": "x", "stages": [{"stage": 1, "context": 128}]}, stage=3)


@pytest.mark.parametrize("option, message", [
    ("steps: ten", "steps: expected an integer, got 'ten'"),
    ("lr: fast", "lr: expected a number, got 'fast'"),
    ("batch_size: 2.5", "batch_size: expected an integer, got 2.5"),
    ("model_overrides: 5", "model_overrides: expected a mapping, got 5"),
    ("bf16: 'yes'", "bf16: expected true or false, got 'yes'"),
    ("max_abs: big", "max_abs: expected a number, got 'big'"),
    ("stages: 5", "stages: expected a list, got 5"),
    ("context: 0", "context: expected a number >= 1, got 0"),
    ("model_overrides: {hidden_sise: 64}", "model_overrides: unknown key(s) ['hidden_sise']; expected TTT-Llama"),
    ("model_overrides: {hidden_size: big}", "model_overrides: Validation error for field 'hidden_size'"),
    ("stages: [{stage: 1, lr: fast}]", "bad.yaml, stage 1: lr: expected a number, got 'fast'"),
    ("stages: [{stage: 1, colour: red}]", "bad.yaml, stage 1: unknown key(s) ['colour']"),
    ("stages: [{lr: 0.1}]", "stages[0]: `stage` must be a stage number >= 1, got None"),
])
def test_wrong_types_in_a_training_yaml_are_one_line_exit_2(tmp_path, capsys, option, message):
    from ttt_omni.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(f"output_dir: {tmp_path / 'run'}\n{option}\n")
    with pytest.raises(ValueError) as e:
        TrainConfig.from_yaml(bad)
    assert message in str(e.value) and str(bad) in str(e.value)
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ttt-omni train: error:") and message in err and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_overrides_are_checked_like_the_file(tmp_path, capsys):
    from ttt_omni.cli import main

    assert main(["train", "tiny-ttt", "--set", "steps=ten", "--set", f"output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert "tiny-ttt.yaml with overrides" in err and "steps: expected an integer, got 'ten'" in err
    assert main(["train", "tiny-ttt", "--set", "stage=2"]) == 2
    assert "stage cannot be overridden" in capsys.readouterr().err
    assert TrainConfig.from_yaml("tiny-ttt", overrides={"lr": "3e-4"}).lr == 3e-4  # YAML reads 3e-4 as text


def test_cli_train_and_monitor_plot(tiny_train_config, tmp_path, conversations_jsonl, capsys):
    import yaml

    from ttt_omni.cli import main
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "cli-run"), "jsonl": str(conversations_jsonl), "books_split": None,
        "bpe_vocab_size": 300, "context": 64, "batch_size": 2, "steps": 3, "save_every": 3, "monitor_every": 1,
        "model_overrides": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                            "num_attention_heads": 2, "num_key_value_heads": 1, "ttt_layers": [1],
                            "mini_batch_size": 16}}))
    assert main(["train", str(cfg)]) == 0
    assert (tmp_path / "cli-run" / "final" / "model.safetensors").is_file()
    err = capsys.readouterr().err  # what it does before its progress bar, from the first second
    steps = ["reading conversations", "training a byte-level BPE tokenizer", "building the model", "tokenising"]
    assert [err.index(f"train: {s}") for s in steps] == sorted(err.index(f"train: {s}") for s in steps)
    assert err.index("train: tokenising") < err.index("%|")  # all before the progress bar
    log = (tmp_path / "cli-run" / "train_log.csv").read_text()
    assert main(["train", str(cfg)]) == 2, "a second fresh run into the same output_dir is refused"
    assert (tmp_path / "cli-run" / "train_log.csv").read_text() == log
    assert main(["train", str(cfg), "--resume"]) == 0  # already at its last step: nothing to do, nothing lost
    assert main(["monitor", "plot", str(tmp_path / "cli-run")]) == 0
    assert "token_scale_last" in pd.read_csv(tmp_path / "cli-run" / "monitor.csv").columns
    png = tmp_path / "cli-run" / "monitor.png"
    assert png.stat().st_size > 10_000
    assert main(["monitor", "plot", str(tmp_path / "nowhere")]) == 2
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2


@pytest.mark.parametrize("reset_every", [None, 1])
def test_state_carried_across_windows_unless_reset(tiny_train_config, reset_every):
    trainer = Trainer(tiny_train_config(state_reset_every=reset_every))
    first, second = trainer.task.batch(0), trainer.task.batch(1)
    assert not second["reset"].any(), "both lanes continue their conversation at step 1"
    with torch.no_grad():
        trainer.loss(first)
        carried_loss = trainer.loss(second).item()
        trainer.carried = {}
        fresh_loss = trainer.loss(second).item()
    if reset_every == 1:
        assert carried_loss == fresh_loss
    else:
        assert carried_loss != fresh_loss
