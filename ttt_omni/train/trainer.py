"""The training loop: accelerate on one CPU, one GPU or many; text or speech, one loop.

What a step learns from is a task (tasks.py): text windows of conversations (a TTT-Llama or Llama; each batch row
is a lane whose TTT state is carried across its conversation's windows, see data.LanePacker) or, when `model_from`
is a LLaMA-Omni(-layout) checkpoint, whole speech conversations (an `OmniSpeechTTT`; loss = LM + ctc_loss_weight x
CTC on the replies' speech units). Everything else is this one loop: the inner-model parameters are float32 in
their own optimizer group (bf16 autocast never touches them: the ops turn autocast off), a cosine schedule,
gradient clipping, train_log.csv, the TTT monitor and NaN alarms, and checkpoints that hold everything needed to
continue bit-identically: weights, optimizer, scheduler, RNG states, the step, and the carried TTT states (one file
per process); the data order is a function of (seed, step). A speech model is written (checkpoints and `final/`)
in the LLaMA-Omni layout (`ttt_omni.speech.save_omni`), a text model as an HF directory. Each time weights are
written, RUN/weights.json records their content hash with the step and how much of monitor.csv and train_log.csv
existed then, so that the monitor is evidence only for exactly those weights (evalsuite.train_monitor).
With `fsdp: true` and several processes the model is sharded by distributed.shard (FSDP2); otherwise accelerate
prepares it (DDP when several processes). Each process takes its own share of the global batch.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import random
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs
from safetensors.torch import load_file
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from ttt_omni.atomic import publish_dir, replacing_dir, write_json, write_text
from ttt_omni.checkpoint_files import content_hash
from ttt_omni.layers import TTTBase, TTTInnerParams, keep_float32
from ttt_omni.models import TTTLlamaForCausalLM  # importing it registers TTT-Llama with the Auto classes
from ttt_omni.models.presets import preset_config
from ttt_omni.ops import TTTState
from ttt_omni.ops.validate import NonFiniteError
from ttt_omni.speech.model import OmniSpeechTTT, speech_setting
from ttt_omni.speech.omni_checkpoint import is_omni_checkpoint, load_omni, load_omni_state, save_omni

from .config import TrainConfig
from .data import LanePacker, book_conversations, load_jsonl, tokenize
from .monitor import MonitorAlarm, TTTMonitor
from .speech_data import speech_sequence
from .tasks import SpeechConversations, TextWindows
from ttt_omni.tokenizer import load_tokenizer, train_bpe

WEIGHTS_RECORD = "weights.json"  # beside monitor.csv: which saved weights the monitor so far belongs to
EVIDENCE_FILES = ("monitor.csv", "train_log.csv")
TTT_CONFIG_KEYS = ("ttt_layers", "ttt_type", "mini_batch_size", "ttt_base_lr", "attention_window",
                   "scan_checkpoint_every")


def build_model(cfg: TrainConfig, vocab_size: int):
    torch.manual_seed(cfg.seed)
    if cfg.model_from:
        return AutoModelForCausalLM.from_pretrained(cfg.model_from)
    config = preset_config(cfg.preset, vocab_size=vocab_size, **cfg.model_overrides)
    if cfg.baseline:
        plain = {k: v for k, v in config.to_dict().items() if k not in TTT_CONFIG_KEYS and k != "model_type"}
        return LlamaForCausalLM(LlamaConfig(**plain))
    return TTTLlamaForCausalLM(config)


def causal_lm(model):
    """The causal LM: the model itself, or the LLM inside an OmniSpeechTTT."""
    return model.llm if isinstance(model, OmniSpeechTTT) else model


def decoder_layers(model) -> list[torch.nn.Module]:
    return list(getattr(getattr(causal_lm(model), "model", None), "layers", []))


def ttt_layers(model) -> dict[int, TTTBase]:
    """Decoder layer index -> its TTT layer (empty for a plain attention model)."""
    return {i: m for i, layer in enumerate(decoder_layers(model)) for m in layer.modules() if isinstance(m, TTTBase)}


def param_groups(model, cfg: TrainConfig) -> list[dict]:
    """fp32 inner-model params in their own group (no decay); decay only on matrices; train_only_ttt freezes
    everything outside the TTT layers (and their gates beside the attention, in beside mode); frozen parameters (e.g. the speech encoder) are left out."""
    ttt_param_ids = {id(p) for layer in ttt_layers(model).values() for p in layer.parameters()}
    ttt_param_ids |= {id(p) for name, p in model.named_parameters() if name.endswith(".ttt_gate")}  # beside mode
    inner_ids = {id(p) for m in model.modules() if isinstance(m, TTTInnerParams) for p in m.parameters()}
    inner, decay, no_decay = [], [], []
    for p in model.parameters():
        if cfg.train_only_ttt and id(p) not in ttt_param_ids:
            p.requires_grad_(False)
        if not p.requires_grad:
            continue
        if id(p) in inner_ids:
            inner.append(p)
        elif p.dim() >= 2:
            decay.append(p)
        else:
            no_decay.append(p)
    if cfg.train_only_ttt and not ttt_param_ids:
        raise ValueError("train_only_ttt is set but the model has no TTT layers")
    groups = [{"params": decay, "weight_decay": cfg.weight_decay, "lr": cfg.lr},
              {"params": no_decay, "weight_decay": 0.0, "lr": cfg.lr},
              {"params": inner, "weight_decay": 0.0, "lr": cfg.ttt_lr or cfg.lr, "name": "ttt_inner_fp32"}]
    return [g for g in groups if g["params"]]


def cosine_schedule(cfg: TrainConfig):
    def factor(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def assert_inner_fp32(model) -> None:
    bad = [n for n, m in model.named_modules() if isinstance(m, TTTInnerParams)
           for pn, p in m.named_parameters() if p.dtype != torch.float32]
    if bad:
        raise RuntimeError(f"TTT inner parameters are not float32 after wrapping: {bad[:4]}...; the training setup "
                           "(mixed precision / FSDP) must not cast them")


class Trainer:
    """One training run (see the module docstring); `train()` runs it, `resume()` first continues a checkpoint.
    `unit_extractor` (speech only): a `ttt_omni.speech.units.UnitExtractor` (HuBERT + k-means) that turns the
    `audio` of replies without `units` into unit targets."""

    def __init__(self, cfg: TrainConfig, accelerator: Accelerator | None = None, unit_extractor=None):
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.speech = cfg.model_from is not None and is_omni_checkpoint(cfg.model_from)
        if unit_extractor is not None and not self.speech:
            raise ValueError("unit_extractor is for speech training: model_from must be a LLaMA-Omni(-layout) "
                             f"checkpoint, got {cfg.model_from or 'preset ' + repr(cfg.preset)}")
        # Under FSDP the precision policy lives in the sharding; autocast would be redundant.
        mixed = "bf16" if cfg.bf16 and not cfg.fsdp else "no"
        # A speech step may leave parts unused (the unit decoder in a conversation without units): DDP must know.
        ddp = [DistributedDataParallelKwargs(find_unused_parameters=True)] if self.speech else []
        # cpu=True is what lets accelerate form a gloo process group under torchrun on a machine without CUDA.
        self.accelerator = accelerator or Accelerator(mixed_precision=mixed, cpu=not torch.cuda.is_available(),
                                                      kwargs_handlers=ddp)
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self._set_seed(cfg.seed)
        model, self.task = self._speech(unit_extractor) if self.speech else self._text()
        if cfg.gradient_checkpointing:
            causal_lm(model).gradient_checkpointing_enable()
        self.ttt = ttt_layers(model)
        if cfg.fsdp:
            if self.world < 2:
                raise ValueError("fsdp: true needs several processes; launch with torchrun or accelerate launch")
            from .distributed import shard
            model = shard(model.to(self.accelerator.device), decoder_layers(model), cfg.bf16)
        optimizer = torch.optim.AdamW(param_groups(model, cfg), betas=(0.9, 0.95))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_schedule(cfg))
        if cfg.fsdp:
            self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        else:
            self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        keep_float32(self.unwrapped)
        assert_inner_fp32(self.model)
        self.monitor = TTTMonitor(self.unwrapped, self.out / "monitor.csv", cfg.monitor_every, cfg.max_abs)
        self.step = 0
        self.carried: dict[int, TTTState] = {}

    def _say(self, message: str) -> None:
        """What the run is doing before its progress bar starts (tokenizer training alone can take a minute)."""
        if self.rank == 0:
            tqdm.write(f"train: {message}", file=sys.stderr)

    def _text(self) -> tuple[torch.nn.Module, TextWindows]:
        cfg = self.cfg
        source = f"the {cfg.books_split} books" if cfg.books_split else cfg.jsonl
        self._say(f"reading conversations from {source}")
        dialogues = book_conversations(cfg.books_split) if cfg.books_split else load_jsonl(cfg.jsonl)
        self.tokenizer = self._tokenizer(dialogues)
        self._say(f"building the model ({cfg.model_from or 'preset ' + str(cfg.preset)}"
                  f"{', attention baseline' if cfg.baseline else ''})")
        model = build_model(cfg, len(self.tokenizer))
        ttt = ttt_layers(model)
        mb = next(iter(ttt.values())).mini_batch_size if ttt else 1
        self._say(f"tokenising {len(dialogues)} conversations into windows of {cfg.context} tokens")
        packer = LanePacker([tokenize(d, self.tokenizer) for d in dialogues], cfg.batch_size * self.world,
                            cfg.context, mb, seed=cfg.seed, pad_id=self.tokenizer.pad_token_id or 0)
        teacher = None
        if cfg.teacher:
            teacher = AutoModelForCausalLM.from_pretrained(cfg.teacher).to(self.accelerator.device)
            teacher.eval().requires_grad_(False)
        return model, TextWindows(packer, self.accelerator, list(ttt), cfg.state_reset_every, teacher, cfg.kl_weight)

    def _speech(self, unit_extractor) -> tuple[torch.nn.Module, SpeechConversations]:
        cfg = self.cfg
        if cfg.jsonl is None:
            raise ValueError(f"speech training ({cfg.model_from} is a LLaMA-Omni checkpoint) reads conversations "
                             "from `jsonl` (turns with audio / units), not `books_split`")
        self._say(f"loading the LLaMA-Omni model {cfg.model_from}")
        self.tokenizer = load_tokenizer(cfg.tokenizer or cfg.model_from)
        model = load_omni(cfg.model_from).train()  # load_omni gives eval mode
        self._say(f"reading speech conversations from {cfg.jsonl}")
        num_units = speech_setting(model.config, "unit_vocab_size")
        sequences = [speech_sequence(d, self.tokenizer, unit_extractor, num_units) for d in load_jsonl(cfg.jsonl)]
        if model.speech_generator is None and any(s.units for s in sequences):
            raise ValueError(f"{cfg.model_from} has no speech generator (its config sets no speech_generator_type), "
                             f"but replies in {cfg.jsonl} have speech units to learn")
        return model, SpeechConversations(sequences, self.accelerator, cfg.seed)

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def _tokenizer(self, convs):
        cfg = self.cfg
        if cfg.tokenizer:
            return load_tokenizer(cfg.tokenizer)
        if cfg.model_from:
            return load_tokenizer(cfg.model_from)
        self._say(f"training a byte-level BPE tokenizer ({cfg.bpe_vocab_size} tokens) on {len(convs)} conversations")
        return train_bpe(["\n\n".join(t.text for t in c.turns) for c in convs], cfg.bpe_vocab_size)

    @staticmethod
    def _set_seed(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def losses(self, batch) -> dict[str, torch.Tensor]:
        """The task's losses of one batch ("loss" and the parts it logs); the carried TTT states move on."""
        losses, self.carried = self.task.loss(self.model, batch, self.carried)
        return losses

    def loss(self, batch) -> torch.Tensor:
        """The total loss of one batch (see `losses`)."""
        return self.losses(batch)["loss"]

    def train(self, until: int | None = None) -> dict:
        """Trains to cfg.steps (or stops early at step `until`; the schedule still targets cfg.steps)."""
        cfg = self.cfg
        stop = min(cfg.steps, until or cfg.steps)
        if self.step == 0 and (self.out / "checkpoints" / "latest").is_file():
            raise ValueError(f"{self.out} already holds a training run; resume it, or choose another "
                             "output_dir (nothing was overwritten)")
        self.out.mkdir(parents=True, exist_ok=True)
        if self.main:
            (self.out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
        log_path = self.out / "train_log.csv"
        last = {**(last_row(log_path) if self.step else {}), "step": self.step}  # resumed: what the log holds
        with tqdm(total=cfg.steps, initial=self.step, desc="train", disable=not self.main) as bar:
            last = self._steps(stop, bar, last)
        if self.step < cfg.steps:
            return {**last, "final": None}
        return {**last, "final": str(self.export(self.out / "final"))}

    def _steps(self, stop: int, bar, last: dict) -> dict:
        """Trains up to step `stop`; returns the last step's log row (`last` when none runs)."""
        cfg, log_path = self.cfg, self.out / "train_log.csv"
        while self.step < stop:
            batch = self.task.batch(self.step)
            watch = self.monitor.wants(self.step) and bool(self.ttt)
            try:
                if watch:
                    with self.monitor.capture(self.step):
                        losses = self.losses(batch)
                else:
                    losses = self.losses(batch)
            except NonFiniteError as e:
                self._alarm(f"step {self.step}: {e}")
            loss = losses["loss"]
            if not torch.isfinite(loss):
                self._alarm(f"step {self.step}: training loss is {loss.item()}")
            if watch:
                try:
                    self.monitor.record(write=self.main)
                except MonitorAlarm as e:
                    self._alarm(str(e))
            self.accelerator.backward(loss)
            grad_norm = self._clip()
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            parts = {k: losses[k].item() if k in losses else None for k in self.task.log_parts}
            last = {"step": self.step, "loss": loss.item(), **parts, "grad_norm": grad_norm,
                    "lr": self.scheduler.get_last_lr()[0]}
            if self.main:
                append_csv(log_path, last)
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.3f}")
            if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                self.save_checkpoint()
        return last

    def _clip(self) -> float:
        if self.cfg.fsdp:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        return float(self.accelerator.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip))

    def _alarm(self, message: str):
        path = self.save_checkpoint(name="last-good")
        raise MonitorAlarm(f"{message}. Training stopped; the weights before this step are saved at {path}")

    # --- checkpoints ---
    def _model_state(self) -> dict | None:
        """Full weights (gathered from every process under FSDP: all processes must call this)."""
        if self.cfg.fsdp:
            from .distributed import full_model_state
            return full_model_state(self.model)
        return None  # the writers read the model itself

    def _write_model(self, path: Path, state: dict | None) -> None:
        """The model and tokenizer as a directory that loads again: LLaMA-Omni's layout for a speech model
        (`load_omni`), else HF's (`from_pretrained`). `state`: full weights gathered under FSDP."""
        if self.speech:
            save_omni(self.unwrapped, path, self.tokenizer, state_dict=state)
        else:
            self.unwrapped.save_pretrained(path, safe_serialization=True, state_dict=state)
            self.tokenizer.save_pretrained(path)

    def _read_model(self, path: Path) -> dict[str, torch.Tensor]:
        """The weights `_write_model` wrote, under the model's own names."""
        if self.speech:
            return load_omni_state(path)
        weights = {}
        for f in sorted(path.glob("*.safetensors")):
            weights.update(load_file(str(f)))
        if self.unwrapped.config.tie_word_embeddings and "lm_head.weight" not in weights:
            weights["lm_head.weight"] = weights["model.embed_tokens.weight"]
        return weights

    def export(self, path: Path) -> Path:
        """The model and tokenizer (see `_write_model`), written atomically."""
        state = self._model_state()
        if self.main:
            with replacing_dir(path) as tmp:
                self._write_model(tmp, state)
            self._record_weights(path)
        self.accelerator.wait_for_everyone()
        return path

    def _record_weights(self, model_dir: Path) -> None:
        """Adds to RUN/weights.json the content hash of the weights just written in `model_dir`, the step, and the
        size and sha256 of monitor.csv and train_log.csv as they stand now (the part written up to these weights)."""
        path = self.out / WEIGHTS_RECORD
        record = json.loads(path.read_text()) if path.is_file() else {"format": 1, "saved": []}
        files = {}
        for name in EVIDENCE_FILES:
            if (self.out / name).is_file():
                data = (self.out / name).read_bytes()
                files[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        entry = {"path": model_dir.relative_to(self.out).as_posix(), "hash": content_hash(model_dir),
                 "step": self.step, "files": files}
        record["saved"] = [e for e in record["saved"] if e["path"] != entry["path"]] + [entry]
        write_json(path, record)

    def save_checkpoint(self, name: str | None = None) -> Path:
        path = self.out / "checkpoints" / (name or f"step-{self.step:07d}")
        tmp = path.with_name(path.name + ".tmp")
        model_state = self._model_state()
        if self.cfg.fsdp:
            from .distributed import full_optimizer_state
            optimizer_state = full_optimizer_state(self.model, self.optimizer)
        else:
            optimizer_state = self.optimizer.state_dict()
        if self.main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            self._write_model(tmp / "model", model_state)
            torch.save({"step": self.step, "optimizer": optimizer_state, "scheduler": self.scheduler.state_dict(),
                        "config": asdict(self.cfg), "world": self.world}, tmp / "trainer_state.pt")
        self.accelerator.wait_for_everyone()
        torch.save({"carried": {i: s.to_dict() for i, s in self.carried.items()},
                    "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                            "torch": torch.get_rng_state()}}, tmp / f"rank{self.rank}.pt")
        self.accelerator.wait_for_everyone()
        if self.main:
            publish_dir(tmp, path)
            self._record_weights(path / "model")
            if name is None:
                write_text(self.out / "checkpoints" / "latest", path.name)
        self.accelerator.wait_for_everyone()
        return path

    def resume(self, path: str | Path | None = None) -> bool:
        """Loads a checkpoint (default: the latest of this run) and cuts this run's logs back to its step. Returns
        False when there is none."""
        ckpts = self.out / "checkpoints"
        if path is None:
            latest = ckpts / "latest"
            if not latest.is_file():
                return False
            path = ckpts / latest.read_text().strip()
        path = Path(path)
        state_file = path / "trainer_state.pt"
        if not state_file.is_file():
            raise FileNotFoundError(f"not a training checkpoint (no trainer_state.pt): {path}")
        state = torch.load(state_file, weights_only=False)
        if state.get("world", 1) != self.world:
            raise ValueError(f"checkpoint {path} was written by {state.get('world', 1)} processes; resume it with the "
                             f"same number (this run has {self.world})")
        weights = self._read_model(path / "model")
        if self.cfg.fsdp:
            from .distributed import load_full_state
            load_full_state(self.model, self.optimizer, weights, state["optimizer"])
        else:
            missing, unexpected = self.unwrapped.load_state_dict(weights, strict=False)
            if missing or unexpected:
                raise ValueError(f"checkpoint {path} does not match the model: missing {missing[:5]}, "
                                 f"unexpected {unexpected[:5]}")
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        mine = torch.load(path / f"rank{self.rank}.pt", weights_only=False)
        self.carried = {int(i): TTTState.from_dict(d) for i, d in mine["carried"].items()}
        random.setstate(mine["rng"]["python"])
        np.random.set_state(mine["rng"]["numpy"])
        torch.set_rng_state(mine["rng"]["torch"])
        self.step = state["step"]
        if self.main:
            self._cut_logs()
        return True

    def _cut_logs(self) -> None:
        """The logs and the weights record as they stood at the resumed step: a killed run may have logged steps
        after its last checkpoint, which the resumed run trains (and logs) again."""
        step = self.step
        keep_rows(self.out / "train_log.csv", lambda row: int(row["step"]) <= step)  # logged after the step
        keep_rows(self.out / "monitor.csv", lambda row: int(row["step"]) < step)  # logged during the step
        path = self.out / WEIGHTS_RECORD
        if path.is_file():
            record = json.loads(path.read_text())
            kept = [e for e in record["saved"] if e.get("step", 0) <= step]
            if kept != record["saved"]:
                write_json(path, {**record, "saved": kept})


def append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def keep_rows(path: Path, keep) -> None:
    """Rewrites the CSV log at `path` with only the rows for which `keep(row as a dict)` is true (the kept lines
    unchanged, a partly written last line dropped); nothing happens when all are kept."""
    if not path.is_file():
        return
    lines = path.read_bytes().decode().splitlines(keepends=True)  # bytes as written (csv ends lines with CRLF)
    if not lines:
        return
    header = next(csv.reader(lines[:1]))
    kept = [lines[0]]
    for line in lines[1:]:
        values = next(csv.reader([line]), [])
        if line.endswith("\n") and keep(dict(zip(header, values))):
            kept.append(line)
    if len(kept) != len(lines):
        write_text(path, "".join(kept))


def last_row(path: Path) -> dict:
    """The last row of a CSV log, numbers as numbers and empty cells as None ({} when there is none)."""
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: _cell(v) for k, v in rows[-1].items()} if rows else {}


def _cell(text: str):
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
