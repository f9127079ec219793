import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from evalsuite.metrics.ppl import bin_sums, ppl_metrics, token_nll
from evalsuite.models import LoadedModel, load_model
from evalsuite.registry import Registry
from evalsuite.runner import run_task
from evalsuite.store import Store
from ttt_omni.hf_compat import CACHE_ARG


class UniformLM(torch.nn.Module):
    """Every token has probability 1/V: per-token loss log V, perplexity exactly V."""

    def __init__(self, vocab_size):
        super().__init__()
        self.vocab_size = vocab_size
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, use_cache=None, **cache):
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab_size), **{CACHE_ARG: None})


def test_uniform_model_has_perplexity_equal_to_vocab_size(tmp_path, micro_llama_dir, small_corpus):
    tok = AutoTokenizer.from_pretrained(micro_llama_dir)
    vocab = len(tok)
    loaded = LoadedModel(UniformLM(vocab), tok, "uniform", "0" * 16, "uniform", context_limit=None)
    result = run_task("ppl_vs_length", loaded, store=Store(tmp_path / "s.db"), corpus=str(small_corpus),
                      lengths=[32, 64, 128], progress=False)
    m = Store(tmp_path / "s.db").metrics(run_id=result.run_id)
    for name, expected in (("ppl", vocab), ("cum_ppl", vocab), ("loss", math.log(vocab)), ("degradation_pct", 0.0)):
        rows = m[m["name"] == name]
        assert len(rows) == 3 and (rows["n"] == 4).all()
        np.testing.assert_allclose(rows["value"], expected, rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(rows[["ci_low", "ci_high"]].to_numpy(), expected, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("which", ["micro_ttt_dir", "micro_llama_dir"])
def test_streaming_equals_one_pass(request, which):
    loaded = load_model(f"{'ttt' if 'ttt' in which else 'hf'}:{request.getfixturevalue(which)}")
    ids = torch.randint(0, 300, (90,), generator=torch.Generator().manual_seed(0))
    one = token_nll(loaded.model, ids, chunk_size=None)
    for chunk in (7, 16, 64):
        np.testing.assert_allclose(token_nll(loaded.model, ids, chunk_size=chunk), one, rtol=1e-5, atol=1e-5)


def test_rolling_window_scores_each_token_once_with_enough_context(micro_llama_dir):
    model = load_model(f"hf:{micro_llama_dir}").model
    ids = torch.randint(0, 300, (200,), generator=torch.Generator().manual_seed(0))
    rolled = token_nll(model, ids, context_limit=96, stride=32)
    assert rolled.shape == (199,) and np.isfinite(rolled).all()
    np.testing.assert_allclose(rolled[:95], token_nll(model, ids[:96], chunk_size=None), rtol=1e-5, atol=1e-5)
    # the last window is ids[96:192+...]: tokens after position 96 see 64..95 tokens of context
    last = token_nll(model, ids[128:200], chunk_size=None)
    np.testing.assert_allclose(rolled[-(200 - 192):], last[-(200 - 192):], rtol=1e-5, atol=1e-5)


def test_bins_cumulative_and_degradation_from_known_losses():
    nll = np.array([1.0] * 7 + [2.0] * 8)  # positions 1..7 -> bin [0,8); positions 8..15 -> bin [8,16)
    sums, counts = bin_sums(nll, [8, 16])
    assert sums.tolist() == [7.0, 16.0] and counts.tolist() == [7, 8]
    rows = {(r["name"], r["bin"]): r for r in ppl_metrics(sums[None], counts[None], [8, 16], n_boot=50)}
    assert rows["ppl", "length=16"]["value"] == pytest.approx(math.e ** 2)
    assert rows["cum_ppl", "length=16"]["value"] == pytest.approx(math.exp(23 / 15))
    assert rows["degradation_pct", "length=16"]["value"] == pytest.approx((math.e - 1) * 100)


def test_bootstrap_is_seeded_and_covers_the_estimate():
    rng = np.random.default_rng(0)
    sums, counts = rng.uniform(1, 3, (6, 2)) * 100, np.full((6, 2), 100.0)
    a = ppl_metrics(sums, counts, [8, 16], seed=3)
    assert a == ppl_metrics(sums, counts, [8, 16], seed=3)
    for r in a:
        assert r["ci_low"] <= r["value"] <= r["ci_high"]


def test_ttt_model_streams_a_whole_corpus_through_the_runner(tmp_path, micro_ttt_dir, small_corpus):
    result = run_task(Registry().get("ppl_vs_length"), f"ttt:{micro_ttt_dir}", store=Store(tmp_path / "s.db"),
                      corpus=str(small_corpus), lengths=[64, 128, 256], progress=False)
    assert result.status == "finished" and result.units_run == 4
    m = Store(tmp_path / "s.db").metrics(run_id=result.run_id)
    assert set(m["name"]) == {"loss", "ppl", "cum_ppl", "degradation_pct"}
    assert set(m["bin"]) == {"length=64", "length=128", "length=256"}
    run = Store(tmp_path / "s.db").run(result.run_id)
    assert run["model_id"].startswith("ttt:") and len(run["model_hash"]) == 16
