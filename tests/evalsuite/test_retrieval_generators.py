"""The retrieval generators: each sample has exactly its length in the model's tokens, its inserts really are where
the sample says (at the stated depth), a perfect reader of the prompt text recovers the answer, and no distractor is
(or would be scored as) the answer."""
from __future__ import annotations

import dataclasses
import random
import re

import pytest
from transformers import AutoTokenizer

from evalsuite.errors import CorpusError, TaskSpecError
from evalsuite.kinds.retrieval import BookFacts, Niah, Passkey, VariableTracking, spread_cells
from evalsuite.metrics.retrieval import all_values_present
from evalsuite.models import LoadedModel
from evalsuite.registry import Registry
from evalsuite.retrieval import book_facts, niah, passkey, variable_tracking
from evalsuite.retrieval.haystack import Corpus
from evalsuite.retrieval.problems import answer_key
from evalsuite.retrieval.prompt import PromptTooShortError, build
from evalsuite.retrieval.words import PLACES
from evalsuite.task import KINDS
from ttt_omni.resources import bundled

TASKS = ["passkey", "niah", "niah_multikey", "niah_multivalue", "niah_multiquery", "niah_uuid", "variable_tracking",
         "book_facts"]
GENERATORS = {"passkey": (passkey.make, {}), "niah": (niah.make, {}),
              "niah_multi": (niah.make, dict(needles=4, values_per_key=2, queries=2)),
              "niah_uuid": (niah.make, dict(keys="uuids", values="uuids", needles=3)),
              "variable_tracking": (variable_tracking.make, dict(chains=3)), "book_facts": (book_facts.make, {})}


@pytest.fixture(scope="module", params=["micro", "tiny"])
def tokenizer(request, tmp_path_factory):
    """The micro models' 320-token BPE and the bundled tiny model's tokenizer."""
    if request.param == "tiny":
        return AutoTokenizer.from_pretrained(bundled("checkpoints", "tiny-ttt"))
    micro = request.getfixturevalue("micro_llama_dir")
    return AutoTokenizer.from_pretrained(micro)


def kind_for(task: str, tokenizer, **params):
    spec = Registry().get(task)
    spec = dataclasses.replace(spec, params={**spec.params, **params})
    model = LoadedModel(model=None, tokenizer=tokenizer, model_id="tok", model_hash="0", spec="tok", context_limit=None)
    return KINDS[spec.kind](spec, model, seed=3)


# --- a perfect reader: answers from the prompt's text alone --------------------------------------------------------


def oracle(task: str, text: str) -> list[str]:
    question = text[text.rindex("\n\n") + 2:]
    if task == "passkey":
        return re.findall(r"The pass key is (\d+)\. Remember it\.", text)
    if task.startswith("niah"):
        named = re.search(r" for (.+?) mentioned in the provided text\?", question).group(1)
        keys = re.split(r", | and ", named)
        return [v for k in keys for v in re.findall(rf"special magic \w+s for {re.escape(k)} is: ([\w-]+)\.", text)]
    if task == "variable_tracking":
        wanted = re.search(r"assigned the value (\d+) in the text above", question).group(1)
        value: dict[str, str] = {}
        holders = []
        for name, source in re.findall(r"VAR ([A-Z]{5}) = (\w+)\.", text):
            value[name] = value.get(source, source)
            if value[name] == wanted:
                holders.append(name)
        return holders
    if task == "book_facts":
        where: dict[str, str] = {}
        holder: dict[str, str] = {}
        facts = re.finditer(r"\b([A-Z][a-z]+) (?:(went to|journeyed to|travelled to|moved to) the (\w+)|"
                            r"(picked up|grabbed|took|got) the (\w+)|(gave|handed|passed) the (\w+) to ([A-Z][a-z]+))\.",
                            text[:text.rindex("\n\n")])
        for f in facts:
            who = f.group(1)
            if f.group(2):
                where[who] = f.group(3)
            elif f.group(4):
                holder[f.group(5)] = who
            else:
                holder[f.group(7)] = f.group(8)
        person = re.search(r"Where is ([A-Z][a-z]+)\?", question)
        if person:
            return [where[person.group(1)]]
        thing = re.search(r"Where is the (\w+)\?", question).group(1)
        return [where[holder[thing]]]
    raise AssertionError(task)


