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
from ttt_omni.schema import PositiveInt, Schema

from ..task import CorpusDataset, TaskKind, TaskSpec, Unit, check_section, register_kind

PARAM_DEFAULTS = {"chunk_size": 2048, "stride": None, "n_boot": 1000}


class Params(Schema):
    chunk_size: PositiveInt | None = None  # streaming chunk (tokens); None: PARAM_DEFAULTS
    stride: PositiveInt | None = None  # rolling-window stride for a model with a context limit
    n_boot: PositiveInt | None = None


@register_kind("ppl_vs_length")
class PplVsLength(TaskKind):
    metrics = frozenset({"loss", "ppl", "cum_ppl", "degradation_pct"})

    @classmethod
    def validate(cls, spec: TaskSpec) -> None:
        where = spec.source
        if not spec.lengths:
            raise TaskSpecError(f"{where}: kind ppl_vs_length needs lengths (e.g. [1k, 2k, 4k])")
        dataset = check_section(spec, "dataset", CorpusDataset)
        if dataset.source != "books" and dataset.path is None:
            raise TaskSpecError(f"{where}: dataset.source must be 'books' (the bundled corpus) or give dataset.path")
        check_section(spec, "params", Params)

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
        value = self.spec.params.get(key)
        return PARAM_DEFAULTS[key] if value is None else value

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
