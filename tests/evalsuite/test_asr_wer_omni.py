"""`asr_wer` with system omni, and the `omni:PATH` model spec, on the tiny random LLaMA-Omni-layout checkpoint that
tests/speech writes (and its TTT conversion). A random model's speech is noise: the pipeline must run, write WAVs,
store rows and give a finite WER >= 0 overall and per time segment; no particular value is expected."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil

import pytest
from scipy.io import wavfile

from evalsuite.errors import EvalsuiteError, ModelSpecError, TaskSpecError
from evalsuite.models import load_model
from evalsuite.registry import Registry, validate_spec
from evalsuite.runner import run_task
from evalsuite.store import Store

from ttt_omni.speech.tiny import tiny_whisper, write_llama_omni, write_openai_whisper


def small_spec(**params):
    spec = Registry().get("asr_wer")
    spec = dataclasses.replace(spec, params={**spec.params, **params}, source="test")
    validate_spec(spec)
    return spec


@pytest.fixture(scope="module")
def converted_omni_dir(llama_omni_dir, tmp_path_factory):
    from ttt_omni.speech.omni_checkpoint import convert_omni_checkpoint

    out = tmp_path_factory.mktemp("omni-ttt") / "ttt-omni"
    convert_omni_checkpoint(llama_omni_dir, out, ttt_layers=[2, 3], mini_batch_size=4)
    assert (out / "vocoder" / "g_00500000").is_file()  # the conversion carries the vocoder along
    return out


@pytest.mark.parametrize("layout", ["llama-omni", "converted"])
def test_omni_spec_loads_either_layout(layout, llama_omni_dir, converted_omni_dir):
    path = llama_omni_dir if layout == "llama-omni" else converted_omni_dir
    loaded = load_model(f"omni:{path}")
    assert loaded.omni is not None and loaded.model is loaded.omni.llm
    assert loaded.model_id == f"omni:{path.name}" and len(loaded.model_hash) == 16
    assert loaded.spec == f"omni:{path}"
    # the original layout is all attention (its context is its limit); the TTT conversion streams any length
    assert loaded.context_limit == (4096 if layout == "llama-omni" else None)
    assert load_model(f"omni:{path}").model_hash == loaded.model_hash


def test_omni_hash_covers_an_encoder_outside_the_directory(tmp_path):
    path = write_llama_omni(tmp_path / "omni", encoder_inside=False)
    encoder = tmp_path / "elsewhere" / "large-v3.pt"
    encoder.parent.mkdir()
    shutil.move(path / "speech_encoder" / "tiny-whisper.pt", encoder)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "speech_encoder": str(encoder)}))
    first = load_model(f"omni:{path}").model_hash
    write_openai_whisper(encoder, tiny_whisper(seed=1))
    assert load_model(f"omni:{path}").model_hash != first
    encoder.unlink()
    with pytest.raises(ModelSpecError, match=r"omni:.*cannot be loaded .*large-v3\.pt"):
        load_model(f"omni:{path}")


def test_bad_omni_specs_are_named(tmp_path, micro_llama_dir):
    with pytest.raises(ModelSpecError, match="directory not found"):
        load_model(f"omni:{tmp_path / 'nowhere'}")
    with pytest.raises(ModelSpecError, match="not a LLaMA-Omni checkpoint"):
        load_model(f"omni:{micro_llama_dir}")
    with pytest.raises(ModelSpecError, match="omni:PATH"):
        load_model("omni:")


@pytest.mark.parametrize("layout,turn", [("llama-omni", "text"), ("converted", "speech")])
def test_asr_wer_on_the_omni_model(layout, turn, llama_omni_dir, converted_omni_dir, tmp_path):
    path = llama_omni_dir if layout == "llama-omni" else converted_omni_dir
    spec = small_spec(n_prompts=2, reply_words=12, reply_tokens=12, turn=turn, n_boot=20, segment_s=1,
                      audio_dir=str(tmp_path / "audio"))
    store = Store(tmp_path / "results.db")
    result = run_task(spec, f"omni:{path}", store=store, progress=False)
    assert result.status == "finished"
    run = store.run(result.run_id)
    assert run["model_id"] == f"omni:{path.name}"
    config = run["config"] if isinstance(run["config"], dict) else json.loads(run["config"])
    assert config["system"] == "omni" and config["vocoder"].endswith("vocoder") and config["vocoder_hash"]

    m = store.metrics(run_id=result.run_id)
    overall = m[m["bin"] == ""].set_index("name")
    assert set(overall.index) == {"wer_mean", "wer_corpus"}
    assert all(math.isfinite(v) and v >= 0 for v in overall["value"])
    segments = m[m["bin"].str.startswith("t=")]
    assert not segments.empty and (segments["name"] == "wer_corpus").all()
    assert segments["bin"].iloc[0] == "t=0-1s"

    samples = store.samples(result.run_id)
    assert len(samples.query("name == 'utterance'")) == 2
    assert not samples.query("name == 'segment'").empty
    outputs = [json.loads(d) for d in samples.query("name == 'output'")["data"]]
    assert len(outputs) == 2
    for out in outputs:
        assert out["text"].strip() and out["prompt"] and out["turn"] == turn and 1 <= out["tokens"] <= 12
        rate, audio = wavfile.read(out["audio"])
        assert rate == 16000 and out["audio"].startswith(str(tmp_path / "audio"))
        assert (len(audio) > 0) == (out["units"] > 0)
        if turn == "speech":
            assert wavfile.read(out["prompt_audio"])[1].size > 0


def test_omni_system_needs_an_omni_model_and_a_vocoder(llama_omni_dir, micro_ttt_dir, tmp_path):
    store = Store(tmp_path / "r.db")
    with pytest.raises(TaskSpecError, match="system omni needs an Omni model"):
        run_task(small_spec(system="omni"), f"ttt:{micro_ttt_dir}", store=store, progress=False)
    with pytest.raises(TaskSpecError, match="turn: speech is for system omni"):
        run_task(small_spec(turn="speech"), f"ttt:{micro_ttt_dir}", store=store, progress=False)
    with pytest.raises(TaskSpecError, match="reply: generate is for system espeak"):
        run_task(small_spec(reply="generate"), f"omni:{llama_omni_dir}", store=store, progress=False)
    with pytest.raises(EvalsuiteError, match="needs a unit vocoder.*nowhere"):
        run_task(small_spec(vocoder=str(tmp_path / "nowhere")), f"omni:{llama_omni_dir}", store=store,
                 progress=False)
    assert store.runs().empty  # refused before a run was recorded
    with pytest.raises(TaskSpecError, match="params.turn: expected one of .text. or .speech., got .video."):
        small_spec(turn="video")