@pytest.mark.parametrize("task", TASKS)
def test_samples_have_their_length_depth_and_a_recoverable_answer(task, tokenizer):
    kind = kind_for(task, tokenizer)
    encode = lambda t: tokenizer(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    snap = kind.param("snap_tokens")
    for length in (1000, 1800):
        for depth in (0, 10, 50, 90, 100):
            for rep in range(2):
                problem, prompt, candidates = kind.sample(length, depth, rep)
                reserve = max(kind.param("answer_tokens"), *map(len, candidates))
                assert len(prompt.ids) == length - reserve  # the prompt and its longest answer fill the length
                h = prompt.haystack_tokens
                assert prompt.context[1] - prompt.context[0] == h + sum(e - s for s, e in prompt.spans)
                for insert, (s, e), pos in zip(problem.inserts, prompt.spans, prompt.positions):
                    assert prompt.ids[s:e] == encode(insert.text)  # the insert is there, token for token
                    inserted_before = sum(e2 - s2 for s2, e2 in prompt.spans if s2 < s)
                    assert s - prompt.context[0] == pos + inserted_before  # `pos` haystack tokens precede it
                    assert abs(pos - insert.depth * h) <= snap + 0.5  # at the stated depth (up to the snap)
                first = next(i for i, ins in enumerate(problem.inserts) if ins.target)
                assert problem.inserts[first].depth == depth / 100
                if depth in (0, 100):
                    assert prompt.depth(first) == depth / 100  # the ends are exact
                text = tokenizer.decode(prompt.ids)
                found = oracle(task, text)
                assert answer_key(", ".join(found)) == answer_key(problem.answer), (found, problem.answer)
                assert all_values_present(" " + ", ".join(found), problem.answers)


def test_the_same_seed_gives_the_same_sample_and_another_seed_another(tokenizer):
    a = kind_for("niah", tokenizer).sample(800, 40, 1)
    b = kind_for("niah", tokenizer).sample(800, 40, 1)
    assert a[1].ids == b[1].ids and a[0] == b[0]
    assert kind_for("niah", tokenizer).sample(800, 40, 2)[1].ids != a[1].ids
    assert kind_for("niah", tokenizer).sample(800, 50, 1)[0] != a[0]


@pytest.mark.parametrize("name", list(GENERATORS))
def test_distractors_never_equal_the_answer(name):
    make, options = GENERATORS[name]
    for seed in range(300):
        p = make(random.Random(seed), random.random(), candidates=6, **options)
        assert len(p.distractors) == 5
        keys = [answer_key(c) for c in p.candidates]
        assert len(set(keys)) == len(keys)
        for wrong in p.distractors:  # a distractor given as the generated answer is scored wrong
            assert not all_values_present(wrong, p.answers), (wrong, p.answers)
        assert all_values_present(p.answer, p.answers)


def test_hard_distractors_come_from_the_text():
    p = niah.make(random.Random(0), 0.3, candidates=4, needles=4)
    hidden = {v for i in p.inserts if not i.target for v in re.findall(r"is: (\d+)\.", i.text)}
    assert {d.strip() for d in p.distractors} == hidden  # the other keys' values
    v = variable_tracking.make(random.Random(0), 0.3, candidates=4)  # 4 chains: every distractor is one of them
    others = [re.search(r"VAR (\w+) =", i.text).group(1) for i in v.inserts if not i.target]
    assert [answer_key(d) for d in v.distractors] == [frozenset(n.lower() for n in others[i:i + 5])
                                                      for i in (0, 5, 10)]


def test_book_facts_chains_and_places():
    counts = {1: 0, 2: 0, 3: 0}
    for seed in range(60):
        p = book_facts.make(random.Random(seed), 0.5, candidates=8)
        counts[p.info["supporting_facts"]] += 1
        assert sum(i.target for i in p.inserts) == p.info["supporting_facts"]
        assert sorted(c.strip() for c in p.candidates) == sorted(PLACES)
    assert all(counts.values())
    with pytest.raises(ValueError, match="candidates must be an integer from 2 to 8"):
        book_facts.make(random.Random(0), 0.5, candidates=9)


def test_names_in_facts_never_act_in_the_bundled_eval_books():
    """A book sentence like "Mary went to the town." would contradict a generated fact about Mary."""
    from evalsuite.corpus import bundled_books
    from evalsuite.retrieval.words import GIVE_VERBS, MOVE_VERBS, PEOPLE, TAKE_VERBS

    verbs = "|".join(MOVE_VERBS + TAKE_VERBS + GIVE_VERBS)
    pattern = re.compile(rf"\b({'|'.join(PEOPLE)})\s+({verbs})\s+the\b")
    for doc in bundled_books("eval"):
        assert not pattern.search(" ".join(doc.read().split())), doc.key


def test_spread_cells_under_a_limit():
    assert spread_cells(11, 2, None) == [(d, r) for r in range(2) for d in range(11)]
    assert [d for d, _ in spread_cells(11, 5, 5)] == [0, 2, 5, 8, 10]  # depths 0, 20, 50, 80, 100 %
    assert spread_cells(11, 5, 1) == [(5, 0)]
    picked = spread_cells(3, 4, 7)
    assert picked == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (1, 2)]
    assert len(spread_cells(3, 2, 100)) == 6


