"""Training data: documents and multi-turn conversations, cut into windows that carry TTT state.

A conversation (a book, a play read as speaker turns, or a JSONL conversation) is tokenised once and cut into
consecutive windows of the stage's context length. Its windows go, in order, to one *lane* (one row of the
batch), so the trainer can carry that row's TTT state from one step to the next and reset it only when the lane
starts a new conversation. A window never spans two conversations, so there is no padding inside a conversation:
only a conversation's last window is padded at its end (after every real token, so causality keeps the pads away
from every real output), with labels IGNORE_INDEX (-100) there. Lengths are multiples of the mini-batch size.
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


@dataclass
class Turn:
    speaker: str | None
    text: str
    audio: str | None = None


@dataclass
class Conversation:
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


def book_conversations(split: str = "train") -> list[Conversation]:
    """The bundled books of one split: novels as one-turn documents, plays and dialogues as speaker turns."""
    out = []
    for book in books(split):
        text = book.read()
        turns = parse_play(text) if book.kind in ("play", "dialogue") else [Turn(None, text)]
        out.append(Conversation(book.file.removesuffix(".txt"), turns))
    return out


def load_jsonl(path: str | Path) -> list[Conversation]:
    """Conversations from JSONL lines {"conversation_id", "turns": [{"speaker", "text", "audio"?}]}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"conversation file not found: {path}")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            turns = [Turn(t.get("speaker"), t["text"], t.get("audio")) for t in row["turns"]]
            cid = str(row["conversation_id"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{n}: expected {{\"conversation_id\": ..., \"turns\": [{{\"speaker\", \"text\"}}]}}"
                             f" ({type(e).__name__}: {e})") from None
        if not turns:
            raise ValueError(f"{path}:{n}: conversation {cid!r} has no turns")
        out.append(Conversation(cid, turns))
    return out


@dataclass
class TokenizedConversation:
    conversation_id: str
    ids: list[int]
    turn_ids: list[int]  # turn number of every token


def tokenize(conv: Conversation, tokenizer) -> TokenizedConversation:
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
