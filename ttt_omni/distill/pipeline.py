"""`distill_checkpoint(SRC, OUT, config)`: a pretrained Llama -> its TTT hybrid, with attention transfer.

1. convert (ttt_omni.convert: q/k/v/o copied, inner model initialised): the fresh conversion, kept in the work
   directory (`converted/`, what a comparison with no transfer evaluates);
2. collect the replaced attention layers' inputs and outputs on calibration text (the train books, or a corpus)
   into activation shards (activations.py);
3. train each TTT layer to reproduce them (transfer.py);
4. optionally, a short end-to-end fine-tune of the TTT layers only, by the project's trainer (LM loss, optionally
   plus KL to the source model's next-token distributions);
5. OUT: the hybrid checkpoint (tokenizer and reports beside it).

Every phase is resumable: the work directory (default OUT.work) holds the conversion, the shards, the transfer's
and the trainer's checkpoints, and running the same call again continues where it stopped. The report
(distill_report.json) records what was distilled on how many tokens, the validation losses before and after, and
each phase's wall time and the process's peak memory.
"""
from __future__ import annotations

import json
import resource
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import AutoTokenizer

from ttt_omni.atomic import replacing_dir, write_json
from ttt_omni.checkpoint_files import load_weights
from ttt_omni.convert import REPORT_NAME, convert_checkpoint, hybrid_config, read_config
from ttt_omni.models import TTTLlamaForCausalLM
from ttt_omni.train.config import TrainConfig
from ttt_omni.train.trainer import Trainer, ttt_layers

from .activations import ActivationStore, StoreSettings
from .calibration import calibration_set, corpus_texts
from .transfer import LayerTransfer, TransferSettings

DISTILL_REPORT_NAME = "distill_report.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class DistillConfig:
    """The conversion (as `ttt-omni convert`), the calibration data, the transfer and the optional fine-tune."""

    ttt_layers: list[int] | None = None  # None: the top 8
    ttt_type: str = "linear"
    mini_batch_size: int = 64
    ttt_base_lr: float = 1.0
    attention_window: int | None = None
    attention_sinks: int = 0
    seed: int = 0
    corpus: str | None = None  # None: the bundled train books
    seq_len: int = 2048
    train_sequences: int = 64
    validation_sequences: int = 4
    sequences_per_shard: int = 4
    teacher_dtype: str = "float32"
    transfer: TransferSettings = field(default_factory=TransferSettings)
    finetune_steps: int = 0
    finetune_context: int = 1024
    finetune_batch_size: int = 1
    finetune_lr: float = 1e-4
    finetune_kl_weight: float = 0.0  # > 0: the loss adds this x KL(source model || hybrid) of next-token distributions
    finetune_bf16: bool = False  # bf16 autocast (the TTT inner parameters and state stay float32)
    work_dir: str | None = None  # default: OUT.work

    def validate(self) -> None:
        if self.teacher_dtype not in DTYPES:
            raise ValueError(f"teacher_dtype {self.teacher_dtype!r} is unknown; expected one of {sorted(DTYPES)}")
        if self.finetune_steps < 0 or self.finetune_kl_weight < 0:
            raise ValueError(f"finetune_steps={self.finetune_steps} and finetune_kl_weight={self.finetune_kl_weight} "
                             "must be >= 0")
        if self.sequences_per_shard < 1:
            raise ValueError(f"sequences_per_shard={self.sequences_per_shard} must be >= 1")
        self.transfer.validate()
        if self.corpus is not None:
            corpus_texts(self.corpus)  # a bad corpus is reported before anything is converted


