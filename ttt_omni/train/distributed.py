"""FSDP2 sharding that keeps the TTT inner model in float32.

Decoder layers and the root compute in bf16 (float32 master weights, float32 gradient reduction); each
`TTTInnerParams` gets its own float32 policy, so the inner model's initial weights, layer norm and eta gate are
never cast. The inner module stays unsharded between its forward and backward (reshard_after_forward=False): the
layer uses its parameters directly (they are tiny), so they must stay materialised until backward has used them.
"""
from __future__ import annotations

import torch
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from ttt_omni.layers import TTTInnerParams

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def shard(model: torch.nn.Module, layers: list[torch.nn.Module], bf16: bool) -> torch.nn.Module:
    """Shards each TTT inner model, each of `layers` (the LLM's decoder layers) and the rest with the root."""
    compute = torch.bfloat16 if bf16 else torch.float32
    main = MixedPrecisionPolicy(param_dtype=compute, reduce_dtype=torch.float32)
    fp32 = MixedPrecisionPolicy(param_dtype=torch.float32, reduce_dtype=torch.float32)
    for module in model.modules():
        if isinstance(module, TTTInnerParams):
            fully_shard(module, mp_policy=fp32, reshard_after_forward=False)
    for layer in layers:
        fully_shard(layer, mp_policy=main)
    fully_shard(model, mp_policy=main)
    return model


def full_model_state(model) -> dict:
    """The whole model's state dict on CPU (a collective: every rank must call it)."""
    return get_model_state_dict(model, options=FULL)


def full_optimizer_state(model, optimizer) -> dict:
    return get_optimizer_state_dict(model, optimizer, options=FULL)


def load_full_state(model, optimizer, model_state: dict, optimizer_state: dict) -> None:
    opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=False)
    set_model_state_dict(model, model_state, options=opts)
    set_optimizer_state_dict(model, optimizer, optimizer_state, options=opts)
