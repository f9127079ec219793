"""Training on speech conversations: LM loss on the assistant's text plus a weighted CTC loss on its speech units.

Data: JSONL lines {"conversation_id", "turns": [{"speaker", "text", "audio"?, "units"?}]}. A turn whose speaker is
"assistant" (or "gpt"/"model") is a reply: its text is learnt (LM loss) and, when it has `units` or `audio` (turned
into units by a `UnitExtractor`, repeats merged as LLaMA-Omni's targets are), so are its units (CTC loss, weight
`ctc_loss_weight` from the model config). Every other turn is the user's: its `audio` (a WAV path, relative to the
JSONL file) is what the model hears, else its text. Turns use the chat template of `ttt-omni chat`, so training and
chat see the same prompts.

`SpeechTrainer` runs one whole conversation per step through `OmniSpeechTTT.loss` (TTT state fresh at the start of
each conversation, carried through all its turns), with the trainer's parameter groups (fp32 TTT inner parameters
apart) and cosine schedule. `ttt-omni train` uses it when `model_from` is a LLaMA-Omni(-layout) checkpoint.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ttt_omni.labels import IGNORE_INDEX
from ttt_omni.layers import keep_float32
from ttt_omni.speech.model import OmniSpeechTTT, SpeechSequence
from ttt_omni.speech.audio import load_wav
from ttt_omni.speech.chat import SPEECH_INSTRUCTION, stop_tokens, tokenize_with_speech, turn_text

from .config import TrainConfig
from .data import Dialogue, load_jsonl
from .trainer import append_csv, cosine_schedule, param_groups

ASSISTANT = ("assistant", "gpt", "model")


def reduce_units(units) -> list[int]:
    """Merges runs of the same unit (LLaMA-Omni's targets; the vocoder's duration predictor restores lengths)."""
    units = [int(u) for u in units]
    return [u for i, u in enumerate(units) if i == 0 or u != units[i - 1]]


def speech_sequence(conv: Dialogue, tokenizer, unit_extractor=None) -> SpeechSequence:
    """A conversation -> token ids with speech placeholders, next-token labels on the replies, reply index of the
    positions whose hidden states feed the unit decoder, the user speech samples and the reply unit targets."""
    ids: list[int] = []
    labels: list[int] = []
    reply: list[int] = []
    seq = SpeechSequence(ids, labels=labels, reply=reply)
    eos = stop_tokens(tokenizer)
    for turn in conv.turns:
        if (turn.speaker or "").lower() in ASSISTANT:
            tokens = tokenizer(turn.text, add_special_tokens=False)["input_ids"] + list(eos[-1:])
            units = turn.units
            if units is None and turn.audio is not None:
                if unit_extractor is None:
                    raise ValueError(f"conversation {conv.conversation_id!r}: a reply has audio but no units; pass a "
                                     "UnitExtractor (HuBERT + k-means) or give the turn's `units`")
                units = reduce_units(unit_extractor(load_wav(turn.audio)))
            k = len(seq.units) if units else -1
            if units:
                seq.units.append(torch.tensor(units, dtype=torch.long))
            if not ids:
                raise ValueError(f"conversation {conv.conversation_id!r} starts with a reply; expected a user turn")
            # the position before each reply token predicts it: relabel the last prompt position and the reply's own
            labels[-1], reply[-1] = tokens[0], k
            ids += tokens
            labels += tokens[1:] + [IGNORE_INDEX]
            reply += [k] * (len(tokens) - 1) + [-1]
        else:
            if turn.audio is not None:
                seq.speech.append(load_wav(turn.audio))
            content = SPEECH_INSTRUCTION if turn.audio is not None else turn.text
            new = tokenize_with_speech(tokenizer, turn_text(tokenizer, content, first=not ids))
            ids += new
            labels += [IGNORE_INDEX] * len(new)
            reply += [-1] * len(new)
    if not seq.units and all(x == IGNORE_INDEX for x in labels):
        raise ValueError(f"conversation {conv.conversation_id!r} has no assistant reply to learn from")
    return seq


class SpeechTrainer:
    def __init__(self, cfg: TrainConfig, model: OmniSpeechTTT | None = None, tokenizer=None, unit_extractor=None):
        from ttt_omni.speech.omni_checkpoint import load_omni

        from .tokenizer import load_tokenizer

        if cfg.jsonl is None:
            raise ValueError("speech training reads conversations from `jsonl` (turns with audio/units)")
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        torch.manual_seed(cfg.seed)
        self.model = model if model is not None else load_omni(cfg.model_from)
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg.model_from)
        self.sequences = [speech_sequence(c, self.tokenizer, unit_extractor) for c in load_jsonl(cfg.jsonl)]
        self.model.train()
        keep_float32(self.model)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg), betas=(0.9, 0.95))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cosine_schedule(cfg))
        self.order = list(range(len(self.sequences)))
        self.step = 0

    def evaluate(self) -> dict[str, float]:
        """Mean losses over all conversations, without updating anything."""
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            parts = [self.model.loss(s) for s in self.sequences]
        self.model.train(was_training)
        return {k: float(np.mean([p[k].item() for p in parts if k in p])) for k in parts[0]}

    def train(self, steps: int | None = None) -> dict[str, float]:
        """Trains `steps` (default: cfg.steps) conversations, one per step; logs to OUTPUT/train_log.csv."""
        self.out.mkdir(parents=True, exist_ok=True)
        last: dict[str, float] = {}
        for _ in range(steps or self.cfg.steps):
            if self.step % len(self.order) == 0:
                random.Random(self.cfg.seed * 100003 + self.step).shuffle(self.order)
            losses = self.model.loss(self.sequences[self.order[self.step % len(self.order)]])
            if not torch.isfinite(losses["loss"]):
                raise ValueError(f"step {self.step}: training loss is {losses['loss'].item()}")
            losses["loss"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.grad is not None], self.cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            last = {"step": self.step, **{k: v.item() for k, v in losses.items()}, "grad_norm": float(grad_norm),
                    "lr": self.scheduler.get_last_lr()[0]}
            append_csv(self.out / "train_log.csv", last)
        return last

    def export(self, path: str | Path | None = None) -> Path:
        from ttt_omni.speech.omni_checkpoint import save_omni

        return save_omni(self.model, Path(path) if path else self.out / "final", tokenizer=self.tokenizer)


__all__ = ["SpeechTrainer", "speech_sequence", "reduce_units"]