def load_teacher(src: str | Path, attention_window: int | None = None, attention_sinks: int = 0,
                 dtype: torch.dtype = torch.float32) -> TTTLlamaForCausalLM:
    """The source Llama as a TTT-Llama with no TTT layers, its attention as the hybrid will run it (full, or a
    sliding window with sinks): the teacher whose activations the TTT layers learn from."""
    config = hybrid_config(read_config(Path(src)), ttt_layers=[], attention_window=attention_window,
                           attention_sinks=attention_sinks)
    model = TTTLlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(load_weights(Path(src)), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    unexpected = [k for k in unexpected if not k.endswith("rotary_emb.inv_freq")]
    if missing or unexpected:
        raise ValueError(f"{src} does not match its own config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if config.tie_word_embeddings:
        model.tie_weights()
    return model.to(dtype).eval().requires_grad_(False)


class _Phases:
    """Wall time of each phase, kept in the work directory so that a resumed run adds to the earlier ones. A running
    phase's time is written every FLUSH_S seconds, so that a run killed with kill -9 keeps its time too."""

    FLUSH_S = 5.0

    def __init__(self, path: Path):
        self.path = path
        self.times = json.loads(path.read_text()) if path.is_file() else {}

    def run(self, name: str, fn):
        earlier, started = self.times.get(name, 0.0), time.perf_counter()
        stop = threading.Event()

        def flush():
            self.times[name] = earlier + time.perf_counter() - started
            write_json(self.path, self.times)

        def beat():
            while not stop.wait(self.FLUSH_S):
                flush()
        thread = threading.Thread(target=beat, name=f"distill {name} time", daemon=True)
        thread.start()
        try:
            return fn()
        finally:
            stop.set()
            thread.join()
            flush()


def _finetune_corpus(corpus: str | None, work: Path) -> dict:
    """The trainer's data option: the train books, or the corpus written as one JSONL conversation per text."""
    if corpus is None:
        return {"books_split": "train"}
    path = work / "finetune_corpus.jsonl"
    lines = [json.dumps({"conversation_id": name, "turns": [{"speaker": None, "text": text}]})
             for name, text in corpus_texts(corpus).items()]
    path.write_text("\n".join(lines) + "\n")
    return {"books_split": None, "jsonl": str(path)}


def distill_checkpoint(src: str | Path, out: str | Path, config: DistillConfig | None = None) -> dict:
    """Runs (or resumes) the phases in the module docstring; returns the report also written to OUT."""
    config = config or DistillConfig()
    config.validate()
    src, out = Path(src), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"output {out} already exists and is not an empty directory; choose a new path")
    work = Path(config.work_dir) if config.work_dir else out.with_name(out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    phases = _Phases(work / "phases.json")

    converted = work / "converted"
    if not (converted / REPORT_NAME).is_file():
        phases.run("convert", lambda: convert_checkpoint(
            src, converted, ttt_layers=config.ttt_layers, ttt_type=config.ttt_type,
            mini_batch_size=config.mini_batch_size, ttt_base_lr=config.ttt_base_lr,
            attention_window=config.attention_window, attention_sinks=config.attention_sinks, seed=config.seed))
    hybrid = TTTLlamaForCausalLM.from_pretrained(converted, dtype=torch.float32)
    layers = sorted(hybrid.config.ttt_layers)

    settings = StoreSettings(source=str(src.resolve()), layers=layers, seq_len=config.seq_len,
                             sequences_per_shard=config.sequences_per_shard,
                             train_sequences=config.train_sequences,
                             validation_sequences=config.validation_sequences,
                             attention_window=config.attention_window, attention_sinks=config.attention_sinks,
                             corpus=config.corpus, seed=config.seed)
    store = ActivationStore(work / "activations", settings)
    tokenizer = AutoTokenizer.from_pretrained(src)
    calibration = calibration_set(tokenizer, config.corpus, config.seq_len, config.train_sequences,
                                  config.validation_sequences, seed=config.seed)
    if not store.complete():
        teacher = load_teacher(src, config.attention_window, config.attention_sinks, DTYPES[config.teacher_dtype])
        phases.run("collect", lambda: store.collect(teacher, calibration.train, calibration.validation))
        del teacher

    found = ttt_layers(hybrid)
    transfer = LayerTransfer(found, store, work / "transfer", config.transfer)
    results = phases.run("transfer", transfer.run)
    distilled = work / "distilled"
    if not (distilled / "config.json").is_file():
        with replacing_dir(distilled) as tmp:
            hybrid.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    final, finetune = distilled, None
    if config.finetune_steps:
        final, finetune = phases.run("finetune", lambda: _finetune(config, src, distilled, work))

    with replacing_dir(out, overwrite=False) as tmp:
        for path in final.iterdir():
            if path.is_file():
                shutil.copy2(path, tmp / path.name)
        shutil.copy2(converted / REPORT_NAME, tmp / REPORT_NAME)
        report = _report(src, out, config, calibration, store, results, finetune, phases)
        write_json(tmp / DISTILL_REPORT_NAME, report)
    return report


def _finetune(config: DistillConfig, src: Path, distilled: Path, work: Path) -> tuple[Path, dict]:
    """End-to-end fine-tune of the TTT layers only, by the trainer (LM loss, optionally + KL to the source model;
    the kept layers frozen)."""
    kl = config.finetune_kl_weight
    cfg = TrainConfig(output_dir=str(work / "finetune"), seed=config.seed, preset=None, model_from=str(distilled),
                      tokenizer=str(distilled), **_finetune_corpus(config.corpus, work),
                      context=config.finetune_context, batch_size=config.finetune_batch_size,
                      steps=config.finetune_steps, lr=config.finetune_lr, warmup=min(20, config.finetune_steps),
                      weight_decay=0.0, train_only_ttt=True, state_reset_every=1, bf16=config.finetune_bf16,
                      teacher=str(src) if kl else None, kl_weight=kl,
                      save_every=max(1, min(50, config.finetune_steps)), monitor_every=10)
    cfg.validate("distill fine-tune")
    trainer = Trainer(cfg)
    trainer.resume()
    result = trainer.train()
    return Path(result["final"]), {"steps": cfg.steps, "context": cfg.context, "batch_size": cfg.batch_size,
                                   "tokens": cfg.steps * cfg.context * cfg.batch_size, "lr": cfg.lr,
                                   "final_loss": result.get("loss"), "kl_weight": kl, "bf16": cfg.bf16,
                                   "data": cfg.books_split or cfg.jsonl}


def _report(src, out, config, calibration, store, results, finetune, phases) -> dict:
    return {
        "source": str(src), "output": str(out),
        "ttt_layers": sorted(store.settings.layers), "ttt_type": config.ttt_type,
        "mini_batch_size": config.mini_batch_size, "attention_window": config.attention_window,
        "attention_sinks": config.attention_sinks,
        "calibration": {"documents": calibration.documents, "seq_len": config.seq_len,
                        "train_sequences": config.train_sequences,
                        "validation_sequences": config.validation_sequences,
                        "tokens_collected": (config.train_sequences + config.validation_sequences) * config.seq_len,
                        "sequences_available": calibration.available, "teacher_dtype": config.teacher_dtype},
        "transfer": {**asdict(config.transfer), "layers": {str(k): v for k, v in sorted(results.items())}},
        "finetune": finetune,
        "wall_time_s": {k: round(v, 1) for k, v in phases.times.items()},
        "peak_rss_mb_this_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(),
    }
