"""Training data: documents and multi-turn conversations, cut into windows that carry TTT state.

A conversation (a book, a play read as speaker turns, or a JSONL conversation) is tokenised once and cut into
consecutive windows of the stage's context length. Its windows go, in order, to one *lane* (one row of the
batch), so the trainer can carry that row's TTT state from one step to the next and reset it only when the lane
starts a new conversation. A window never spans two conversations, so there is no padding inside a conversation:
only a conversation's last window is padded at its end (after every real token, so causality keeps the pads away
from every real output), with labels IGNORE_INDEX (-100) there. Lengths are multiples of the mini-batch size.

`load_jsonl` reads the one JSONL conversation format of text and speech training alike (speech training turns the
same `Dialogue`s into whole-conversation speech sequences: speech_data.py).
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ttt_omni.data_manifest import books
from ttt_omni.labels import IGNORE_INDEX

# "Nora.", "Helmer (wagging his finger).", "TREPLIEFF. [Listening]", "THE FLOWER GIRL [to Pickering]"
_SPEAKER = re.compile(r"^(?P<name>(?:(?:Mrs|Mr|Dr|MRS|MR|DR)\.? )?(?:[A-Z][a-z]+|[A-Z][A-Z'\-]+(?: [A-Z][A-Z'\-]+){0,3}))"
                      r"(?:\s*(?P<stage>[\[(][^\])]*[\])]))?\s*(?:\.\s+|\s+(?=\[)|(?<=[\])])\s+)(?P<text>.+)", re.S)


JSONL_FORMAT = '{"conversation_id", "turns": [{"speaker", "text", "audio"?, "units"?}]}'


@dataclass
class Turn:
    speaker: str | None
    text: str
    audio: str | None = None  # a WAV path (load_jsonl makes it absolute)
    units: list[int] | None = None  # a spoken reply's speech units (the unit decoder's CTC targets)


@dataclass
class Dialogue:
    """A training conversation: a book, a play read as speaker turns, or a JSONL line. (The live state of a
    conversation being chatted with is `ttt_omni.conversation.Conversation`.)"""

    conversation_id: str
    turns: list[Turn]


def parse_play(text: str, min_turns: int = 20) -> list[Turn]:
    """Speaker turns of a play or dialogue (paragraphs opening with a speaker tag); one turn if too few are found.

    Paragraphs without a tag (stage directions, narration) join the turn before them.
    """
    turns: list[Turn] = []
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        if not para:
            continue
        m = _SPEAKER.match(para)
        if m:
            turns.append(Turn(m["name"].title(), m["text"].strip()))
        elif turns:
            turns[-1].text += "\n" + para
        else:
            turns.append(Turn(None, para))
    if sum(t.speaker is not None for t in turns) < min_turns:
        return [Turn(None, text)]
    return turns


def book_conversations(split: str = "train") -> list[Dialogue]:
    """The bundled books of one split: novels as one-turn documents, plays and dialogues as speaker turns."""
    out = []
    for book in books(split):
        text = book.read()
        turns = parse_play(text) if book.kind in ("play", "dialogue") else [Turn(None, text)]
        out.append(Dialogue(book.file.removesuffix(".txt"), turns))
    return out


def load_jsonl(path: str | Path) -> list[Dialogue]:
    """Conversations from JSONL lines {"conversation_id", "turns": [{"speaker", "text", "audio"?, "units"?}]}.

    `audio` is a WAV path relative to the JSONL file (made absolute here); a turn with audio may leave out `text`;
    `units` are a spoken reply's speech units. Text training reads only speakers and text; speech training all of it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"conversation file not found: {path}")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: expected one JSON object per line, {JSONL_FORMAT}; not JSON: {e}") from None
        out.append(_dialogue(row, f"{path}:{n}", path.parent))
    return out


def _dialogue(row, where: str, folder: Path) -> Dialogue:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object {JSONL_FORMAT}, got a {type(row).__name__}")
    missing = [k for k in ("conversation_id", "turns") if k not in row]
    if missing:
        raise ValueError(f"{where}: expected {JSONL_FORMAT}; missing {', '.join(missing)}")
    cid = row["conversation_id"]
    if isinstance(cid, bool) or not isinstance(cid, (str, int)):
        raise ValueError(f"{where}: expected conversation_id to be a string or an integer, got {cid!r}")
    cid, turns = str(cid), row["turns"]
    if not isinstance(turns, list):
        raise ValueError(f"{where}: conversation {cid!r}: expected turns to be a list, got a {type(turns).__name__}")
    if not turns:
        raise ValueError(f"{where}: conversation {cid!r} has no turns")
    return Dialogue(cid, [_turn(t, f"{where}: conversation {cid!r}, turn {k}", folder) for k, t in enumerate(turns)])


