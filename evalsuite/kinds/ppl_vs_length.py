"""Kind `ppl_vs_length`: per-token loss over long documents, by position bin, with bootstrap CIs over documents.

One unit of work = one document: scored once (streaming or rolling, see `evalsuite.metrics.ppl`), its loss sums per
position bin stored as samples; metrics are computed from all documents' samples at the end.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..corpus import bundled_books, user_corpus
from ..errors import TaskSpecError
from ..metrics.ppl import bin_sums, ppl_metrics, token_nll
from ..task import TaskKind, TaskSpec, Unit, register_kind

DATASET_KEYS = {"source", "split", "path"}
PARAM_DEFAULTS = {"chunk_size": 2048, "stride": None, "n_boot": 1000}


@register_kind("ppl_vs_length")
class PplVsLength(TaskKind):
    metrics = frozenset({"loss", "ppl", "cum_ppl", "degradation_pct"})

    @classmethod
    def validate(cls, spec: TaskSpec) -> None:
        where = spec.source
        if not spec.lengths:
            raise TaskSpecError(f"{where}: kind ppl_vs_length needs lengths (e.g. [1k, 2k, 4k])")
        bad = set(spec.dataset) - DATASET_KEYS
        if bad:
            raise TaskSpecError(f"{where}: dataset has unknown key(s) {sorted(bad)}; expected {sorted(DATASET_KEYS)}")
        if spec.dataset.get("source", "books") != "books" and "path" not in spec.dataset:
            raise TaskSpecError(f"{where}: dataset.source must be 'books' (the bundled corpus) or give dataset.path")
        if spec.dataset.get("split", "eval") not in ("train", "eval"):
            raise TaskSpecError(f"{where}: dataset.split must be 'train' or 'eval', got {spec.dataset['split']!r}")
        bad = set(spec.params) - set(PARAM_DEFAULTS)
        if bad:
            raise TaskSpecError(f"{where}: params has unknown key(s) {sorted(bad)}; expected {sorted(PARAM_DEFAULTS)}")
        for key, value in spec.params.items():
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise TaskSpecError(f"{where}: params.{key} must be a positive integer, got {value!r}")

    def notes(self) -> list[str]:
        """Says when full-attention layers run past the positions the model was trained on (RoPE distances it has
        not seen): a model scored in rolling windows never does, nor one whose attention is a sliding window."""
        config = getattr(self.model.model, "config", None)
        limit = getattr(config, "max_position_embeddings", None)
        longest = max(self.spec.lengths)
        if self.model.context_limit is not None or limit is None or longest <= limit:
            return []
        if getattr(config, "attention_window", None) is not None:
            return []
        full = len(getattr(config, "attention_layers", range(getattr(config, "num_hidden_layers", 0))))
        if not full:
            return []
        return [f"{self.model.model_id} streams documents past max_position_embeddings={limit}: its {full} "
                f"full-attention layers attend over distances it was not trained on in the bins beyond {limit} tokens "
                f"(up to {longest}); bounded-memory mode (@window=N) keeps every distance inside its window"]

    def param(self, key: str):
        return self.spec.params.get(key, PARAM_DEFAULTS[key])

    def units(self) -> list[Unit]:
        path = self.corpus or self.spec.dataset.get("path")
        docs = user_corpus(path) if path else bundled_books(self.spec.dataset.get("split", "eval"))
        if self.limit is not None:
            docs = docs[: self.limit]
        return [Unit(d.key, d) for d in docs]

    def run_unit(self, unit: Unit) -> list[dict]:
        lengths = self.spec.lengths
        tok = self.model.tokenizer
        ids = tok(unit.payload.read(), add_special_tokens=True, verbose=False)["input_ids"][: lengths[-1]]
        nll = token_nll(self.model.model, torch.tensor(ids), chunk_size=self.param("chunk_size"),
                        context_limit=self.model.context_limit, stride=self.param("stride"))
        sums, counts = bin_sums(nll, lengths)
        rows = [dict(name="nll_sum", bin=f"length={L}", value=float(s), n=int(c))
                for L, s, c in zip(lengths, sums, counts) if c > 0]
        rows.append(dict(name="tokens", bin="", value=float(len(ids)), n=len(ids)))
        return rows

    def aggregate(self, samples: pd.DataFrame) -> list[dict]:
        lengths = self.spec.lengths
        part = samples[samples["name"] == "nll_sum"]
        docs = sorted(samples["unit"].unique())
        sums = np.zeros((len(docs), len(lengths)))
        counts = np.zeros((len(docs), len(lengths)))
        row_of = {d: i for i, d in enumerate(docs)}
        col_of = {f"length={L}": j for j, L in enumerate(lengths)}
        for unit, b, value, n in zip(part["unit"], part["bin"], part["value"], part["n"]):
            sums[row_of[unit], col_of[b]] = value
            counts[row_of[unit], col_of[b]] = n
        rows = ppl_metrics(sums, counts, lengths, n_boot=self.param("n_boot"), seed=self.seed)
        wanted = set(self.spec.metrics or self.metrics)
        return [r for r in rows if r["name"] in wanted]
