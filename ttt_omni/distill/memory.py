"""Distilling a memory beside the window (`ttt_mode="beside"`): each TTT branch learns what its layer's windowed
attention misses, the *difference* between the layer's full-attention output and its windowed (sink) output on the
same input, so that `attn_window(x) + g * ttt(x)` approaches `attn_full(x)`.

1. collect: the source model with full attention (the teacher) reads calibration sequences (train books); for each
   layer with a branch, the attention's input x and the target `attn_full(x) - attn_window(x)` are stored as
   `layers.{i}.input` / `layers.{i}.output` shards (`DifferenceStore`, the ActivationStore layout, resumable);
2. transfer: the branches (TTT layers of a beside model made by `convert_model`) are trained on those shards by
   `LayerTransfer` (relative MSE, 1.0 = an all-zero branch = the window alone), resumable;
3. gates: the per-channel gate g is set by least squares on the validation shards, clamped to [0, 1]: the gated
   branch then never scores worse than g = 0 (the window alone) on them;
4. end to end (optional, `end_to_end_steps`): the project's trainer trains the branches and gates only (the rest
   frozen) on the train books with the LM loss + `end_to_end_kl_weight` x KL to the full-attention source model;
5. the hybrid, its delta over the source and `distill_report.json` (tokens, steps, wall and CPU seconds, the
   validation error of each branch before and after, with the fitted gate).
"""
from __future__ import annotations

import json
import resource
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm
from transformers import AutoTokenizer
from transformers.masking_utils import create_causal_mask
from transformers.models.llama.modeling_llama import LlamaAttention

from ttt_omni.atomic import replacing_dir, replacing_file, write_json
from ttt_omni.convert import convert_model
from ttt_omni.delta import save_delta
from ttt_omni.hf_compat import CACHE_ARG
from ttt_omni.models import TTTLlamaForCausalLM
from ttt_omni.models.modeling_ttt_llama import SinkWindowAttention, sink_window_layout

from .activations import MANIFEST_NAME, STORE_DTYPE, ActivationStore, StoreSettings
from .calibration import calibration_set
from .pipeline import load_teacher
from .transfer import LayerTransfer, TransferSettings

REPORT_NAME = "distill_report.json"


@torch.no_grad()
def difference_io(teacher, ids: torch.Tensor, layers: list[int], window: int, sinks: int) -> dict[int, tuple]:
    """{layer: (attention input, full-attention output - windowed output)} for the token ids [batch, tokens]; the
    teacher (full attention everywhere) runs up to the highest layer asked for."""
    if sinks < 1:
        raise ValueError(f"difference targets need a window with sinks (sinks={sinks}); the memory design keeps them")
    inner, config = teacher.model, teacher.config
    hidden = inner.embed_tokens(ids)
    positions = torch.arange(ids.shape[1], device=ids.device)[None]
    rope = inner.rotary_emb(hidden, positions)
    full_mask = create_causal_mask(config=config, inputs_embeds=hidden, attention_mask=None, position_ids=positions,
                                   **{CACHE_ARG: None})
    windowed = SimpleNamespace(attention_window=window, attention_sinks=sinks)
    layout = sink_window_layout(windowed, inner.rotary_emb, hidden, None, positions, past=0)
    out = {}
    for i, layer in enumerate(inner.layers[: max(layers) + 1]):
        x = layer.input_layernorm(hidden)
        full, _ = LlamaAttention.forward(layer.self_attn, x, position_embeddings=rope, attention_mask=full_mask)
        if i in layers:
            near, _ = SinkWindowAttention.forward(layer.self_attn, x, position_embeddings=rope, sink_layout=layout)
            out[i] = (x, full - near)
        hidden = hidden + full
        hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
    return out


class DifferenceStore(ActivationStore):
    """ActivationStore whose `output` is the difference target (settings.attention_window/sinks: the window's)."""

    def collect(self, teacher, train: torch.Tensor, validation: torch.Tensor, batch_size: int = 1) -> int:
        s = self.settings
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.folder / MANIFEST_NAME, {"settings": asdict(s), "target": "full - windowed"})
        per = s.sequences_per_shard
        sequences = {path: ids[i * per:(i + 1) * per] for split, ids in (("train", train), ("validation", validation))
                     for i, path in enumerate(self.shards(split))}
        todo = self.missing()
        for path in tqdm(todo, desc="collect difference targets", unit="shard"):
            ids = sequences[path]
            io = difference_io(teacher, ids, s.layers, s.attention_window, s.attention_sinks)
            tensors = {"tokens": ids.to(torch.int32).contiguous()}
            for i, (x, d) in io.items():
                tensors[f"layers.{i}.input"] = x.to(STORE_DTYPE).contiguous()
                tensors[f"layers.{i}.output"] = d.to(STORE_DTYPE).contiguous()
            with replacing_file(path) as tmp:
                save_file(tensors, str(tmp))
        return len(todo)


