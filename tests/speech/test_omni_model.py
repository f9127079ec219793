"""A tiny LLaMA-Omni-layout checkpoint: load, convert to TTT, chat two turns (speech and text), save, restore and
continue identically; streaming units equal offline units; the CLI end to end."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import AutoTokenizer

from ttt_omni.cli import main
from ttt_omni.conversation import ConversationStore
from ttt_omni.hf_compat import cache_kwargs
from ttt_omni.speech.audio import load_wav
from ttt_omni.speech.chat import OmniChat
from ttt_omni.speech.model import SPEECH_TOKEN_INDEX
from ttt_omni.speech.omni_checkpoint import (convert_omni_checkpoint, is_omni_checkpoint, load_omni, load_omni_state,
                                             save_omni)
from ttt_omni.speech.vocoder import UnitVocoder

from support.speech import tone
from ttt_omni.speech.tiny import UNITS, write_llama_omni


@pytest.fixture(scope="module")
def converted(llama_omni_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "ttt-omni"
    convert_omni_checkpoint(llama_omni_dir, out, ttt_layers=[2, 3], mini_batch_size=4)
    return out


def test_llama_omni_layout_loads(llama_omni_dir):
    assert is_omni_checkpoint(llama_omni_dir)
    model = load_omni(llama_omni_dir)
    assert model.config.ttt_layers == []  # the original LLM: every layer keeps attention
    with safe_open(str(llama_omni_dir / "model.safetensors"), "pt") as f:
        for name in ("model.speech_projector.linear1.weight", "speech_generator.layers.1.mlp.down_proj.weight",
                     "speech_generator.output_proj.bias", "model.layers.0.self_attn.q_proj.weight"):
            module_name = {"model.speech_projector.": "speech_projector.", "speech_generator.": "speech_generator.",
                           "model.layers.": "llm.model.layers."}
            prefix = next(p for p in module_name if name.startswith(p))
            param = dict(model.named_parameters())[module_name[prefix] + name[len(prefix):]]
            assert torch.equal(param, f.get_tensor(name))
        # openai-whisper names map onto the transformers encoder
        torch.testing.assert_close(model.speech_encoder.encoder.layers[1].self_attn.q_proj.weight,
                                   f.get_tensor("model.speech_encoder.blocks.1.attn.query.weight"))
    speech = model.encode_speech(tone(2.5))  # 3 one-second windows x 50 frames / 5
    assert speech.shape == (30, model.config.hidden_size) and speech.dtype == torch.float32


def test_encoder_from_the_pt_file_named_in_the_config(tmp_path, llama_omni_dir):
    src = write_llama_omni(tmp_path / "no-encoder", encoder_inside=False)
    reference = load_omni(llama_omni_dir)
    model = load_omni(src)  # resolves speech_encoder/tiny-whisper.pt relative to the checkpoint
    torch.testing.assert_close(model.encode_speech(tone(1.0)), reference.encode_speech(tone(1.0)))
    out = tmp_path / "converted"
    convert_omni_checkpoint(src, out, ttt_layers=[3], mini_batch_size=4)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "ttt_llama" and config["speech_encoder_config"]["n_audio_ctx"] == 50
    (src / "speech_encoder" / "tiny-whisper.pt").unlink()  # the converted model no longer needs it
    torch.testing.assert_close(load_omni(out).encode_speech(tone(1.0)), reference.encode_speech(tone(1.0)))


def test_convert_keeps_speech_parts(llama_omni_dir, converted):
    source, model = load_omni(llama_omni_dir), load_omni(converted)
    assert model.config.ttt_layers == [2, 3]
    for name in ("speech_projector", "speech_generator", "speech_encoder"):
        a, b = getattr(source, name).state_dict(), getattr(model, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    report = json.loads((converted / "conversion_report.json").read_text())
    assert any(k.startswith("speech_generator.") for k in report["carried"])
    assert "vocoder/" in report["files_copied"]  # the unit vocoder goes along: chat's default is MODEL/vocoder
    for part in ("g_00500000", "config.json"):
        assert (converted / "vocoder" / part).read_bytes() == (llama_omni_dir / "vocoder" / part).read_bytes()


def test_streamed_units_equal_offline_units(converted):
    model = load_omni(converted)
    tok = AutoTokenizer.from_pretrained(converted)
    ids = tok("User: hello there\n\nAssistant:", add_special_tokens=False)["input_ids"]
    embeds, _ = model.embed(ids[:3] + [SPEECH_TOKEN_INDEX] + ids[3:], [model.encode_speech(tone(1.0))])
    chunks = list(model.stream_reply(model.llm.make_cache(), embeds, max_new_tokens=13, chunk_tokens=4))
    assert [len(c.tokens) for c in chunks] == [4, 4, 4, 1] and chunks[-1].final
    # offline: the same reply's hidden states (the states that predicted each token) through the generator at once
    tokens = [t for c in chunks for t in c.tokens]
    cache = model.llm.make_cache()
    with torch.no_grad():
        model.llm.model(inputs_embeds=embeds[:, :3 + 10], **cache_kwargs(cache))
        prefix_last = model.llm.model(inputs_embeds=embeds[:, 13:], **cache_kwargs(cache),
                                      ).last_hidden_state[0, -1:]
        rest = model.llm.model(input_ids=torch.tensor([tokens[:-1]]), **cache_kwargs(cache),
                               ).last_hidden_state[0]
        states = torch.cat([prefix_last, rest])
        assert model.llm.lm_head(states).argmax(-1).tolist() == tokens
    assert [u for c in chunks for u in c.units] == model.speech_generator.predict(states)


def test_chat_two_turns_save_restore_continue(llama_omni_dir, converted, tmp_path, wav_file):
    def fresh_chat():
        model = load_omni(converted)
        tok = AutoTokenizer.from_pretrained(converted)
        vocoder = UnitVocoder.from_pretrained(llama_omni_dir / "vocoder")
        return OmniChat(model, tok, ConversationStore(model.llm, tmp_path / "conversations"), vocoder)

    chat = fresh_chat()
    first = chat.turn("alice", wav=wav_file, max_new_tokens=12)
    assert first.tokens and len(first.audio) == sum(
        int(chat.vocoder.durations(torch.tensor(c.units)).sum()) * chat.vocoder.hop_length
        for c in first.chunks if c.units)
    assert all(0 <= u < UNITS for u in first.units)
    second = chat.turn("alice", text="and the cat?", max_new_tokens=12)
    conv = chat.store.get("alice")
    assert conv.token_ids.count(SPEECH_TOKEN_INDEX) == 20  # 1.3 s: two 1-second windows x 10 positions
    assert conv.cache.get_seq_length() == len(conv.token_ids) - 1  # the reply's last token is pending
    chat.store.save("alice")
    third = chat.turn("alice", speech=tone(0.7, freq=330.0), max_new_tokens=12)

    restored = fresh_chat()  # a restart: new model object, the conversation read from disk
    again = restored.turn("alice", speech=tone(0.7, freq=330.0), max_new_tokens=12)
    assert again.tokens == third.tokens and again.units == third.units
    np.testing.assert_allclose(again.audio, third.audio, atol=1e-6)
    assert first.text is not None and second.tokens


def test_bad_turns(converted, tmp_path):
    model = load_omni(converted)
    chat = OmniChat(model, AutoTokenizer.from_pretrained(converted), ConversationStore(model.llm), None)
    with pytest.raises(ValueError, match="exactly one"):
        chat.turn("bob", text="hi", speech=tone(1.0), audio=False)
    with pytest.raises(ValueError, match="no vocoder"):
        chat.turn("bob", text="hi")
    with pytest.raises(ValueError, match="placeholders"):
        model.embed([1, SPEECH_TOKEN_INDEX], [])
    with pytest.raises(ValueError, match="must be built on"):
        OmniChat(model, None, ConversationStore(load_omni(converted).llm), None)


def test_cli_convert_and_chat(llama_omni_dir, tmp_path, wav_file, capsys):
    out = tmp_path / "cli-converted"
    assert main(["convert", str(llama_omni_dir), str(out), "--ttt-layers", "3", "--mini-batch-size", "4"]) == 0
    assert "speech encoder, projector and generator kept" in capsys.readouterr().out
    common = ["chat", "--model", str(out), "--conversation", "c1", "--conversations", str(tmp_path / "convs"),
              "--vocoder", str(llama_omni_dir / "vocoder"), "--max-new-tokens", "6"]
    assert main(common + ["--wav", str(wav_file)]) == 0
    reply = tmp_path / "convs" / "c1-reply.wav"
    assert load_wav(reply).size > 0 and (tmp_path / "convs" / "c1.safetensors").is_file()
    assert main(common + ["--text", "go on"]) == 0  # second turn, restored from disk
    assert main(common + ["--wav", str(tmp_path / "missing.wav")]) == 2
    assert "audio file not found" in capsys.readouterr().err
    shutil.rmtree(out / "vocoder")  # convert carried it along; without one, chat says how to give it
    assert main(["chat", "--model", str(out), "--conversation", "c2", "--text", "hi",
                 "--conversations", str(tmp_path / "convs")]) == 2
    assert "no vocoder" in capsys.readouterr().err


def test_model_save_round_trip_and_hour_scale_windows(converted, tmp_path):
    model = load_omni(converted)
    save_omni(model, tmp_path / "saved")
    again = load_omni(tmp_path / "saved")
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with safe_open(str(tmp_path / "saved" / "model.safetensors"), "pt") as f:
        assert "model.speech_encoder.blocks.0.attn.query.weight" in f.keys()  # LLaMA-Omni names on disk
    save_omni(model, tmp_path / "saved")  # overwriting replaces the directory whole
    back = load_omni_state(tmp_path / "saved")  # the files under the model's own names: what resuming training reads
    assert back.keys() == a.keys() and all(torch.equal(back[k], a[k]) for k in a)
    doubled = {k: v * 2 for k, v in a.items()}  # weights given apart from the model (e.g. gathered FSDP shards)
    save_omni(model, tmp_path / "doubled", state_dict=doubled)
    assert all(torch.equal(v, doubled[k]) for k, v in load_omni_state(tmp_path / "doubled").items())
    # 61 one-second windows (the real model: 30 s windows, so the same code path serves an hour in 120 windows)
    speech = model.encode_speech(tone(61.0))
    assert speech.shape == (610, model.config.hidden_size)
    torch.testing.assert_close(speech[600:], model.encode_speech(tone(61.0)[60 * 16000:]))


def test_try_speech_runs_the_whole_pipeline_in_one_command(tmp_path, capsys):
    root = tmp_path / "try"
    assert main(["try-speech", "--dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "meaningless" in out and "speech units" in out and (root / "ttt-omni" / "vocoder").is_dir()
    samples = load_wav(root / "reply.wav")
    assert samples.size > 0 and (root / "conversations" / "demo.safetensors").is_file()
    assert main(["chat", "--model", str(root / "ttt-omni"), "--conversation", "demo", "--conversations",
                 str(root / "conversations"), "--text", "Go on.", "--max-new-tokens", "4"]) == 0
    assert main(["try-speech", "--dir", str(root)]) == 2  # never over an existing directory
