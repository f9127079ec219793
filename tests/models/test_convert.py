"""`ttt_omni.convert` on tiny Llama checkpoints written by transformers in the real on-disk layout."""
import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from ttt_omni.cli import main as cli_main
from ttt_omni.convert import REPORT_NAME, convert_checkpoint
from ttt_omni.hf_compat import output_cache
from ttt_omni.models import TTTLlamaForCausalLM


def _write_llama(path, dtype=torch.float32, tie=False):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tie,
                         max_position_embeddings=512)
    model = LlamaForCausalLM(config).to(dtype)
    model.save_pretrained(path)
    (path / "tokenizer_config.json").write_text("{}")
    return model


@pytest.fixture
def llama_dir(tmp_path):
    src = tmp_path / "llama"
    _write_llama(src)
    return src


def test_convert_copies_initialises_and_reports(llama_dir, tmp_path):
    out = tmp_path / "hybrid"
    report = convert_checkpoint(llama_dir, out, ttt_layers=[2, 3], mini_batch_size=8, seed=7)
    src, dst = load_file(llama_dir / "model.safetensors"), load_file(out / "model.safetensors")
    for key in report.copied:
        assert torch.equal(src[key], dst[key]), key
    kept = {k for k in src if not k.startswith(("model.layers.2.self_attn", "model.layers.3.self_attn"))}
    assert set(report.copied) == kept
    assert set(report.dropped) == {f"model.layers.{i}.self_attn.{p}_proj.weight" for i in (2, 3) for p in "qkvo"}
    for i in (2, 3):
        a, t = f"model.layers.{i}.self_attn.", f"model.layers.{i}.self_attn.ttt."
        assert torch.equal(dst[t + "q_proj.weight"], src[a + "q_proj.weight"])
        assert torch.equal(dst[t + "o_proj.weight"], src[a + "o_proj.weight"])
        for p in ("k", "v"):  # 2 KV heads of dim 16 -> 4 heads: head h reads KV head h // 2
            kv = src[a + f"{p}_proj.weight"].view(2, 16, 64)
            assert torch.equal(dst[t + f"{p}_proj.weight"].view(4, 16, 64), kv[[0, 0, 1, 1]])
        assert torch.count_nonzero(dst[t + "inner.b1"]) == 0
        assert 0 < dst[t + "inner.W1"].std() < 0.05 and dst[t + "inner.W1"].dtype == torch.float32
    assert "random normal" in report.initialised["model.layers.2.self_attn.ttt.inner.W1"]
    assert (out / "tokenizer_config.json").is_file() and "tokenizer_config.json" in report.files_copied
    assert json.loads((out / REPORT_NAME).read_text())["ttt_layers"] == [2, 3]

    model = AutoModelForCausalLM.from_pretrained(out)
    assert isinstance(model, TTTLlamaForCausalLM) and model.config.ttt_layers == [2, 3]
    assert model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=5, do_sample=False).shape == (1, 8)


def test_convert_seed_is_reproducible(llama_dir, tmp_path):
    convert_checkpoint(llama_dir, tmp_path / "a", ttt_layers=[3], seed=1)
    convert_checkpoint(llama_dir, tmp_path / "b", ttt_layers=[3], seed=1)
    convert_checkpoint(llama_dir, tmp_path / "c", ttt_layers=[3], seed=2)
    a, b, c = (load_file(tmp_path / n / "model.safetensors") for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model.layers.3.self_attn.ttt.inner.W1"], c["model.layers.3.self_attn.ttt.inner.W1"])


def test_converted_bf16_model_holds_fp32_ttt_state(tmp_path):
    src = tmp_path / "llama_bf16"
    _write_llama(src, dtype=torch.bfloat16, tie=True)
    convert_checkpoint(src, tmp_path / "hybrid", ttt_layers=[1, 3], mini_batch_size=4)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hybrid", dtype=torch.bfloat16)
    assert model.model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    with torch.no_grad():
        out = model(torch.tensor([[5, 6, 7, 8, 9, 10]]), use_cache=True)
    for i in (1, 3):
        state = output_cache(out).get_ttt_state(i)
        assert state.seen == 6 and {t.dtype for t in state.tensors().values()} == {torch.float32}
    assert model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=4, do_sample=False).shape == (1, 7)


def test_convert_writes_shards_that_load(llama_dir, tmp_path):
    convert_checkpoint(llama_dir, tmp_path / "sharded", ttt_layers=[3], max_shard_bytes=100_000)
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    convert_checkpoint(llama_dir, tmp_path / "single", ttt_layers=[3])
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "sharded")
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "single")
    x = torch.tensor([[3, 1, 4, 1, 5]])
    with torch.no_grad():
        assert torch.equal(a(x).logits, b(x).logits)


def test_cli_convert(llama_dir, tmp_path, capsys):
    assert cli_main(["convert", str(llama_dir), str(tmp_path / "out"), "--ttt-layers", "2-3",
                     "--ttt-type", "mlp", "--attention-window", "32"]) == 0
    assert "TTT layers [2, 3]" in capsys.readouterr().out
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (config["model_type"], config["ttt_type"], config["attention_window"]) == ("ttt_llama", "mlp", 32)
    assert cli_main(["convert", str(tmp_path / "nope"), str(tmp_path / "out2")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_missing_weights_is_a_clear_error(llama_dir, tmp_path):
    (llama_dir / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="has no weights: expected model.safetensors"):
        convert_checkpoint(llama_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_corrupt_safetensors_is_a_clear_error(llama_dir, tmp_path):
    path = llama_dir / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="model.safetensors is not a readable safetensors file"):
        convert_checkpoint(llama_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == [llama_dir]


def test_bad_layers_and_existing_output_are_clear_errors(llama_dir, tmp_path):
    with pytest.raises(Exception, match=r"ttt_layers \[4\] are out of range"):
        convert_checkpoint(llama_dir, tmp_path / "out", ttt_layers=[3, 4])
    with pytest.raises(Exception, match="ttt_type='rnn' is unknown"):
        convert_checkpoint(llama_dir, tmp_path / "out", ttt_type="rnn")
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists"):
        convert_checkpoint(llama_dir, existing)
    assert (existing / "keep.txt").read_text() == "mine"


def test_non_llama_config_is_a_clear_error(llama_dir, tmp_path):
    config = json.loads((llama_dir / "config.json").read_text())
    config["model_type"] = "gpt2"
    (llama_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="does not describe a Llama model"):
        convert_checkpoint(llama_dir, tmp_path / "out")


def test_llama_omni_speech_tensors_are_carried(llama_dir, tmp_path):
    """LLaMA-Omni = Llama + speech encoder/projector tensors and config fields: all kept unchanged for its model."""
    from safetensors.torch import save_file
    tensors = load_file(llama_dir / "model.safetensors")
    tensors["model.speech_projector.linear1.weight"] = torch.randn(64, 80)
    save_file(tensors, str(llama_dir / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((llama_dir / "config.json").read_text())
    config.update(model_type="omni_speech2s_llama", speech_encoder="models/speech_encoder/large-v3.pt")
    (llama_dir / "config.json").write_text(json.dumps(config))
    report = convert_checkpoint(llama_dir, tmp_path / "out", ttt_layers=[3])
    assert report.carried == ["model.speech_projector.linear1.weight"]
    out = load_file(tmp_path / "out" / "model.safetensors")
    assert torch.equal(out["model.speech_projector.linear1.weight"], tensors["model.speech_projector.linear1.weight"])
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (saved["model_type"], saved["speech_encoder"]) == ("ttt_llama", "models/speech_encoder/large-v3.pt")
