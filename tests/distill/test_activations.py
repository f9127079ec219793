"""Activation collection: what the teacher's replaced layers read and write, its shapes, and resumable shards."""
import pytest
import torch
from support.distill import LAYERS, calibration, collect, settings
from transformers.models.llama.modeling_llama import LlamaAttention

from ttt_omni.distill import ActivationStore, layer_io, load_teacher

IDS = torch.randint(0, 4096, (2, 96), generator=torch.Generator().manual_seed(0))


def _hooked(model, layers):
    """(input, output) of each layer's self_attn during an ordinary forward."""
    seen = {}
    hooks = [model.model.layers[i].self_attn.register_forward_hook(
        lambda m, args, kwargs, out, i=i: seen.__setitem__(i, (kwargs["hidden_states"], out[0])), with_kwargs=True)
        for i in layers]
    with torch.no_grad():
        model(IDS)
    for h in hooks:
        h.remove()
    return seen


def test_full_attention_teacher_reads_and_writes_what_the_model_does(source):
    teacher = load_teacher(source)
    got, want = layer_io(teacher, IDS, LAYERS), _hooked(teacher, LAYERS)
    for i in LAYERS:
        torch.testing.assert_close(got[i][0], want[i][0], rtol=0, atol=1e-5)
        torch.testing.assert_close(got[i][1], want[i][1], rtol=0, atol=1e-5)
        assert got[i][0].shape == (2, 96, 128)


@pytest.mark.parametrize("sinks", [0, 4])
def test_windowed_teacher_keeps_its_window_below_and_full_attention_in_the_replaced_layers(source, sinks):
    """Bounded-memory mode: the layers below run windowed (as the hybrid will), the replaced ones attend in full."""
    teacher = load_teacher(source, attention_window=16, attention_sinks=sinks)
    got = layer_io(teacher, IDS, LAYERS)
    windowed = _hooked(teacher, [2])  # the same model run whole: every layer windowed
    torch.testing.assert_close(got[2][0], windowed[2][0], rtol=0, atol=1e-5)  # layers 0-1 windowed: same input
    assert not torch.allclose(got[2][1], windowed[2][1], atol=1e-3)  # layer 2 itself attends in full
    rope = teacher.model.rotary_emb(got[2][0], torch.arange(96)[None])
    with torch.no_grad():
        full, _ = LlamaAttention.forward(teacher.model.layers[2].self_attn, got[2][0], rope, None)
    torch.testing.assert_close(got[2][1], full, rtol=0, atol=1e-5)
    full_teacher = layer_io(load_teacher(source), IDS, LAYERS)
    assert not torch.allclose(got[3][0], full_teacher[3][0], atol=1e-3)


def test_shards_hold_every_layer_in_bf16(store):
    assert [p.name for p in store.shards("train")] == ["train-00000.safetensors", "train-00001.safetensors"]
    assert [store.rows(p) for p in store.shards("train")] == [2, 1]
    assert len(store.shards("validation")) == 1 and store.complete()
    for layer in LAYERS:
        x, y = store.read(store.shards("train")[0], layer)
        assert x.shape == y.shape == (2, 64, 128) and x.dtype == torch.float32
        assert store.read(store.shards("train")[0], layer, rows=[1])[0].shape == (1, 64, 128)
    from safetensors import safe_open
    with safe_open(str(store.shards("train")[0]), "pt") as f:
        assert f.get_slice("layers.2.input").get_dtype() == "BF16"
        assert f.get_tensor("tokens").shape == (2, 64)


def test_an_interrupted_collection_writes_only_the_missing_shards(source, corpus, tmp_path):
    folder = tmp_path / "acts"
    first = collect(source, corpus, folder)
    reference = {p.name: p.read_bytes() for p in folder.glob("*.safetensors")}
    victim = first.shards("train")[1]
    victim.unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.safetensors")}
    again = ActivationStore(folder, first.settings)
    assert again.missing() == [victim]
    sequences = calibration(source, first.settings)
    assert again.collect(load_teacher(source), sequences.train, sequences.validation) == 1
    assert {p.name: p.read_bytes() for p in folder.glob("*.safetensors")} == reference
    assert all(p.stat().st_mtime_ns == stamps[p.name] for p in folder.glob("*.safetensors") if p != victim)


def test_a_store_grows_and_refuses_other_settings(source, corpus, tmp_path):
    folder = tmp_path / "acts"
    small = collect(source, corpus, folder)
    kept = {p.name: p.read_bytes() for p in folder.glob("*.safetensors")}
    bigger = collect(source, corpus, folder, train_sequences=5)
    assert len(bigger.shards("train")) == 3
    first = small.shards("train")[0].name
    assert (folder / first).read_bytes() == kept[first]  # the same first sequences: the shard was not rewritten
    with pytest.raises(ValueError, match=r"other settings \(\['seq_len'\] differ\)"):
        ActivationStore(folder, settings(source, corpus, seq_len=32))
