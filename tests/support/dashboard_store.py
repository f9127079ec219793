"""A results store filled by real tiny runs, for the dashboard tests and its screenshots: ppl_vs_length of the tiny
TTT model, the tiny baseline and a freshly trained checkpoint, that checkpoint's monitor (stored by `evalsuite
gate`), a human_pref summary bound to that checkpoint, and the leaderboards' input."""
from __future__ import annotations

import json
from pathlib import Path

from ttt_omni.data_manifest import books
from ttt_omni.resources import config_path


def fill_store(root: Path) -> dict:
    """Writes the store (and the training run) under `root`; returns {"url", "final", "root"}."""
    from accelerate.state import AcceleratorState

    from evalsuite.checkpoint_id import checkpoint_identity
    from evalsuite.cli import main as evalsuite
    from evalsuite.humaneval.results import write_rows
    from evalsuite.humaneval.summary import summarize
    from evalsuite.runner import run_task
    from evalsuite.store import Store
    from ttt_omni.train.config import TrainConfig
    from ttt_omni.train.trainer import Trainer

    url = f"sqlite:///{root / 'results.db'}"
    text = " ".join(books("train")[-1].read().split())[:24000]
    jsonl = root / "conv.jsonl"
    jsonl.write_text("".join(json.dumps({"conversation_id": f"c{i}", "turns": [
        {"speaker": "Ann", "text": text[i * 6000:i * 6000 + 3000]},
        {"speaker": "Bob", "text": text[i * 6000 + 3000:(i + 1) * 6000]}]}) + "\n" for i in range(4)))
    AcceleratorState._reset_state(reset_partial_state=True)
    cfg = TrainConfig.from_dict(dict(
        output_dir=str(root / "run"), jsonl=str(jsonl), books_split=None, bpe_vocab_size=300, context=64,
        batch_size=2, steps=4, warmup=1, save_every=4, monitor_every=1, stage=1,
        model_overrides={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                         "num_key_value_heads": 1, "ttt_layers": [1], "mini_batch_size": 16}))
    final = Trainer(cfg).train()["final"]
    AcceleratorState._reset_state(reset_partial_state=True)

    corpus = root / "eval.txt"
    corpus.write_text(" ".join(books("eval")[0].read().split())[:8000])
    store = Store(url)
    for model in ("tiny", "tiny-baseline", f"ttt:{final}"):
        run_task("ppl_vs_length", model, store=store, corpus=str(corpus), lengths=[128, 256, 512, 1024],
                 progress=False)
    assert evalsuite(["gate", "--checkpoint", final, "--stage", "1", "--config",
                      str(config_path("tiny-curriculum")), "--db", url]) in (0, 1)
    model_id, model_hash = checkpoint_identity(final)
    systems = [model_id, "tiny-baseline"]
    key = {"bundle_id": "b1", "task": "ppl_vs_length", "systems": systems, "checkpoints": {model_id: model_hash},
           "pairs": {f"p{i}": {"left": {"system": systems[i % 2]}, "right": {"system": systems[1 - i % 2]}}
                     for i in range(6)}}
    votes = [{"rater": r, "pair_id": f"p{i}", "choice": c} for r in ("ann", "bob")
             for i, c in enumerate(["left", "left", "tie", "right", "left", "right"])]
    write_rows(url, key, summarize(key, votes)["rows"])
    return {"url": url, "final": final, "root": root}