def _turn(turn, where: str, folder: Path) -> Turn:
    if not isinstance(turn, dict):
        raise ValueError(f'{where}: expected an object {{"speaker", "text", "audio"?, "units"?}}, got a '
                         f"{type(turn).__name__}")
    speaker, text, audio, units = (turn.get(k) for k in ("speaker", "text", "audio", "units"))
    if speaker is not None and not isinstance(speaker, str):
        raise ValueError(f"{where}: expected speaker to be a string, got {speaker!r}")
    if audio is not None and not (isinstance(audio, str) and audio):
        raise ValueError(f"{where}: expected audio to be a WAV path (relative to the JSONL file), got {audio!r}")
    if text is None and audio is None:
        raise ValueError(f"{where}: expected text (a string; it may be left out only in a turn with audio)")
    if text is not None and not isinstance(text, str):
        raise ValueError(f"{where}: expected text to be a string, got {text!r}")
    if units is not None and not (isinstance(units, list) and units and all(
            isinstance(u, int) and not isinstance(u, bool) and u >= 0 for u in units)):
        raise ValueError(f"{where}: expected units to be a non-empty list of unit ids (integers >= 0), got "
                         f"{str(units)[:80]}")
    return Turn(speaker, text or "", str(folder / audio) if audio else None, units)


@dataclass
class TokenizedConversation:
    conversation_id: str
    ids: list[int]
    turn_ids: list[int]  # turn number of every token


def tokenize(conv: Dialogue, tokenizer) -> TokenizedConversation:
    """Turns are rendered as "Speaker: text" paragraphs; each token remembers its turn number."""
    ids, turn_ids = [], []
    for n, turn in enumerate(conv.turns):
        text = (f"{turn.speaker}: {turn.text}" if turn.speaker else turn.text) + "\n\n"
        tok = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += tok
        turn_ids += [n] * len(tok)
    return TokenizedConversation(conv.conversation_id, ids, turn_ids)


@dataclass
class Window:
    conversation: int  # index into the packer's conversations; -1 for an idle lane
    index: int  # window number inside its conversation (0 = state reset)
    start: int


@dataclass
class LanePacker:
    """Deterministic batches of windows: lane b continues its conversation from one step to the next.

    The plan of an epoch is a pure function of (seed, epoch), so a resumed run rebuilds it and takes batch `step`
    without replaying data.
    """

    conversations: list[TokenizedConversation]
    batch_size: int
    context: int
    mini_batch_size: int
    seed: int = 0
    pad_id: int = 0
    _plans: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.context % self.mini_batch_size:
            raise ValueError(f"context length {self.context} must be a multiple of mini_batch_size {self.mini_batch_size}")
        if not self.conversations:
            raise ValueError("no conversations to train on")
        # Windows hold context tokens plus one to shift labels by: conversations of one token teach nothing.
        self.conversations = [c for c in self.conversations if len(c.ids) > 1]

    def _windows(self, conv: int) -> list[Window]:
        n = len(self.conversations[conv].ids) - 1  # predict tokens 1..n
        return [Window(conv, i, s) for i, s in enumerate(range(0, n, self.context))]

    def plan(self, epoch: int) -> list[list[Window]]:
        """Lanes of the epoch: conversations shuffled, each given whole to the least-loaded lane."""
        if epoch not in self._plans:
            order = list(range(len(self.conversations)))
            random.Random(self.seed * 100003 + epoch).shuffle(order)
            lanes: list[list[Window]] = [[] for _ in range(self.batch_size)]
            for conv in order:
                min(lanes, key=len).extend(self._windows(conv))
            steps = max(len(lane) for lane in lanes)
            for lane in lanes:
                lane.extend(Window(-1, 0, 0) for _ in range(steps - len(lane)))
            self._plans = {epoch: lanes}
        return self._plans[epoch]

    def steps_per_epoch(self) -> int:
        return len(self.plan(0)[0])

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """Batch number `step` (counting across epochs): input_ids, labels, turn_ids [B, context]; reset,
        conversation, window [B]. labels are already shifted (labels[t] is the token after input_ids[t])."""
        per_epoch = self.steps_per_epoch()
        lanes = self.plan(step // per_epoch)
        B, L = self.batch_size, self.context
        input_ids = torch.full((B, L), self.pad_id, dtype=torch.long)
        labels = torch.full((B, L), IGNORE_INDEX, dtype=torch.long)
        turn_ids = torch.full((B, L), -1, dtype=torch.long)
        reset = torch.ones(B, dtype=torch.bool)
        conv_idx = torch.full((B,), -1, dtype=torch.long)
        window_idx = torch.zeros(B, dtype=torch.long)
        for b, lane in enumerate(lanes):
            w = lane[step % per_epoch]
            if w.conversation < 0:
                continue
            c = self.conversations[w.conversation]
            end = min(w.start + L, len(c.ids) - 1)
            n = end - w.start
            input_ids[b, :n] = torch.tensor(c.ids[w.start:end])
            labels[b, :n] = torch.tensor(c.ids[w.start + 1:end + 1])
            turn_ids[b, :n] = torch.tensor(c.turn_ids[w.start:end])
            reset[b], conv_idx[b], window_idx[b] = w.index == 0, w.conversation, w.index
        return {"input_ids": input_ids, "labels": labels, "turn_ids": turn_ids, "reset": reset,
                "conversation": conv_idx, "window": window_idx}
