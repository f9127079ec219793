"""Training configuration: one YAML file, optionally with curriculum `stages` that override it per stage.

Types, ranges and unknown keys are checked by one schema (ttt_omni.schema, strict: `steps: "ten"`, `bf16: 'yes'`,
`batch_size: 2.5` and `stages: 5` are refused); every message names the file, the stage and the option.
"""
from __future__ import annotations

from dataclasses import asdict, field, fields
from pathlib import Path
from typing import Annotated, Any

from huggingface_hub.errors import StrictDataclassError
from pydantic import Field, ValidationError
from pydantic.dataclasses import dataclass

from ttt_omni.models.configuration_ttt_llama import TTTLlamaConfig
from ttt_omni.models.presets import preset_config
from ttt_omni.resources import config_path
from ttt_omni.schema import STRICT, Number, PositiveInt, PositiveNumber, describe, read_mapping

# model_overrides may set any TTT-Llama config field except these (vocab_size comes from the tokenizer)
NOT_OVERRIDABLE = {"_name_or_path", "architectures", "model_type", "transformers_version", "vocab_size"}
STAGE_KEYS = {"stage", "gate"}


@dataclass(config=STRICT)
class TrainConfig:
    output_dir: str
    seed: int = 0
    # model: a preset name ("tiny") with overrides, or `from` an HF checkpoint directory (TTT-Llama or Llama); a
    # LLaMA-Omni(-layout) directory (original or converted) trains on speech conversations from `jsonl`
    preset: str | None = "tiny"
    model_from: str | None = None
    model_overrides: dict[str, Any] = field(default_factory=dict)
    baseline: bool = False  # True: the same model with no TTT layers (plain Llama attention everywhere)
    # tokenizer: a directory, or a byte-level BPE of this size trained on the training corpus
    tokenizer: str | None = None
    bpe_vocab_size: PositiveInt = 4096
    # data: the bundled books of a split, or a JSONL of conversations (train.data.load_jsonl)
    books_split: str | None = "train"
    jsonl: str | None = None
    # text: windows of `context` tokens, `batch_size` rows per process; speech: one whole conversation per process
    context: PositiveInt = 512
    batch_size: PositiveInt = 4
    steps: PositiveInt = 200
    lr: PositiveNumber = 3e-3
    ttt_lr: PositiveNumber | None = None  # learning rate of the fp32 inner-model parameters (default: lr)
    warmup: Annotated[int, Field(ge=0)] = 20
    min_lr_ratio: Annotated[Number, Field(ge=0, le=1)] = 0.1
    weight_decay: Annotated[Number, Field(ge=0)] = 0.1
    grad_clip: PositiveNumber = 1.0
    bf16: bool = False
    gradient_checkpointing: bool = False
    fsdp: bool = False  # shard with FSDP2 across the launched processes (torchrun / accelerate launch)
    train_only_ttt: bool = False
    # text: with a teacher (an HF checkpoint directory with the same vocabulary, e.g. the model a TTT hybrid was
    # converted from), the loss adds kl_weight x KL(teacher || model) of the next-token distributions
    teacher: str | None = None
    kl_weight: Annotated[Number, Field(ge=0)] = 0.0
    # Text: TTT state is carried across a conversation's windows and reset at its boundary; with N it is also reset
    # every N windows (1: every window starts fresh, as in TTT-LM training). Carried states were computed under older
    # weights: over hundreds of windows they go stale, and a model can learn to switch its carried update off.
    # (A speech step is one whole conversation: its state starts fresh and is never carried.)
    state_reset_every: PositiveInt | None = None
    save_every: PositiveInt = 100
    monitor_every: Annotated[int, Field(ge=0)] = 10  # 0: no monitor
    max_abs: PositiveNumber = 10.0
    stage: PositiveInt | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_yaml(cls, path: str | Path, stage: int | None = None, overrides: dict | None = None) -> "TrainConfig":
        """A YAML file, or the name of a bundled config (`tiny-ttt`, `configs/tiny-ttt.yaml`) from anywhere;
        `overrides` (option -> value) apply last, after the stage's."""
        path = config_path(path)
        data = read_mapping(path, ValueError, "a mapping of training options")
        cfg = cls.from_dict(data, stage=stage, source=str(path))
        if not overrides:
            return cfg
        where = f"{path} with overrides {overrides}"
        fixed = sorted(set(overrides) & {"stage", "stages"})
        if fixed:
            raise ValueError(f"{where}: {', '.join(fixed)} cannot be overridden (choose the stage instead)")
        return cls.build({**asdict(cfg), **overrides}, where)

    @classmethod
    def from_dict(cls, data: dict, stage: int | None = None, source: str = "config") -> "TrainConfig":
        cfg = cls.build(data, source)
        for entry in cfg.stages:  # every stage is checked, not only the one asked for
            cls.build(cfg._stage_options(entry), f"{source}, stage {entry['stage']}")
        if stage is None:
            return cfg
        match = [s for s in cfg.stages if s["stage"] == stage]
        if not match:
            raise ValueError(f"{source}: no stage {stage}; stages defined: {[s['stage'] for s in cfg.stages]}")
        return cls.build(cfg._stage_options(match[0]), f"{source}, stage {stage}")

    @classmethod
    def build(cls, data: dict, where: str) -> "TrainConfig":
        """Options -> a validated config; every problem is a ValueError naming `where` and the option."""
        try:
            cfg = cls(**data)
        except ValidationError as e:
            raise ValueError(describe(e, where, cls)) from None
        cfg.validate(where)
        return cfg

    def _stage_options(self, entry: dict) -> dict:
        return {**asdict(self), **{k: v for k, v in entry.items() if k not in STAGE_KEYS}, "stage": entry["stage"]}

    def validate(self, source: str = "config") -> None:
        """What the field types alone cannot say: choices that exclude each other, the stages' shape, the model."""
        if (self.preset is None) == (self.model_from is None):
            raise ValueError(f"{source}: set exactly one of `preset` and `model_from`")
        if (self.books_split is None) == (self.jsonl is None):
            raise ValueError(f"{source}: set exactly one of `books_split` and `jsonl`")
        if (self.kl_weight > 0) != (self.teacher is not None):
            raise ValueError(f"{source}: kl_weight={self.kl_weight} and teacher={self.teacher!r}: set both (a weight "
                             "> 0 and a teacher checkpoint) or neither")
        seen = set()
        for i, entry in enumerate(self.stages, 1):
            number = entry.get("stage")
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise ValueError(f"{source}: stages[{i - 1}]: `stage` must be a stage number >= 1, got {number!r}")
            if number in seen:
                raise ValueError(f"{source}: stage {number} is defined twice")
            seen.add(number)
            unknown = sorted(set(entry) - STAGE_KEYS - {f.name for f in fields(TrainConfig)} | set(entry) & {"stages"})
            if unknown:
                raise ValueError(f"{source}, stage {number}: unknown key(s) {unknown}; a stage sets training options "
                                 "and `gate`")
        self._check_model(source)

    def _check_model(self, source: str) -> None:
        """The preset exists and takes the overrides (names and values), before any data is read."""
        if self.model_overrides:
            known = set(TTTLlamaConfig().to_dict()) | set(TTTLlamaConfig.attribute_map)
            unknown = sorted(set(self.model_overrides) - (known - NOT_OVERRIDABLE))
            if unknown:
                hint = " (vocab_size comes from the tokenizer: set bpe_vocab_size)" if "vocab_size" in unknown else ""
                raise ValueError(f"{source}: model_overrides: unknown key(s) {unknown}{hint}; expected TTT-Llama "
                                 f"config fields: {', '.join(sorted(known - NOT_OVERRIDABLE))}")
        if self.preset is not None:
            try:
                preset_config(self.preset, **self.model_overrides)
            except (ValueError, TypeError, StrictDataclassError) as e:
                raise ValueError(f"{source}: {'model_overrides: ' if self.model_overrides else ''}"
                                 f"{' '.join(str(e).split())}") from None

    def gate(self) -> dict | None:
        """The gate rules of this config's stage, if any."""
        for s in self.stages:
            if s.get("stage") == self.stage:
                return s.get("gate")
        return None
