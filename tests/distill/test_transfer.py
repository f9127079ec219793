"""Attention transfer: the loss, one step lowering it, both schedules taking the same steps, and a resumed run
ending bit-identical to an uninterrupted one."""
import pandas as pd
import pytest
import torch
from support.distill import LAYERS, fresh_layers
from safetensors.torch import load_file

import ttt_omni.distill.transfer as transfer_module
from ttt_omni.distill import LayerTransfer, TransferSettings, transfer_loss
from ttt_omni.distill.transfer import validation_loss


def test_transfer_loss_by_hand():
    target = torch.tensor([[[3.0, 4.0], [0.0, 2.0]]])
    assert transfer_loss(torch.zeros_like(target), target)["rel_mse"] == 1.0  # an all-zero output scores 1
    pred = torch.tensor([[[3.0, 0.0], [0.0, 2.0]]])
    parts = transfer_loss(pred, target, cosine_weight=0.5)
    assert parts["rel_mse"] == pytest.approx(16 / 29)
    assert parts["cosine"] == pytest.approx((0.6 + 1.0) / 2)
    assert parts["loss"] == pytest.approx(16 / 29 + 0.5 * (1 - 0.8))


def _settings(**kw):
    return TransferSettings(**{"steps": 4, "lr": 1e-3, "warmup": 1, "save_every": 2, "monitor_every": 2,
                               "validate_every": 2, **kw})


def test_one_step_lowers_the_error_on_its_batch(store, converted_layers, tmp_path):
    shard, rows = transfer_module.batch_rows(store, _settings(), 0)
    layer = converted_layers[2]
    x, y = store.read(shard, 2, rows)
    with torch.no_grad():
        before = transfer_loss(layer(x)[0], y)["rel_mse"].item()
    LayerTransfer({2: layer}, store, tmp_path / "t", _settings(steps=1)).run()
    with torch.no_grad():
        after = transfer_loss(layer(x)[0], y)["rel_mse"].item()
    assert after < before


def test_training_lowers_the_validation_error_and_logs(store, converted_layers, tmp_path):
    before = {i: validation_loss(layer, i, store)["val_rel_mse"] for i, layer in converted_layers.items()}
    results = LayerTransfer(converted_layers, store, tmp_path / "t", _settings(steps=12, lr=3e-3)).run()
    for i in LAYERS:
        assert results[i]["before_val_rel_mse"] == pytest.approx(before[i])
        assert results[i]["after_val_rel_mse"] < before[i]
        assert results[i]["tokens"] == 12 * 64
        assert (tmp_path / "t" / f"layer-{i}.safetensors").is_file()
    for name in ("distill_log.csv", "monitor.csv", "validation.csv", "summary.csv", "settings.json"):
        assert (tmp_path / "t" / name).is_file(), name
    assert all(p.dtype == torch.float32 for layer in converted_layers.values() for p in layer.inner.parameters())


def test_both_schedules_take_the_same_steps(store, source, tmp_path):
    layerwise, joint = fresh_layers(source, tmp_path / "a"), fresh_layers(source, tmp_path / "b")
    LayerTransfer(layerwise, store, tmp_path / "a" / "t", _settings()).run()
    LayerTransfer(joint, store, tmp_path / "b" / "t", _settings(schedule="joint")).run()
    for i in LAYERS:
        for name, p in layerwise[i].state_dict().items():
            torch.testing.assert_close(joint[i].state_dict()[name], p, rtol=0, atol=1e-6)


def _rows(path):
    """A log's rows without its timings."""
    return pd.read_csv(path).drop(columns=["tokens_per_s"], errors="ignore").to_dict("records")


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(store, source, tmp_path, monkeypatch):
    """Stopped in layer 3's step 4 (its step-2 checkpoint saved, step 3 logged), then run again by a new process:
    the same weights, results and logs (each step once) as a run that was never stopped."""
    whole = fresh_layers(source, tmp_path / "a")
    expected = LayerTransfer(whole, store, tmp_path / "a" / "t", _settings(steps=6)).run()

    interrupted = fresh_layers(source, tmp_path / "b")
    real = transfer_module.batch_rows

    def stop_at_step_3_of_layer_3(store_, s, step):
        if step == 3 and stop_at_step_3_of_layer_3.layer == 3:
            raise KeyboardInterrupt
        if step == 5:
            stop_at_step_3_of_layer_3.layer = 3
        return real(store_, s, step)
    stop_at_step_3_of_layer_3.layer = 2
    monkeypatch.setattr(transfer_module, "batch_rows", stop_at_step_3_of_layer_3)
    with pytest.raises(KeyboardInterrupt):
        LayerTransfer(interrupted, store, tmp_path / "b" / "t", _settings(steps=6)).run()
    assert (tmp_path / "b" / "t" / "layer-2.safetensors").is_file()
    assert not (tmp_path / "b" / "t" / "layer-3.safetensors").is_file()
    monkeypatch.setattr(transfer_module, "batch_rows", real)
    resumed = fresh_layers(source, tmp_path / "c")  # a new process: fresh layers, state from the work folder
    assert LayerTransfer(resumed, store, tmp_path / "b" / "t", _settings(steps=6)).run() == expected
    for i in LAYERS:
        a = load_file(str(tmp_path / "a" / "t" / f"layer-{i}.safetensors"))
        b = load_file(str(tmp_path / "b" / "t" / f"layer-{i}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), i
    for name in ("summary.csv", "validation.csv", "monitor.csv", "distill_log.csv"):
        assert _rows(tmp_path / "b" / "t" / name) == _rows(tmp_path / "a" / "t" / name), name


def test_other_settings_in_the_same_folder_are_refused(store, converted_layers, tmp_path):
    LayerTransfer({2: converted_layers[2]}, store, tmp_path / "t", _settings(steps=1)).run()
    with pytest.raises(ValueError, match="other settings"):
        LayerTransfer({2: converted_layers[2]}, store, tmp_path / "t", _settings(steps=2)).run()


@pytest.mark.parametrize("kw, match", [({"schedule": "random"}, "schedule"), ({"steps": 0}, "steps=0"),
                                        ({"lr": 0}, "lr=0"), ({"cosine_weight": -1}, "cosine_weight")])
def test_bad_settings_are_clear_errors(store, converted_layers, tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        LayerTransfer(converted_layers, store, tmp_path, _settings(**kw))