@torch.no_grad()
def fit_gate(branch, layer_idx: int, store: ActivationStore) -> tuple[torch.Tensor, dict]:
    """Per-channel least-squares gate of the branch's output against the target on the validation shards, clamped
    to [0, 1]; with the validation relative MSE of g = 1 and of the fitted g (g = 0 scores 1.0)."""
    bb = bd = dd = None
    outs = []
    for shard in store.shards("validation"):
        x, d = store.read(shard, layer_idx)
        for row in range(x.shape[0]):
            b, _ = branch(x[row:row + 1])
            b, t = b.float().flatten(0, 1), d[row].float()
            outs.append((b, t))
            bb = (b * b).sum(0) + (0 if bb is None else bb)
            bd = (b * t).sum(0) + (0 if bd is None else bd)
            dd = (t * t).sum() + (0 if dd is None else dd)
    gate = (bd / bb.clamp_min(1e-12)).clamp(0.0, 1.0)
    err = lambda g: float(sum(((g * b - t) ** 2).sum() for b, t in outs) / dd)  # noqa: E731
    return gate, {"val_rel_mse_gate_1": err(torch.ones_like(gate)), "val_rel_mse_fitted_gate": err(gate),
                  "gate_mean": float(gate.mean()), "gate_nonzero": int((gate > 0).sum())}


@dataclass
class MemoryDistillConfig:
    layers: list[int] = field(default_factory=lambda: [6, 12, 18, 24])
    ttt_type: str = "linear"
    window: int = 1024
    sinks: int = 4
    seq_len: int = 4096
    train_sequences: int = 8
    validation_sequences: int = 1
    sequences_per_shard: int = 1
    corpus: str | None = None  # None: the bundled train books
    seed: int = 0
    transfer: TransferSettings = field(default_factory=lambda: TransferSettings(schedule="joint", save_every=5,
                                                                                 validate_every=25, warmup=5))
    # start each branch at output 0 (o_proj zeroed): relative MSE 1.0, the window alone; copied from the attention,
    # the branch's output is 5-30x the difference it must learn (measured on SmolLM2: relative MSE 27-750 at start)
    zero_branch_output: bool = True
    end_to_end_steps: int = 0
    end_to_end_context: int = 4096
    end_to_end_lr: float = 1e-4
    end_to_end_kl_weight: float = 1.0


