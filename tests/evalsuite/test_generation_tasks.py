"""The generation-quality tasks end to end on micro models (CPU, small sizes): rows in the store, output samples for
human eval, a comparison that finds a degradation and no difference between identical systems, and bad input."""

import dataclasses
import json

import pytest
import torch

from evalsuite.kinds.generation import GenerationError
from evalsuite.models import load_model
from evalsuite.registry import Registry, validate_spec
from evalsuite.runner import run_task
from evalsuite.store import Store
from ttt_omni.data_manifest import books

SMALL = dict(n_prompts=2, prompt_tokens=32, window=32, n_boot=50)


def small_spec(name: str, lengths=(64,), **params):
    spec = Registry().get(name)
    spec = dataclasses.replace(spec, lengths=list(lengths), params={**spec.params, **params}, source="test")
    validate_spec(spec)
    return spec


def run(spec, model, tmp_path, **kw):
    store = Store(tmp_path / "results.db")
    result = run_task(spec, model, store=store, progress=False, **kw)
    return store, result, store.metrics(run_id=result.run_id)


@pytest.mark.parametrize("task,model", [("degeneration", "ttt"), ("coherence", "hf"), ("entity_drift", "ttt")])
def test_text_tasks_end_to_end(task, model, request, tmp_path):
    path = request.getfixturevalue("micro_ttt_dir" if model == "ttt" else "micro_llama_dir")
    store, result, m = run(small_spec(task, **SMALL), f"{model}:{path}", tmp_path)
    assert result.status == "finished"
    spec = Registry().get(task)
    assert set(m["name"]) == set(spec.metrics)
    window_metric = spec.metrics[0]
    assert set(m[m["name"] == window_metric]["bin"]) == {"", "length=32", "length=64"}
    assert (m[m["bin"] == "length=64"]["n"] <= 2).all()
    outputs = store.samples(result.run_id).query("name == 'output'")
    assert len(outputs) == 2
    data = json.loads(outputs["data"].iloc[0])
    assert data["prompt"] and data["text"].strip()


def test_generation_is_reproducible_and_the_baseline_slides_past_its_context(micro_llama_dir, tmp_path):
    spec = small_spec("degeneration", lengths=(160,), **SMALL)  # 32 + 160 tokens > the 96-token context
    _, _, a = run(spec, f"hf:{micro_llama_dir}", tmp_path / "a")
    _, _, b = run(spec, f"hf:{micro_llama_dir}", tmp_path / "b")
    assert "length=160" in set(a["bin"])
    assert a[["name", "bin", "value"]].equals(b[["name", "bin", "value"]])


def test_asr_wer_on_espeak_passages(micro_ttt_dir, tmp_path):
    spec = small_spec("asr_wer", lengths=(), n_prompts=2, reply_words=15, n_boot=50, audio_dir=str(tmp_path / "au"))
    store, result, m = run(spec, f"ttt:{micro_ttt_dir}", tmp_path)
    overall = m[m["bin"] == ""].set_index("name")["value"]
    assert overall["wer_mean"] < 0.35 and overall["wer_corpus"] < 0.35
    assert "t=0-60s" in set(m["bin"])
    audio = [json.loads(d)["audio"] for d in store.samples(result.run_id).query("name == 'output'")["data"]]
    assert len(audio) == 2 and all(p.endswith(".wav") for p in audio)
    stored = store.run(result.run_id)  # espeak-ng read corpus passages: the model was never used
    assert stored["model_id"] == stored["model_spec"] == "reference:espeak-ng" and len(stored["model_hash"]) == 16


