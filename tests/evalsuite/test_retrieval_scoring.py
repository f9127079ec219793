"""Scoring retrieval answers on hand-made cases (RULER matching, ranking, Wilson cells), and the reader held to a
naive reference: log-likelihoods from one full forward pass without a cache, greedy answers from HF `generate()`."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM

import ttt_omni.models  # noqa: F401  (registers TTT-Llama with the Auto classes)
from evalsuite.metrics.retrieval import accuracy_rows, all_values_present, answer_line, normalize, rank_correct
from evalsuite.retrieval.reader import read


@pytest.mark.parametrize("output, values, ok", [
    (" 71432.", ["71432"], True),
    ("The pass key is 71432, I think", ["71432"], True),
    (" 714320", ["71432"], False),  # whole values only
    (" 7143", ["71432"], False),
    ("\n\n  71432\nand more", ["71432"], True),  # the first non-empty line
    (" I do not know.\n71432", ["71432"], False),  # an answer on a later line does not count
    (" Misty-Otter", ["misty-otter"], True),  # case
    (" misty otter", ["misty-otter"], False),  # the hyphen is part of the value
    (" 1234567, 7654321 and 1111111.", ["1111111", "1234567", "7654321"], True),  # all, in any order
    (" 1234567, 7654321", ["1234567", "7654321", "1111111"], False),  # one missing
    (" ABCDE FGHIJ.", ["ABCDE", "FGHIJ"], True),
    (" 0de872d0-280e-4919-b1d5-b0e30824be7e", ["0DE872D0-280E-4919-B1D5-B0E30824BE7E"], True),
    ("", ["kitchen"], False),
])
def test_all_values_present(output, values, ok):
    assert all_values_present(output, values) is ok


def test_normalize_and_answer_line():
    assert normalize("  The KEY: 71432!\n") == "the key 71432"
    assert answer_line("\n \n kitchen.\nbedroom") == "kitchen."
    with pytest.raises(ValueError, match="no expected values"):
        all_values_present("x", [])


def test_rank_correct():
    assert rank_correct([-1.0, -2.0, -3.0])
    assert not rank_correct([-2.0, -1.0, -3.0])
    assert not rank_correct([-1.0, -1.0])  # a tie is not a success
    with pytest.raises(ValueError, match="at least one distractor"):
        rank_correct([-1.0])


def test_accuracy_rows_per_cell_length_and_overall():
    values = {"length=1024,depth=0": [1, 1, 1, 0], "length=1024,depth=50": [0, 0, 0, 0],
              "length=2048,depth=0": [1, 1, 1, 1]}
    samples = pd.DataFrame([{"bin": b, "value": float(v)} for b, vs in values.items() for v in vs])
    rows = {r["bin"]: r for r in accuracy_rows("rank_accuracy", samples)}
    assert list(rows) == ["length=1024,depth=0", "length=1024,depth=50", "length=2048,depth=0", "length=1024",
                          "length=2048", ""]
    cell = rows["length=1024,depth=0"]
    assert (cell["value"], cell["n"]) == (0.75, 4)
    assert cell["ci_low"] == pytest.approx(0.3006, abs=1e-4) and cell["ci_high"] == pytest.approx(0.9544, abs=1e-4)
    zero = rows["length=1024,depth=50"]  # Wilson stays inside [0, 1] and is not degenerate at 0/4
    assert (zero["value"], zero["ci_low"]) == (0.0, 0.0) and zero["ci_high"] == pytest.approx(0.4899, abs=1e-4)
    assert rows["length=2048,depth=0"]["ci_high"] == 1.0 and rows["length=2048,depth=0"]["ci_low"] < 1.0
    assert (rows["length=1024"]["value"], rows["length=1024"]["n"]) == (3 / 8, 8)  # pooled over depths
    assert (rows[""]["value"], rows[""]["n"]) == (7 / 12, 12)
    with pytest.raises(ValueError, match="must be 0 or 1"):
        accuracy_rows("x", pd.DataFrame([{"bin": "length=1,depth=0", "value": 0.5}]))
    with pytest.raises(ValueError, match="not a retrieval cell"):
        accuracy_rows("x", pd.DataFrame([{"bin": "length=1", "value": 1.0}]))


# --- the reader against a naive reference ------------------------------------------------------------------------


def full_logprob(model, prompt: list[int], cont: list[int]) -> float:
    """Sum of log p(cont | prompt) from one forward pass over prompt + cont, no cache."""
    ids = torch.tensor([prompt + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids, use_cache=False).logits[0].double(), -1)
    return float(sum(logp[len(prompt) - 1 + i, t] for i, t in enumerate(cont)))


@pytest.fixture(scope="module", params=["llama", "ttt"])
def micro(request):
    path = request.getfixturevalue("micro_llama_dir" if request.param == "llama" else "micro_ttt_dir")
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(path).eval()


def test_candidate_logprobs_equal_one_full_pass(micro):
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(1, 300, (70,), generator=g).tolist()
    candidates = [[5], [17, 230, 4], [99, 8], [17, 230, 5, 6, 7]]
    reading = read(micro, prompt, candidates=candidates, chunk_size=16)
    reference = [full_logprob(micro, prompt, c) for c in candidates]
    assert reading.visible_from == 0
    assert reading.logprobs == pytest.approx(reference, abs=1e-4)
    # a candidate does not see the ones before it: scoring alone gives the same number
    assert read(micro, prompt, candidates=[candidates[3]], chunk_size=16).logprobs[0] == pytest.approx(
        reading.logprobs[3], abs=1e-5)


def test_greedy_answer_equals_generate(micro):
    g = torch.Generator().manual_seed(2)
    prompt = torch.randint(1, 300, (50,), generator=g).tolist()
    reading = read(micro, prompt, candidates=[[3], [4]], max_new_tokens=12, chunk_size=7)
    with torch.no_grad():
        ref = micro.generate(torch.tensor([prompt]), max_new_tokens=12, min_new_tokens=12, do_sample=False,
                             pad_token_id=0)[0, len(prompt):].tolist()
    assert reading.output_ids == ref
    assert read(micro, prompt, max_new_tokens=12, stop=lambda ids: len(ids) == 5).output_ids == ref[:5]
    assert read(micro, prompt, max_new_tokens=12, eos={ref[3]}).output_ids == ref[:ref.index(ref[3])]


def test_a_context_limit_shows_the_last_window(micro_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(micro_llama_dir).eval()  # 96-token context
    g = torch.Generator().manual_seed(3)
    prompt = torch.randint(1, 300, (150,), generator=g).tolist()
    cands = [[11, 12, 13], [14]]
    reading = read(model, prompt, candidates=cands, max_new_tokens=6, context_limit=96)
    assert reading.visible_from == 150 + 6 - 96  # the prompt's tail and the longest answer fill the context
    tail = prompt[reading.visible_from:]
    assert reading.logprobs == pytest.approx([full_logprob(model, tail, c) for c in cands], abs=1e-4)
    with torch.no_grad():
        ref = model.generate(torch.tensor([tail]), max_new_tokens=6, min_new_tokens=6, do_sample=False,
                             pad_token_id=0)[0, len(tail):].tolist()
    assert reading.output_ids == ref
    assert read(model, prompt[:40], candidates=cands, context_limit=96).visible_from == 0
    with pytest.raises(ValueError, match="context of 96 tokens cannot hold an answer of 100 tokens"):
        read(model, prompt, max_new_tokens=100, context_limit=96)


def test_reader_refuses_nothing_to_do(micro):
    with pytest.raises(ValueError, match="nothing to do"):
        read(micro, [1, 2, 3])
    with pytest.raises(ValueError, match="has no tokens"):
        read(micro, [1, 2, 3], candidates=[[]])
    assert math.isfinite(read(micro, [1], candidates=[[2], [3]]).logprobs[0])