def _end_to_end(config: MemoryDistillConfig, src: Path, gated: Path, work: Path) -> tuple[Path, dict]:
    """The trainer on the gated hybrid: branches and gates only (train_only_ttt), LM + KL to the source."""
    from ttt_omni.train.config import TrainConfig
    from ttt_omni.train.trainer import Trainer

    from .pipeline import _finetune_corpus

    steps, kl = config.end_to_end_steps, config.end_to_end_kl_weight
    cfg = TrainConfig(output_dir=str(work / "end_to_end"), seed=config.seed, preset=None, model_from=str(gated),
                      tokenizer=str(gated), **_finetune_corpus(config.corpus, work),
                      context=config.end_to_end_context, batch_size=1, steps=steps, lr=config.end_to_end_lr,
                      warmup=min(20, steps), weight_decay=0.0, train_only_ttt=True, state_reset_every=1,
                      teacher=str(src) if kl else None, kl_weight=kl, save_every=max(1, min(25, steps)),
                      monitor_every=10)
    cfg.validate("memory distill end to end")
    trainer = Trainer(cfg)
    trainer.resume()
    result = trainer.train()
    return Path(result["final"]), {"steps": steps, "context": cfg.context, "tokens": steps * cfg.context,
                                   "lr": cfg.lr, "kl_weight": kl, "final_loss": result.get("loss"),
                                   "data": cfg.books_split or cfg.jsonl}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def distill_memory(src: str | Path, work: str | Path, config: MemoryDistillConfig, out: str | Path | None = None,
                   delta: str | Path | None = None) -> dict:
    """Runs or resumes the phases of the module docstring in `work`; writes the hybrid to `out` and its delta to
    `delta` when given. The report (also `work/distill_report.json`) adds up wall and CPU seconds over resumes."""
    src, work = Path(src), Path(work)
    work.mkdir(parents=True, exist_ok=True)
    report_path = work / REPORT_NAME
    spent = json.loads(report_path.read_text()).get("seconds", {}) if report_path.is_file() else {}

    def account(phase: str, fn):
        import time
        wall, cpu = time.perf_counter(), _cpu_seconds()
        try:
            return fn()
        finally:  # an interrupted phase counts too (Ctrl-C; SIGTERM where the caller turns it into SystemExit)
            for key, value in ((f"{phase}_wall", time.perf_counter() - wall),
                               (f"{phase}_cpu", _cpu_seconds() - cpu)):
                spent[key] = round(spent.get(key, 0.0) + value, 1)
            write_json(report_path, {**(json.loads(report_path.read_text()) if report_path.is_file() else {}),
                                     "seconds": spent})

    tokenizer = AutoTokenizer.from_pretrained(src)
    calibration = calibration_set(tokenizer, config.corpus, config.seq_len, config.train_sequences,
                                  config.validation_sequences, seed=config.seed)
    settings = StoreSettings(source=str(src.resolve()), layers=sorted(config.layers), seq_len=config.seq_len,
                             sequences_per_shard=config.sequences_per_shard, train_sequences=config.train_sequences,
                             validation_sequences=config.validation_sequences, attention_window=config.window,
                             attention_sinks=config.sinks, corpus=config.corpus, seed=config.seed)
    store = DifferenceStore(work / "differences", settings)
    if not store.complete():
        teacher = load_teacher(src)  # full attention
        account("collect", lambda: store.collect(teacher, calibration.train, calibration.validation))
        del teacher

    model = convert_model(src, ttt_layers=sorted(config.layers), ttt_type=config.ttt_type, ttt_mode="beside",
                          attention_window=config.window, attention_sinks=config.sinks, seed=config.seed).float()
    branches = {i: model.model.layers[i].self_attn.ttt for i in config.layers}
    if config.zero_branch_output:
        for branch in branches.values():
            branch.o_proj.weight.data.zero_()
    transfer = LayerTransfer(branches, store, work / "transfer", config.transfer)
    results = account("transfer", transfer.run)
    gates = {}
    for i, branch in branches.items():
        gate, fit = fit_gate(branch, i, store)
        model.model.layers[i].self_attn.ttt_gate.data.copy_(gate)
        gates[i] = fit
    final, end_to_end = None, None
    if config.end_to_end_steps:
        gated = work / "gated"
        if not (gated / "config.json").is_file():
            with replacing_dir(gated) as tmp:
                model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
        final, end_to_end = account("end_to_end", lambda: _end_to_end(config, src, gated, work))
        model = TTTLlamaForCausalLM.from_pretrained(final, dtype=torch.float32)
    report = {
        "source": str(src), "design": "TTT branch beside window+sinks attention, y = attn(x) + g * ttt(x)",
        "target": "full-attention output - windowed output of the same layer (teacher: the source, full attention)",
        "layers": sorted(config.layers), "ttt_type": config.ttt_type, "window": config.window, "sinks": config.sinks,
        "zero_branch_output": config.zero_branch_output,
        "calibration": {"documents": calibration.documents, "seq_len": config.seq_len,
                        "train_sequences": config.train_sequences,
                        "validation_sequences": config.validation_sequences,
                        "tokens_collected": (config.train_sequences + config.validation_sequences) * config.seq_len},
        "transfer": {**asdict(config.transfer), "tokens_per_layer": config.transfer.steps * config.seq_len
                     * config.transfer.batch_sequences, "layers": {str(k): v for k, v in sorted(results.items())}},
        "gates": {str(k): v for k, v in sorted(gates.items())},
        "end_to_end": end_to_end,
        "seconds": spent, "threads": torch.get_num_threads(),
    }
    write_json(report_path, report)
    if out is not None:
        with replacing_dir(Path(out)) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            shutil.copy2(report_path, tmp / REPORT_NAME)
        if delta is not None:
            save_delta(out, src, delta)
            shutil.copy2(report_path, Path(delta) / REPORT_NAME)
    return report


__all__ = ["difference_io", "DifferenceStore", "fit_gate", "MemoryDistillConfig", "distill_memory"]
