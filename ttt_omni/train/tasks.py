"""What a training step learns from: text windows or speech conversations. The one loop (trainer.py) runs either.

A task gives this process's batch of a step, a pure function of (seed, step), so a resumed run takes the same batch
without replaying data, and the losses of a batch: {"loss": the total to backpropagate, and the parts named in
`log_parts`, logged beside it}. `carried` is the TTT state handed from one step to the next (TTT layer index ->
state): the trainer keeps it (and writes it in every checkpoint); `loss` returns the state the next step starts from.
"""
from __future__ import annotations

import random
from dataclasses import replace

import torch
import torch.nn.functional as F

from ttt_omni.hf_compat import cache_kwargs
from ttt_omni.labels import IGNORE_INDEX
from ttt_omni.ops import TTTState
from ttt_omni.speech.model import SpeechSequence

from .data import LanePacker


class TextWindows:
    """Each process's rows (lanes) of the packer's global batch of windows. A lane's TTT state at the end of a step
    is the start state of its next window (detached: truncated backprop through time) unless that window starts a
    new conversation, or `state_reset_every` windows have passed. With a `teacher` (a frozen causal LM) the loss
    adds `kl_weight` x KL(teacher || model) of the next-token distributions at the labelled positions."""

    log_parts: tuple[str, ...] = ()

    def __init__(self, packer: LanePacker, accelerator, ttt_layers: list[int], state_reset_every: int | None,
                 teacher=None, kl_weight: float = 0.0):
        self.packer, self.accelerator = packer, accelerator
        self.ttt_layers, self.state_reset_every = ttt_layers, state_reset_every
        self.teacher, self.kl_weight = teacher, kl_weight
        if teacher is not None:
            self.log_parts = ("lm", "kl")
        rows = packer.batch_size // accelerator.num_processes
        self.rows = slice(accelerator.process_index * rows, (accelerator.process_index + 1) * rows)

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        return {k: v[self.rows] for k, v in self.packer.batch(step).items()}

    def loss(self, model, batch: dict, carried: dict[int, TTTState]) -> tuple[dict, dict[int, TTTState]]:
        device = self.accelerator.device
        input_ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)
        kwargs = {}
        if self.ttt_layers:
            cache = self.accelerator.unwrap_model(model).make_cache()
            restart = batch["reset"]
            if self.state_reset_every:
                restart = restart | (batch["window"] % self.state_reset_every == 0)
            if carried and not restart.all():
                for i, state in carried.items():
                    cache.update_ttt_state(state, i)
                cache.restart_ttt_rows(restart.to(device))
            kwargs = cache_kwargs(cache)
        with self.accelerator.autocast():
            logits = model(input_ids=input_ids, **kwargs).logits
        if self.ttt_layers:
            # Each window starts at position 0 (attention starts afresh); TTT carries its weights across windows.
            carried = {i: replace(cache.get_ttt_state(i).detach(), seen=0) for i in self.ttt_layers}
        loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
        if self.teacher is None:
            return {"loss": loss}, carried
        with torch.no_grad(), self.accelerator.autocast():
            target = self.teacher(input_ids=input_ids, use_cache=False).logits
        kept = labels.flatten() != IGNORE_INDEX
        kl = F.kl_div(F.log_softmax(logits.float().flatten(0, 1)[kept], -1),
                      F.log_softmax(target.float().flatten(0, 1)[kept], -1), log_target=True, reduction="batchmean")
        return {"loss": loss + self.kl_weight * kl, "lm": loss, "kl": kl}, carried


class SpeechConversations:
    """One whole conversation per step and process, through `OmniSpeechTTT` (loss = LM + ctc_loss_weight x CTC).
    Its TTT state starts fresh at the conversation's start and runs through all its turns, so nothing is carried to
    the next step. Each epoch shuffles the conversations; process r of W takes number step * W + r of that stream."""

    log_parts: tuple[str, ...] = ("lm", "ctc")

    def __init__(self, sequences: list[SpeechSequence], accelerator, seed: int):
        if not sequences:
            raise ValueError("no conversations to train on")
        self.sequences, self.accelerator, self.seed = sequences, accelerator, seed

    def batch(self, step: int) -> SpeechSequence:
        epoch, i = divmod(step * self.accelerator.num_processes + self.accelerator.process_index, len(self.sequences))
        order = list(range(len(self.sequences)))
        random.Random(self.seed * 100003 + epoch).shuffle(order)
        return self.sequences[order[i]]

    def loss(self, model, batch: SpeechSequence, carried: dict[int, TTTState]) -> tuple[dict, dict[int, TTTState]]:
        with self.accelerator.autocast():
            return model(batch), {}


__all__ = ["TextWindows", "SpeechConversations"]
