"""Per-token loss over a whole document, loss by position bin and perplexity with bootstrap CIs over documents.

`token_nll` scores every token of a document given all tokens before it that the model can use:
  * streaming (TTT models, or any document within the context limit): chunks of `chunk_size` tokens carry
    the model's cache, so the result equals one pass over the document (`chunk_size=None`);
  * rolling (a context-limited model on a longer document): windows of `context_limit` tokens moved by `stride`;
    each window scores only tokens not scored before, as in the Hugging Face perplexity guide.
Position of a loss = index of the predicted token (the first token has no loss). Position bins for lengths
[L1, L2, ...] are [0, L1), [L1, L2), ...; cumulative perplexity at L = exp(mean loss over positions < L).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ttt_omni.hf_compat import cache_kwargs, output_cache

from .stats import bootstrap_indices, percentile_ci


def token_nll(model, ids: torch.Tensor, *, chunk_size: int | None = 2048, context_limit: int | None = None,
              stride: int | None = None) -> np.ndarray:
    """Negative log-likelihood (nats, float64) of tokens 1..n-1 of the 1-D token tensor `ids`."""
    return token_scores(model, ids, chunk_size=chunk_size, context_limit=context_limit, stride=stride)[0]


@torch.inference_mode()
def token_scores(model, ids: torch.Tensor, *, chunk_size: int | None = 2048, context_limit: int | None = None,
                 stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(nll, greedy) of tokens 1..n-1: the loss, and whether the token was the model's argmax prediction."""
    ids = ids.reshape(-1).to(next(model.parameters()).device)
    n = ids.numel()
    nll, greedy = np.zeros(max(n - 1, 0)), np.zeros(max(n - 1, 0), dtype=bool)
    if n < 2:
        return nll, greedy
    if context_limit is not None and n > context_limit:
        _rolling(model, ids, context_limit, stride or max(1, context_limit // 2), nll, greedy)
        return nll, greedy
    step = n - 1 if chunk_size is None else chunk_size
    cache = None
    for s in range(0, n - 1, step):
        e = min(s + step, n - 1)
        res = model(ids[None, s:e], **cache_kwargs(cache))
        cache = output_cache(res)
        nll[s:e], greedy[s:e] = _score(res.logits[0], ids[s + 1:e + 1])
    return nll, greedy


def _rolling(model, ids: torch.Tensor, window: int, stride: int, nll: np.ndarray, greedy: np.ndarray) -> None:
    n = ids.numel()
    scored_to = 1  # first target position not scored yet
    for begin in range(0, n, stride):
        end = min(begin + window, n)
        logits = model(ids[None, begin:end], use_cache=False).logits[0]
        first = max(scored_to, begin + 1)
        nll[first - 1:end - 1], greedy[first - 1:end - 1] = _score(logits[first - 1 - begin:end - 1 - begin],
                                                                   ids[first:end])
        scored_to = end
        if end == n:
            break


def _score(logits: torch.Tensor, targets: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    logits = logits.float()
    nll = F.cross_entropy(logits, targets, reduction="none").double().cpu().numpy()
    return nll, (logits.argmax(-1) == targets).cpu().numpy()


def bin_edges(lengths: list[int]) -> list[tuple[int, int]]:
    return list(zip([0, *lengths[:-1]], lengths))


def bin_sums(nll: np.ndarray, lengths: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Sum of losses and number of scored tokens per position bin (position of nll[i] is i + 1)."""
    sums, counts = np.zeros(len(lengths)), np.zeros(len(lengths), dtype=np.int64)
    for j, (lo, hi) in enumerate(bin_edges(lengths)):
        part = nll[max(lo - 1, 0):max(hi - 1, 0)]
        sums[j], counts[j] = part.sum(), part.size
    return sums, counts


def ppl_metrics(sums: np.ndarray, counts: np.ndarray, lengths: list[int], *, n_boot: int = 1000, seed: int = 0,
                alpha: float = 0.05) -> list[dict]:
    """Metric rows from per-document bin sums/counts (shape docs x bins): `loss` and `ppl` by position bin,
    `cum_ppl` at each length, `degradation_pct` of each bin's ppl relative to the first bin; CIs by bootstrap over
    documents; n = documents with tokens in the bin (for cum_ppl: before the length)."""
    sums, counts = np.asarray(sums, dtype=np.float64), np.asarray(counts, dtype=np.float64)
    idx = bootstrap_indices(len(sums), n_boot, seed)
    point = _stats(sums[None], counts[None])
    boot = _stats(sums[idx], counts[idx])
    has_bin, has_cum = (counts > 0).sum(0), (np.cumsum(counts, axis=1) > 0).sum(0)
    rows = []
    for name, n in (("loss", has_bin), ("ppl", has_bin), ("cum_ppl", has_cum), ("degradation_pct", has_bin)):
        low, high = percentile_ci(boot[name], alpha)
        for j, length in enumerate(lengths):
            rows.append(dict(name=name, bin=f"length={length}", value=_finite(point[name][0, j]),
                             ci_low=_finite(low[j]), ci_high=_finite(high[j]), n=int(n[j])))
    return rows


def _stats(sums: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
    """sums/counts: (replicates, docs, bins) -> each statistic as (replicates, bins)."""
    s, c = sums.sum(1), counts.sum(1)
    with np.errstate(all="ignore"):
        loss = s / c
        ppl = np.exp(loss)
        return {"loss": loss, "ppl": ppl, "cum_ppl": np.exp(np.cumsum(s, 1) / np.cumsum(c, 1)),
                "degradation_pct": (ppl / ppl[:, :1] - 1.0) * 100.0}


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
