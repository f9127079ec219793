"""Speech training data: a `Dialogue` (train.data.load_jsonl) -> one `SpeechSequence` for `OmniSpeechTTT.loss`.

A turn whose speaker is "assistant" (or "gpt"/"model") is a reply: its text is learnt (LM loss) and, when it has
`units` or `audio` (turned into units by a `UnitExtractor`, repeats merged as LLaMA-Omni's targets are), so are its
units (CTC loss, weight `ctc_loss_weight` from the model config). A reply with neither is learnt as text only.
Every other turn is the user's: its `audio` is what the model hears, else its text. Turns use the chat template of
`ttt-omni chat`, so training and chat see the same prompts.
"""
from __future__ import annotations

import numpy as np
import torch

from ttt_omni.labels import IGNORE_INDEX
from ttt_omni.speech.audio import AudioError, load_wav
from ttt_omni.speech.chat import SPEECH_INSTRUCTION, stop_tokens, tokenize_with_speech, turn_text
from ttt_omni.speech.model import SpeechSequence

from .data import Dialogue, Turn

ASSISTANT = ("assistant", "gpt", "model")


def reduce_units(units) -> list[int]:
    """Merges runs of the same unit (LLaMA-Omni's targets; the vocoder's duration predictor restores lengths)."""
    units = [int(u) for u in units]
    return [u for i, u in enumerate(units) if i == 0 or u != units[i - 1]]


def speech_sequence(conv: Dialogue, tokenizer, unit_extractor=None, num_units: int | None = None) -> SpeechSequence:
    """A conversation -> token ids with speech placeholders, next-token labels on the replies, reply index of the
    positions whose hidden states feed the unit decoder, the user speech samples and the reply unit targets.
    `num_units`: the model's unit vocabulary size (unit ids at or above it are refused)."""
    where = f"conversation {conv.conversation_id!r}"
    ids: list[int] = []
    labels: list[int] = []
    reply: list[int] = []
    seq = SpeechSequence(ids, labels=labels, reply=reply)
    eos = stop_tokens(tokenizer)
    for n, turn in enumerate(conv.turns):
        if (turn.speaker or "").lower() in ASSISTANT:
            if not ids:
                raise ValueError(f"{where} starts with a reply; expected a user turn first")
            tokens = tokenizer(turn.text, add_special_tokens=False)["input_ids"] + list(eos[-1:])
            units = _reply_units(turn, f"{where}, turn {n}", unit_extractor, num_units)
            k = len(seq.units) if units else -1
            if units:
                seq.units.append(torch.tensor(units, dtype=torch.long))
            # the position before each reply token predicts it: relabel the last prompt position and the reply's own
            labels[-1], reply[-1] = tokens[0], k
            ids += tokens
            labels += tokens[1:] + [IGNORE_INDEX]
            reply += [k] * (len(tokens) - 1) + [-1]
        else:
            if turn.units is not None:
                raise ValueError(f"{where}, turn {n}: a user turn (speaker {turn.speaker!r}) has units; units are "
                                 f"the targets of a reply (speaker one of {ASSISTANT})")
            if turn.audio is not None:
                seq.speech.append(_wav(turn.audio, where))
            content = SPEECH_INSTRUCTION if turn.audio is not None else turn.text
            new = tokenize_with_speech(tokenizer, turn_text(tokenizer, content, first=not ids))
            ids += new
            labels += [IGNORE_INDEX] * len(new)
            reply += [-1] * len(new)
    if not seq.units and all(x == IGNORE_INDEX for x in labels):
        raise ValueError(f"{where} has no assistant reply to learn from (speaker one of {ASSISTANT})")
    return seq


def _reply_units(turn: Turn, where: str, unit_extractor, num_units: int | None) -> list[int] | None:
    units = turn.units
    if units is None and turn.audio is not None:
        if unit_extractor is None:
            raise ValueError(f"{where}: a reply has audio but no units; give the turn's `units`, or train from Python "
                             "with a UnitExtractor (HuBERT + k-means): Trainer(cfg, unit_extractor=...)")
        units = reduce_units(unit_extractor(_wav(turn.audio, where)))
    if units and num_units is not None and max(units) >= num_units:
        raise ValueError(f"{where}: unit id {max(units)} is out of range; the model has {num_units} units "
                         f"(ids 0..{num_units - 1})")
    return units


def _wav(path: str, where: str) -> np.ndarray:
    try:
        return load_wav(path)
    except (FileNotFoundError, AudioError) as e:
        raise type(e)(f"{where}: {e}") from None


__all__ = ["speech_sequence", "reduce_units", "ASSISTANT"]
