"""The one place that knows what this transformers release calls the cache.

transformers 5.24 renamed the cache argument of models, decoder layers, attention modules, mask functions and
`generate`, and the cache field of model outputs, from `past_key_values` to `cache`. The old name still works in
5.24 with a FutureWarning, but where both names reach one module the old one is dropped, so a cache passed under the
old name can silently be replaced by a fresh one. Our code passes and reads the cache under `CACHE_ARG` only and
accepts either name from callers (`take_cache`).
"""
from __future__ import annotations

import inspect

from transformers.models.llama.modeling_llama import LlamaDecoderLayer

OLD_CACHE_ARG = "past_key_values"
# signature() follows functools.wraps, so decorators such as deprecate_kwarg do not hide the real parameter name.
CACHE_ARG = "cache" if "cache" in inspect.signature(LlamaDecoderLayer.forward).parameters else OLD_CACHE_ARG


def cache_kwargs(cache) -> dict:
    """Keyword arguments that hand `cache` to a transformers model, layer or `generate` (with use_cache=True)."""
    return {CACHE_ARG: cache, "use_cache": True}


def output_cache(output):
    """The cache a model output carries (`output.cache` or `output.past_key_values`, by release)."""
    return getattr(output, CACHE_ARG)


def take_cache(kwargs: dict, where: str):
    """Pops the cache from `kwargs` under either name; refuses two different caches. `where` names the caller."""
    new, old = kwargs.pop("cache", None), kwargs.pop(OLD_CACHE_ARG, None)
    if new is not None and old is not None and new is not old:
        raise ValueError(f"{where} got two different caches (cache= and past_key_values=); pass one")
    return new if new is not None else old