def _corpus(tmp_path, n=8):
    out = tmp_path / "corpus"
    out.mkdir()
    text = books("eval")[0].read()
    for i in range(n):
        (out / f"doc{i}.txt").write_text(text[10_000 + 900 * i: 10_900 + 900 * i], encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def degraded_llama_dir(micro_llama_dir, tmp_path_factory):
    """The micro Llama with noisy, sharpened output weights (confidently wrong): a worse model, real on-disk layout."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("degraded")
    model = AutoModelForCausalLM.from_pretrained(micro_llama_dir)
    torch.manual_seed(0)
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head.add_(head.std() * torch.randn_like(head)).mul_(20)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(micro_llama_dir).save_pretrained(out)
    return out


@pytest.mark.parametrize("baseline", ["same", "degraded"])
def test_compare_finds_degradation_and_no_difference_between_identical_systems(
        baseline, micro_llama_dir, degraded_llama_dir, tmp_path):
    base = micro_llama_dir if baseline == "same" else degraded_llama_dir
    spec = small_spec("compare", lengths=(64, 128), task="ppl_vs_length", metric="loss", higher_is_better=False,
                      baseline=f"hf:{base}")
    _, result, m = run(spec, f"hf:{micro_llama_dir}", tmp_path, corpus=str(_corpus(tmp_path)))
    verdicts = m[m["name"] == "verdict"].set_index("bin")["value"]
    assert set(verdicts.index) == {"length=64", "length=128"}
    diff = m[m["name"] == "diff"]
    assert (diff["n"] == 8).all()
    assert result.notes == [] and (m[m["name"] == "decidable"]["value"] == 1).all()
    if baseline == "same":
        assert (verdicts == 0).all() and (diff["value"] == 0).all()
    else:  # the candidate (the original) has lower loss than the degraded baseline: better
        assert (verdicts == 1).all() and (diff["ci_high"] < 0).all()
        assert (m[m["name"] == "p_value"]["value"] < 0.05).all()


def test_compare_says_when_the_sides_run_in_different_dtypes(micro_llama_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    bf16 = tmp_path / "bf16"
    AutoModelForCausalLM.from_pretrained(micro_llama_dir, dtype=torch.bfloat16).save_pretrained(bf16)
    AutoTokenizer.from_pretrained(micro_llama_dir).save_pretrained(bf16)
    spec = small_spec("compare", lengths=(64,), task="ppl_vs_length", metric="loss", higher_is_better=False,
                      baseline=f"hf:{bf16}")
    store, result, _ = run(spec, f"hf:{micro_llama_dir}", tmp_path, corpus=str(_corpus(tmp_path)), limit=2)
    assert result.notes == ["the two sides run in different dtypes: candidate float32, baseline bfloat16 (their "
                            "difference includes the precision's)",
                            "length=64: 2 paired units are too few to decide (the permutation test cannot reach "
                            "p < 0.05: its smallest p is 0.5); no interval, no verdict"]
    config = store.run(result.run_id)["config"]
    assert config["baseline_dtype"] == "bfloat16" and len(config["baseline_hash"]) == 16


def test_empty_generation_fails_the_run_without_metric_rows(micro_llama_dir, tmp_path):
    loaded = load_model(f"hf:{micro_llama_dir}")
    space = loaded.tokenizer.convert_tokens_to_ids("Ġ")
    loaded.model.generation_config.suppress_tokens = [i for i in range(len(loaded.tokenizer)) if i != space]
    store = Store(tmp_path / "r.db")
    with pytest.raises(GenerationError, match="generated no text"):
        run_task(small_spec("coherence", **SMALL), loaded, store=store, progress=False)
    run_row = store.runs().iloc[-1]
    assert run_row["status"] == "failed" and "generated no text" in run_row["error"]
    assert store.metrics(run_id=int(run_row["id"])).empty


def test_bad_specs_are_named():
    from evalsuite.errors import TaskSpecError

    with pytest.raises(TaskSpecError, match="params.window: expected a number >= 1, got 0"):
        small_spec("degeneration", window=0)
    with pytest.raises(TaskSpecError, match="params.do_sample: expected true or false, got 'yes'"):
        small_spec("degeneration", do_sample="yes")
    with pytest.raises(TaskSpecError, match="shorter than one window"):
        small_spec("degeneration", lengths=(16,), window=32)
    with pytest.raises(TaskSpecError, match="params.system: expected one of 'auto', 'espeak' or 'omni', got 'festiv"):
        small_spec("asr_wer", lengths=(), system="festival")
    with pytest.raises(TaskSpecError, match="params.higher_is_better: expected true or false, got 'yes'"):
        small_spec("compare", higher_is_better="yes")
    with pytest.raises(TaskSpecError, match="params.alpha: expected a number < 1, got 1.5"):
        small_spec("compare", alpha=1.5)
