"""Training configuration: one YAML file, optionally with curriculum `stages` that override it per stage."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from ttt_omni.resources import config_path


@dataclass
class TrainConfig:
    output_dir: str
    seed: int = 0
    # model: a preset name ("tiny") with overrides, or `from` an HF checkpoint directory (TTT-Llama or Llama); a
    # LLaMA-Omni(-layout) directory (original or converted) trains on speech conversations from `jsonl`
    preset: str | None = "tiny"
    model_from: str | None = None
    model_overrides: dict = field(default_factory=dict)
    baseline: bool = False  # True: the same model with no TTT layers (plain Llama attention everywhere)
    # tokenizer: a directory, or a byte-level BPE of this size trained on the training corpus
    tokenizer: str | None = None
    bpe_vocab_size: int = 4096
    # data: the bundled books of a split, or a JSONL of conversations (train.data.load_jsonl)
    books_split: str | None = "train"
    jsonl: str | None = None
    # text: windows of `context` tokens, `batch_size` rows per process; speech: one whole conversation per process
    context: int = 512
    batch_size: int = 4
    steps: int = 200
    lr: float = 3e-3
    ttt_lr: float | None = None  # learning rate of the fp32 inner-model parameters (default: lr)
    warmup: int = 20
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    bf16: bool = False
    gradient_checkpointing: bool = False
    fsdp: bool = False  # shard with FSDP2 across the launched processes (torchrun / accelerate launch)
    train_only_ttt: bool = False
    # text: with a teacher (an HF checkpoint directory with the same vocabulary, e.g. the model a TTT hybrid was
    # converted from), the loss adds kl_weight x KL(teacher || model) of the next-token distributions
    teacher: str | None = None
    kl_weight: float = 0.0
    # Text: TTT state is carried across a conversation's windows and reset at its boundary; with N it is also reset
    # every N windows (1: every window starts fresh, as in TTT-LM training). Carried states were computed under older
    # weights: over hundreds of windows they go stale, and a model can learn to switch its carried update off.
    # (A speech step is one whole conversation: its state starts fresh and is never carried.)
    state_reset_every: int | None = None
    save_every: int = 100
    monitor_every: int = 10
    max_abs: float = 10.0
    stage: int | None = None
    stages: list = field(default_factory=list)

    @classmethod
    def from_yaml(cls, path: str | Path, stage: int | None = None, overrides: dict | None = None) -> "TrainConfig":
        """A YAML file, or the name of a bundled config (`tiny-ttt`, `configs/tiny-ttt.yaml`) from anywhere;
        `overrides` (option -> value) apply last, after the stage's."""
        path = config_path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: malformed YAML: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of training options, got {type(data).__name__}")
        cfg = cls.from_dict(data, stage=stage, source=str(path))
        if not overrides:
            return cfg
        unknown = sorted(set(overrides) - {f.name for f in fields(cls)} | set(overrides) & {"stage", "stages"})
        if unknown:
            raise ValueError(f"{path}: cannot override {unknown}; known options: {sorted(f.name for f in fields(cls))}")
        cfg = cls(**{**asdict(cfg), **overrides})
        cfg.validate(f"{path} with {overrides}")
        return cfg

    @classmethod
    def from_dict(cls, data: dict, stage: int | None = None, source: str = "config") -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown option(s) {unknown}; known options: {sorted(known)}")
        if "output_dir" not in data:
            raise ValueError(f"{source}: `output_dir` is required")
        cfg = cls(**data)
        if stage is not None:
            match = [s for s in cfg.stages if s.get("stage") == stage]
            if not match:
                raise ValueError(f"{source}: no stage {stage}; stages defined: {[s.get('stage') for s in cfg.stages]}")
            overrides = {k: v for k, v in match[0].items() if k not in ("stage", "gate")}
            bad = sorted(set(overrides) - known)
            if bad:
                raise ValueError(f"{source}: stage {stage} sets unknown option(s) {bad}")
            cfg = cls(**{**asdict(cfg), **overrides, "stage": stage})
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "config") -> None:
        for name in ("context", "batch_size", "steps", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{source}: {name} must be >= 1, got {getattr(self, name)}")
        if (self.preset is None) == (self.model_from is None):
            raise ValueError(f"{source}: set exactly one of `preset` and `model_from`")
        if (self.books_split is None) == (self.jsonl is None):
            raise ValueError(f"{source}: set exactly one of `books_split` and `jsonl`")
        if self.lr <= 0:
            raise ValueError(f"{source}: lr must be > 0, got {self.lr}")
        if self.kl_weight < 0 or (self.kl_weight > 0) != (self.teacher is not None):
            raise ValueError(f"{source}: kl_weight={self.kl_weight} and teacher={self.teacher!r}: set both (a weight "
                             "> 0 and a teacher checkpoint) or neither")
        if self.state_reset_every is not None and self.state_reset_every < 1:
            raise ValueError(f"{source}: state_reset_every must be >= 1 windows (or absent), got {self.state_reset_every}")

    def gate(self) -> dict | None:
        """The gate rules of this config's stage, if any."""
        for s in self.stages:
            if s.get("stage") == self.stage:
                return s.get("gate")
        return None
