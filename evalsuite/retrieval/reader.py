"""A model reads a prompt once and answers two ways from the same state: the log-likelihood of each candidate answer
(`rank`) and a greedy answer (`generate`).

The prompt is streamed through the model's cache in chunks (one pass for a TTT model, whatever the length). A model
with a context limit sees only the last `limit - answer` tokens of a longer prompt (a window ending at the question,
as ppl_vs_length's rolling windows do), so the answer still fits in its context. Each candidate and the greedy
answer continue a copy of the prompt's cache, so no answer sees another.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ttt_omni.hf_compat import cache_kwargs, output_cache

from .problems import RetrievalError


@dataclass
class Reading:
    visible_from: int  # index of the first prompt token the model saw (> 0 when its context limit cut the prompt)
    logprobs: list[float] = field(default_factory=list)  # per candidate, in order (empty when not ranked)
    output_ids: list[int] = field(default_factory=list)  # the greedy answer (empty when not generated)


@torch.inference_mode()
def read(model, prompt: list[int], *, candidates: list[list[int]] = (), max_new_tokens: int = 0,
         stop: Callable[[list[int]], bool] | None = None, eos: set[int] = frozenset(),
         context_limit: int | None = None, chunk_size: int = 2048) -> Reading:
    """Rank `candidates` (token ids continuing `prompt`) by log-likelihood and/or generate up to `max_new_tokens`
    greedily (stopping at an `eos` id or when `stop(ids)` says so)."""
    if not candidates and max_new_tokens < 1:
        raise ValueError("read: nothing to do; give candidates to rank or max_new_tokens > 0 to generate")
    if any(not c for c in candidates):
        raise ValueError("read: a candidate answer has no tokens")
    answer = max([max_new_tokens, *map(len, candidates)])
    start = 0
    if context_limit is not None and len(prompt) + answer > context_limit:
        if context_limit <= answer:
            raise RetrievalError(f"the model's context of {context_limit} tokens cannot hold an answer of {answer} "
                                 "tokens (params.answer_tokens or the longest candidate)")
        start = len(prompt) + answer - context_limit
    device = next(model.parameters()).device
    cache, last = _prefill(model, torch.tensor(prompt[start:], device=device), chunk_size)
    reading = Reading(start)
    for cand in candidates:
        ids = torch.tensor(cand, device=device)
        logp = torch.log_softmax(last.float(), -1)[ids[0]]
        if len(cand) > 1:
            out = model(ids[None, :-1], **cache_kwargs(copy.deepcopy(cache)))
            logp = logp + torch.log_softmax(out.logits[0].float(), -1).gather(1, ids[1:, None]).sum()
        reading.logprobs.append(float(logp))
    if max_new_tokens > 0:
        reading.output_ids = _greedy(model, cache, last, max_new_tokens, stop, eos, device)
    return reading


def _prefill(model, ids: torch.Tensor, chunk_size: int):
    """The cache after `ids` and the logits of the last position."""
    cache, out = None, None
    for s in range(0, ids.numel(), chunk_size):
        out = model(ids[None, s:s + chunk_size], logits_to_keep=1, **cache_kwargs(cache))
        cache = output_cache(out)
    return cache, out.logits[0, -1]


def _greedy(model, cache, logits, max_new_tokens, stop, eos, device) -> list[int]:
    out: list[int] = []
    for _ in range(max_new_tokens):
        token = int(logits.argmax())
        if token in eos:
            break
        out.append(token)
        if (stop is not None and stop(out)) or len(out) == max_new_tokens:
            break
        res = model(torch.tensor([[token]], device=device), **cache_kwargs(cache))
        cache, logits = output_cache(res), res.logits[0, -1]
    return out
