"""Kinds `passkey`, `niah`, `variable_tracking`, `book_facts`: long-context retrieval over a grid of context lengths
x depths, `n` samples per cell, each a unit (so `compare` pairs them by sample).

A sample is generated from (task name, run seed, length, depth, replicate) alone, laid out in exactly
`length - reserve` tokens of the model's tokenizer (`evalsuite.retrieval.prompt`), read once by the model and scored
two ways (`params.scoring`): `rank` (log-likelihood of the right answer against `candidates - 1` distractors of the
same form; chance = 1/candidates) and `generate` (greedy answer, all expected values present after normalisation,
RULER's metric). Metrics: `rank_accuracy`, `generate_accuracy` (per cell "length=L,depth=D", per length "length=L",
overall "") with Wilson 95% intervals, and `chance`. Each sample also stores an "output" row: the prompt (as an
excerpt around the inserts), the answer, the model's output, the candidates' log-likelihoods, the actual depth.

`limit` caps the samples per length: one per depth, spread evenly over the depth grid, then more replicates.

Needle distance (the tokens between the needle and the question) is what a windowed attention cannot bridge: every
sample's bin carries it (`distance=N`, evalsuite.metrics.retrieval.DISTANCE_GRID), so accuracy is also reported per
distance; with `params.distances` (e.g. [1k, 2k, 4k]) the needle is put at exactly those distances instead of at the
depths (cells "length=L,distance=N"; a distance that does not fit a length is skipped). A model with an attention
window also gets an `attention_window` row and a note naming the distance bins beyond it.
"""
from __future__ import annotations

import random
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ..corpus import bundled_books, corpus_hash, user_corpus
from ..errors import TaskSpecError
from ..metrics.retrieval import accuracy_rows, all_values_present, cell_bin, distance_bin, rank_correct
from ..retrieval import book_facts, niah, passkey, variable_tracking
from ..retrieval.haystack import KINDS as HAYSTACKS
from ..retrieval.haystack import Corpus, filler
from ..retrieval.prompt import build, excerpt
from ..retrieval.reader import read
from ..task import TaskKind, TaskSpec, Unit, parse_length, register_kind

DATASET_KEYS = {"source", "split", "path"}
SCORINGS = ("rank", "generate")
COMMON = {"depths": list(range(0, 101, 10)), "n": 5, "scoring": list(SCORINGS), "candidates": 4,
          "answer_tokens": 16, "haystack": "books", "snap_tokens": 48, "chunk_size": 2048, "distances": None}
DISTANCE_MARGIN = 256  # a fixed distance runs at a length only when the length exceeds it by this many tokens
OUTPUT_SAMPLE = "output"
SAMPLE_METRIC = {"rank": ("rank_correct", "rank_accuracy"), "generate": ("generate_correct", "generate_accuracy")}