def test_corpus_haystack_runs_on_into_the_next_document(tmp_path, tokenizer):
    from evalsuite.corpus import user_corpus

    (tmp_path / "a.txt").write_text("First paragraph of a.\n\nSecond paragraph of a.", encoding="utf-8")
    (tmp_path / "b.txt").write_text("Only paragraph of b, somewhat longer than the others are.", encoding="utf-8")
    corpus = Corpus(user_corpus(tmp_path), "tmp")
    rng = random.Random(5)
    tokens = corpus.haystack(tokenizer, rng)
    whole = len(tokenizer(corpus.text(0, 0, 10**6)[0], add_special_tokens=False)["input_ids"])
    assert len(tokens(whole - 20)) == whole - 20
    with pytest.raises(CorpusError, match="corpus tmp: .* tokens in all, but the haystack needs 100000"):
        tokens(100_000)
    doc, offset = corpus.start(random.Random(1))
    text = corpus.texts[doc]
    assert offset == 0 or text[offset - 2:offset] == "\n\n"


def test_too_short_a_length_is_refused_with_what_it_needs(tokenizer):
    kind = kind_for("variable_tracking", tokenizer)
    with pytest.raises(PromptTooShortError, match=r"length 100 is too short for this sample: .*\(expected a "
                                                  r"length above \d+\)"):
        kind.sample(100, 50, 0)


def test_bad_task_params_name_the_input():
    base = Registry().get("book_facts")
    for params, message in [({"candidates": 12}, "candidates must be an integer from 2 to 8"),
                            ({"depths": [50, 10]}, "params.depths must be increasing whole percentages"),
                            ({"scoring": ["greedy"]}, "params.scoring must be a list of"),
                            ({"haystack": "noise"}, "params.haystack must be one of"),
                            ({"supporting_facts": [4]}, "supporting_facts must be 1, 2 or 3"),
                            ({"n": 0}, "params.n must be an integer >= 1"),
                            ({"needles": 2}, r"unknown key\(s\) \['needles'\]")]:
        with pytest.raises(TaskSpecError, match=message):
            BookFacts.validate(dataclasses.replace(base, params={**base.params, **params}))
    spec = Registry().get("niah")
    spec = dataclasses.replace(spec, params={**spec.params, "queries": 2})
    with pytest.raises(TaskSpecError, match=r"queries \(2\) cannot exceed needles \(1\)"):
        Niah.validate(spec)


def test_a_corpus_for_the_filler_haystack_is_refused(tokenizer, tmp_path):
    spec = Registry().get("passkey")
    model = LoadedModel(model=None, tokenizer=tokenizer, model_id="tok", model_hash="0", spec="tok",
                        context_limit=None)
    with pytest.raises(TaskSpecError, match="hides its needles in 'filler' text"):
        Passkey(spec, model, corpus=str(tmp_path))
    assert VariableTracking(Registry().get("variable_tracking"), model, corpus=None).books.texts


def test_build_places_inserts_in_order_when_depths_tie(tokenizer):
    from evalsuite.retrieval.problems import Insert, Problem

    p = Problem("Read.", (Insert(" A one.", 0.5), Insert(" B two.", 0.5, target=True), Insert(" C three.", 0.5)),
                "Which?", ("two",), " two", (" one",))
    prompt = build(p, tokenizer, 300, lambda n: tokenizer(" word" * n, add_special_tokens=False)["input_ids"][:n],
                   reserve=4)
    assert prompt.spans[0][1] == prompt.spans[1][0] and prompt.spans[1][1] == prompt.spans[2][0]
    assert prompt.positions[0] == prompt.positions[1] == prompt.positions[2]
