"""Per-conversation state of a TTT hybrid: keep it across turns, save and restore it, reset it only when asked.

A conversation's memory is its `TTTHybridCache` (the TTT layers' inner models plus the attention KV). This store is
the one place that decides when that memory starts over: at a new conversation id or on an explicit `reset`, never
because a turn ended or the context grew. Saved conversations are safetensors files (one per id) written atomically
(temp file + `os.replace`), so a failed save leaves the previous file as it was; a restored conversation continues
with exactly the logits it would have produced uninterrupted.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ttt_omni.atomic import replacing_file
from ttt_omni.cache import TTTHybridCache
from ttt_omni.hf_compat import cache_kwargs

FORMAT_VERSION = "1"
SUFFIX = ".safetensors"
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# config fields a saved state depends on: restoring into a model that differs in any of them is refused
_LAYOUT_FIELDS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim",
                  "ttt_layers", "ttt_type", "mini_batch_size", "attention_window", "vocab_size")


def _check_id(conversation_id: str) -> str:
    if not isinstance(conversation_id, str) or not _ID_PATTERN.fullmatch(conversation_id):
        raise ValueError(f"conversation id {conversation_id!r} is invalid; expected 1-128 characters from "
                         "[A-Za-z0-9._-], starting with a letter or digit")
    return conversation_id


@dataclass
class Conversation:
    """One conversation: every token so far and the cache that has absorbed all but the `pending` tail."""

    id: str
    cache: TTTHybridCache
    token_ids: list[int] = field(default_factory=list)

    @property
    def pending(self) -> list[int]:
        """Tokens in the history the cache has not seen yet (the last token `generate` produced)."""
        return self.token_ids[self.cache.get_seq_length():]


class ConversationStore:
    """Conversations keyed by id, in memory and (when `directory` is given) on disk."""

    def __init__(self, model, directory: str | os.PathLike | None = None):
        self.model = model
        self.directory = Path(directory) if directory is not None else None
        self._open: dict[str, Conversation] = {}

    # ------------------------------------------------------------ lifecycle
    def get(self, conversation_id: str) -> Conversation:
        """The conversation with this id: open in memory, else restored from disk, else a new, empty one."""
        _check_id(conversation_id)
        if conversation_id not in self._open:
            if self.directory is not None and self._path(conversation_id).is_file():
                return self.restore(conversation_id)
            self._open[conversation_id] = Conversation(conversation_id, TTTHybridCache(self.model.config))
        return self._open[conversation_id]

    def reset(self, conversation_id: str) -> Conversation:
        """Starts the conversation over: fresh TTT state, empty KV, no history (the saved file is kept)."""
        self._open[_check_id(conversation_id)] = Conversation(conversation_id, TTTHybridCache(self.model.config))
        return self._open[conversation_id]

    def list(self) -> list[str]:
        """Ids of the open and the saved conversations."""
        saved = set()
        if self.directory is not None and self.directory.is_dir():
            saved = {p.name[: -len(SUFFIX)] for p in self.directory.glob(f"*{SUFFIX}")
                     if _ID_PATTERN.fullmatch(p.name[: -len(SUFFIX)])}
        return sorted(saved | set(self._open))

    def delete(self, conversation_id: str) -> None:
        """Forgets the conversation, in memory and on disk. Raises KeyError if it exists in neither."""
        found = self._open.pop(_check_id(conversation_id), None) is not None
        if self.directory is not None and self._path(conversation_id).is_file():
            self._path(conversation_id).unlink()
            found = True
        if not found:
            raise KeyError(f"no conversation {conversation_id!r} (open: {sorted(self._open)})")

    # ------------------------------------------------------------ turns
    @torch.no_grad()
    def append(self, conversation_id: str, input_ids) -> torch.Tensor:
        """Prefills a turn onto the conversation's state; returns the logits at the turn's tokens [T, vocab]."""
        conv = self.get(conversation_id)
        turn = self._as_list(input_ids)
        feed = conv.pending + turn
        ids = torch.tensor([feed], dtype=torch.long, device=self.model.device)
        logits = self.model(input_ids=ids, **cache_kwargs(conv.cache)).logits
        conv.token_ids.extend(turn)
        return logits[0, len(feed) - len(turn):]

    @torch.no_grad()
    def generate(self, conversation_id: str, input_ids=(), **generate_kwargs) -> list[int]:
        """Appends `input_ids` (may be empty) and generates a reply with `model.generate` on the conversation's
        cache; returns the new tokens. The reply becomes part of the conversation."""
        conv = self.get(conversation_id)
        conv.token_ids.extend(self._as_list(input_ids))
        if not conv.token_ids:
            raise ValueError(f"conversation {conversation_id!r} is empty: give input_ids to start it")
        ids = torch.tensor([conv.token_ids], dtype=torch.long, device=self.model.device)
        out = self.model.generate(ids, attention_mask=torch.ones_like(ids), **cache_kwargs(conv.cache),
                                  **generate_kwargs)
        new = out[0, ids.shape[1]:].tolist()
        conv.token_ids.extend(new)
        return new

    # ------------------------------------------------------------ persistence
    def save(self, conversation_id: str) -> Path:
        """Writes the conversation to `<directory>/<id>.safetensors` atomically; returns the path."""
        conv = self._open.get(_check_id(conversation_id))
        if conv is None:
            raise KeyError(f"no open conversation {conversation_id!r} to save (open: {sorted(self._open)})")
        if self.directory is None:
            raise ValueError("this ConversationStore has no directory; create it with directory=... to save")
        self.directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"cache.{k}": v.cpu() for k, v in conv.cache.to_dict().items()}
        tensors["token_ids"] = torch.tensor(conv.token_ids, dtype=torch.int64)
        metadata = {"format_version": FORMAT_VERSION, "conversation_id": conversation_id,
                    "layout": json.dumps(self._layout())}
        path = self._path(conversation_id)
        with replacing_file(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
        return path

    def restore(self, conversation_id: str) -> Conversation:
        """Loads the saved conversation, replacing an open one with the same id."""
        path = self._path(_check_id(conversation_id))
        if not path.is_file():
            raise FileNotFoundError(f"no saved conversation {conversation_id!r} at {path}")
        try:
            tensors = load_file(str(path), device=str(self.model.device))
            with safe_open(str(path), "pt") as f:
                metadata = f.metadata() or {}
        except (SafetensorError, OSError) as e:
            raise ValueError(f"saved conversation {path} is not a readable safetensors file: {e}") from None
        if metadata.get("format_version") != FORMAT_VERSION or "token_ids" not in tensors:
            raise ValueError(f"{path} is not a saved conversation (format_version "
                             f"{metadata.get('format_version')!r}, expected {FORMAT_VERSION!r})")
        saved_layout = json.loads(metadata.get("layout", "{}"))
        if saved_layout != self._layout():
            diff = {k: (saved_layout.get(k), v) for k, v in self._layout().items() if saved_layout.get(k) != v}
            raise ValueError(f"{path} was saved from a model with another layout (saved, this model): {diff}")
        cache = TTTHybridCache.from_dict(
            self.model.config, {k[len("cache."):]: v for k, v in tensors.items() if k.startswith("cache.")})
        conv = Conversation(conversation_id, cache, tensors["token_ids"].tolist())
        self._open[conversation_id] = conv
        return conv

    # ------------------------------------------------------------ helpers
    def _path(self, conversation_id: str) -> Path:
        if self.directory is None:
            raise ValueError("this ConversationStore has no directory; create it with directory=... to use disk")
        return self.directory / f"{conversation_id}{SUFFIX}"

    def _layout(self) -> dict:
        config = self.model.config
        return {k: getattr(config, k) for k in _LAYOUT_FIELDS}

    @staticmethod
    def _as_list(input_ids) -> list[int]:
        if isinstance(input_ids, torch.Tensor):
            if input_ids.dim() == 2 and input_ids.shape[0] == 1:
                input_ids = input_ids[0]
            if input_ids.dim() != 1:
                raise ValueError(f"a turn is one sequence of token ids; got a tensor of shape {tuple(input_ids.shape)}")
            return input_ids.tolist()
        return [int(t) for t in input_ids]


__all__ = ["Conversation", "ConversationStore"]