class RetrievalKind(TaskKind):
    """A retrieval kind = a generator (`make(rng, depth, candidates=K, **task_params) -> Problem`) and defaults."""

    metrics = frozenset({"rank_accuracy", "generate_accuracy", "chance", "attention_window"})
    make = None
    task_params: dict = {}  # the generator's own params and their defaults
    defaults: dict = {}  # this kind's defaults of COMMON params

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.corpus and self.param("haystack") != "books":
            raise TaskSpecError(f"{self.spec.source}: a corpus ({self.corpus}) was given, but task {self.spec.name} "
                                f"hides its needles in {self.param('haystack')!r} text; only params.haystack: books "
                                "reads a corpus")

    @classmethod
    def all_defaults(cls) -> dict:
        return {**COMMON, **cls.defaults, **cls.task_params}

    @classmethod
    def validate(cls, spec: TaskSpec) -> None:
        where, p = spec.source, spec.params
        if not spec.lengths:
            raise TaskSpecError(f"{where}: kind {spec.kind} needs lengths (context lengths, e.g. [1k, 2k, 4k])")
        bad = set(spec.dataset) - DATASET_KEYS
        if bad:
            raise TaskSpecError(f"{where}: dataset has unknown key(s) {sorted(bad)}; expected {sorted(DATASET_KEYS)}")
        if spec.dataset.get("split", "eval") not in ("train", "eval"):
            raise TaskSpecError(f"{where}: dataset.split must be 'train' or 'eval', got {spec.dataset['split']!r}")
        bad = set(p) - set(cls.all_defaults())
        if bad:
            raise TaskSpecError(f"{where}: params has unknown key(s) {sorted(bad)}; expected "
                                f"{sorted(cls.all_defaults())}")
        get = lambda key: p.get(key, cls.all_defaults()[key])  # noqa: E731
        for key, low in (("n", 1), ("candidates", 2), ("answer_tokens", 1), ("snap_tokens", 0), ("chunk_size", 1)):
            value = get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise TaskSpecError(f"{where}: params.{key} must be an integer >= {low}, got {value!r}")
        depths = get("depths")
        if not (isinstance(depths, list) and depths and all(isinstance(d, int) and not isinstance(d, bool)
                                                             and 0 <= d <= 100 for d in depths)
                and depths == sorted(set(depths))):
            raise TaskSpecError(f"{where}: params.depths must be increasing whole percentages in [0, 100] (e.g. "
                                f"[0, 50, 100]), got {depths!r}")
        distances = get("distances")
        if distances is not None:
            if not (isinstance(distances, list) and distances):
                raise TaskSpecError(f"{where}: params.distances must be a list of token counts (e.g. [1k, 2k, 4k]) "
                                    f"or absent, got {distances!r}")
            for d in distances:
                parse_length(d, f"{where}: params.distances")
        scoring = get("scoring")
        if not (isinstance(scoring, list) and scoring and set(scoring) <= set(SCORINGS)
                and len(set(scoring)) == len(scoring)):
            raise TaskSpecError(f"{where}: params.scoring must be a list of {list(SCORINGS)} (one or both), got "
                                f"{scoring!r}")
        if get("haystack") not in HAYSTACKS:
            raise TaskSpecError(f"{where}: params.haystack must be one of {list(HAYSTACKS)}, got {get('haystack')!r}")
        try:  # the generator checks its own params: build one problem
            cls.make(random.Random(0), 0.5, candidates=get("candidates"),
                     **{k: get(k) for k in cls.task_params})
        except (ValueError, TypeError) as e:
            raise TaskSpecError(f"{where}: {e}") from None

    def param(self, key: str):
        return self.spec.params.get(key, self.all_defaults()[key])

    # --- the grid --------------------------------------------------------------------------------------------

    @property
    def distances(self) -> list[int] | None:
        d = self.param("distances")
        return None if d is None else [parse_length(x, "params.distances") for x in d]

    def units(self) -> list[Unit]:
        n = self.param("n")
        if self.distances is None:
            depths = self.param("depths")
            cells = spread_cells(len(depths), n, self.limit)
            return [Unit(f"length={length},depth={depths[d]},rep={r}", (length, depths[d], r, None))
                    for length in self.spec.lengths for d, r in cells]
        units = []
        for length in self.spec.lengths:
            fits = [d for d in self.distances if d + DISTANCE_MARGIN <= length]
            units += [Unit(f"length={length},distance={fits[i]},rep={r}", (length, None, r, fits[i]))
                      for i, r in spread_cells(len(fits), n, self.limit)] if fits else []
        return units

    @property
    def attention_window(self) -> tuple[int, int] | None:
        """(window, sinks) of the model's attention, None for full attention."""
        config = getattr(self.model.model, "config", None)
        window = getattr(config, "attention_window", None)
        return None if window is None else (int(window), int(getattr(config, "attention_sinks", 0) or 0))

    def notes(self) -> list[str]:
        if self.attention_window is None:
            return []
        window, sinks = self.attention_window
        return [f"the model attends to a window of {window} tokens (+ {sinks} sink tokens): a needle in a distance "
                f"bin >= {window} lies beyond every attention layer's reach, only a memory (TTT) can bring it back"]

    @cached_property
    def documents(self) -> list:
        """The haystack's documents: the run's corpus, else dataset.path, else the bundled books of dataset.split."""
        path = self.corpus or self.spec.dataset.get("path")
        return user_corpus(path) if path else bundled_books(self.spec.dataset.get("split", "eval"))

    @cached_property
    def books(self) -> Corpus:
        path = self.corpus or self.spec.dataset.get("path")
        return Corpus(self.documents, str(path or f"bundled books ({self.spec.dataset.get('split', 'eval')})"))

    def data_identity(self, units: list[Unit]) -> dict:
        """A books haystack may start in any document, so the run reads the whole corpus; filler reads none."""
        if self.param("haystack") != "books":
            return {"source": self.param("haystack"), "documents": 0, "hash": None}
        path = self.corpus or self.spec.dataset.get("path")
        source = f"corpus:{Path(path).expanduser().resolve()}" if path else \
            f"books:{self.spec.dataset.get('split', 'eval')}"
        return {"source": source, "documents": len(self.documents), "hash": corpus_hash(self.documents)}

    # --- one sample ------------------------------------------------------------------------------------------

    def sample(self, length: int, depth: int | None, rep: int, distance: int | None = None):
        """(problem, prompt, candidates' token ids) of one sample for this model's tokenizer: the needle at `depth`
        (percent), or `distance` tokens before the question."""
        tok = self.model.tokenizer
        where = depth if distance is None else f"distance={distance}"
        rng = random.Random(f"{self.spec.name}:{self.seed}:{length}:{where}:{rep}")
        problem = self.make(rng, 0.5 if depth is None else depth / 100, candidates=self.param("candidates"),
                            **{k: self.param(k) for k in self.task_params})
        candidates = [tok(c, add_special_tokens=False, verbose=False)["input_ids"] for c in problem.candidates]
        haystack = filler(tok) if self.param("haystack") == "filler" else self.books.haystack(tok, rng)
        reserve = max(self.param("answer_tokens"), *map(len, candidates))
        prompt = build(problem, tok, length, haystack, reserve=reserve, snap=self.param("snap_tokens"),
                       from_end=distance)
        return problem, prompt, candidates

    def run_unit(self, unit: Unit) -> list[dict]:
        length, depth, rep, fixed = unit.payload
        tok, scoring = self.model.tokenizer, self.param("scoring")
        problem, prompt, candidates = self.sample(length, depth, rep, fixed)
        reading = read(self.model.model, prompt.ids, candidates=candidates if "rank" in scoring else [],
                       max_new_tokens=self.param("answer_tokens") if "generate" in scoring else 0,
                       stop=lambda ids: "\n" in tok.decode(ids).lstrip(), eos=eos_ids(self.model),
                       context_limit=self.model.context_limit, chunk_size=self.param("chunk_size"))
        text = tok.decode(reading.output_ids, skip_special_tokens=True)
        correct = {}
        if "rank" in scoring:
            correct["rank"] = rank_correct(reading.logprobs)
        if "generate" in scoring:
            correct["generate"] = all_values_present(text, problem.answers)
        targets = [i for i, ins in enumerate(problem.inserts) if ins.target]
        distance = prompt.distance(targets[0])
        bin_ = f"length={length},distance={fixed}" if fixed is not None else \
            f"{cell_bin(length, depth)},distance={distance_bin(distance)}"
        data = {"prompt_id": unit.key, "distance": distance, "attention_window": self.attention_window,
                "prompt": excerpt(prompt, tok), "text": text, "answers": list(problem.answers),
                "candidates": list(problem.candidates), "logprobs": reading.logprobs,
                **{f"{s}_correct": ok for s, ok in correct.items()},
                "depth": prompt.depth(targets[0]), "target_depths": [prompt.depth(i) for i in targets],
                "prompt_tokens": len(prompt.ids), "visible_from": reading.visible_from,
                "targets_visible": sum(prompt.spans[i][0] >= reading.visible_from for i in targets),
                "targets": len(targets), **problem.info}
        rows = [dict(name=OUTPUT_SAMPLE, bin=bin_, value=float(len(reading.output_ids)), n=1, data=data)]
        rows += [dict(name=SAMPLE_METRIC[s][0], bin=bin_, value=float(ok), n=1) for s, ok in correct.items()]
        return rows

    def aggregate(self, samples: pd.DataFrame) -> list[dict]:
        rows = []
        for scoring in self.param("scoring"):
            sample_name, metric = SAMPLE_METRIC[scoring]
            part = samples[samples["name"] == sample_name]
            if not part.empty:
                rows += accuracy_rows(metric, part)
                if scoring == "rank":
                    rows.append(dict(name="chance", bin="", value=1.0 / self.param("candidates"), n=len(part)))
        wanted = set(self.spec.metrics or self.metrics)
        if self.attention_window is not None:  # what the distance bins are read against (tables mark them)
            rows.append(dict(name="attention_window", bin="", value=float(self.attention_window[0]), n=1))
            wanted.add("attention_window")
        return [r for r in rows if r["name"] in wanted]


def spread_cells(n_depths: int, n: int, limit: int | None) -> list[tuple[int, int]]:
    """(depth index, replicate) of the samples run per length: all n per depth, or with a limit, that many spread
    evenly over the depths (the first and last depth included), then further replicates."""
    cells = [(d, r) for r in range(n) for d in range(n_depths)]
    if limit is None or limit >= len(cells):
        return cells
    full, rest = divmod(limit, n_depths)
    picked = cells[: full * n_depths]
    if rest:
        idx = [n_depths // 2] if rest == 1 else np.linspace(0, n_depths - 1, rest).round().astype(int).tolist()
        picked += [(d, full) for d in idx]
    return picked


def eos_ids(model) -> set[int]:
    """Token ids that end a generated answer: the tokenizer's EOS and the model's generation-config EOS ids."""
    ids = {model.tokenizer.eos_token_id}
    config = getattr(model.model, "generation_config", None)
    extra = getattr(config, "eos_token_id", None)
    ids |= set(extra) if isinstance(extra, (list, tuple)) else {extra}
    return {int(i) for i in ids if i is not None}


@register_kind("passkey")
class Passkey(RetrievalKind):
    """A pass key in filler (evalsuite.retrieval.passkey)."""

    make = staticmethod(passkey.make)
    task_params = {"digits": 5}
    defaults = {"haystack": "filler", "answer_tokens": 12}


@register_kind("niah")
class Niah(RetrievalKind):
    """RULER's needle-in-a-haystack family in a corpus (evalsuite.retrieval.niah)."""

    make = staticmethod(niah.make)
    task_params = {"keys": "words", "values": "numbers", "needles": 1, "values_per_key": 1, "queries": 1}
    defaults = {"answer_tokens": 32}


@register_kind("variable_tracking")
class VariableTracking(RetrievalKind):
    """RULER's variable tracking in a corpus (evalsuite.retrieval.variable_tracking)."""

    make = staticmethod(variable_tracking.make)
    task_params = {"hops": 4, "chains": 4, "digits": 5}
    defaults = {"answer_tokens": 48}


@register_kind("book_facts")
class BookFacts(RetrievalKind):
    """BABILong-style facts in a book (evalsuite.retrieval.book_facts)."""

    make = staticmethod(book_facts.make)
    task_params = {"supporting_facts": [1, 2, 3], "distractor_facts": 4}
    defaults = {"answer_tokens": 8}
