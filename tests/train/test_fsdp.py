"""FSDP2 on CPU (gloo, 2 processes): bf16 compute, TTT inner parameters and states float32, a loadable export."""
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

from support.distributed import free_port

pytestmark = [pytest.mark.fsdp, pytest.mark.slow]

SCRIPT = textwrap.dedent("""
    import json, sys, torch
    from ttt_omni.train.config import TrainConfig
    from ttt_omni.train.trainer import Trainer
    trainer = Trainer(TrainConfig.from_yaml(sys.argv[1]))
    trainer.train()
    inner = {n: p for n, p in trainer.model.named_parameters() if ".inner." in n}
    report = {
        "sharded": all(type(p).__name__ == "DTensor" for p in inner.values()),
        "inner_dtypes": sorted({str(p.dtype) for p in inner.values()}),
        "state_dtypes": sorted({str(t.dtype) for s in trainer.carried.values() for t in s.tensors().values()}),
        "rows": trainer.task.batch(0)["conversation"].tolist(),
    }
    print("REPORT" + json.dumps(report), flush=True)
""")


def test_fsdp_two_processes_keep_ttt_float32(tmp_path, conversations_jsonl):
    cfg = tmp_path / "fsdp.yaml"
    cfg.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "run"), "jsonl": str(conversations_jsonl), "books_split": None,
        "bpe_vocab_size": 300, "context": 64, "batch_size": 1, "steps": 2, "save_every": 2, "monitor_every": 1,
        "bf16": True, "fsdp": True,
        "model_overrides": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                            "num_attention_heads": 2, "num_key_value_heads": 1, "ttt_layers": [1],
                            "mini_batch_size": 16}}))
    script = tmp_path / "run_fsdp.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(free_port()), str(script), str(cfg)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The two processes' lines may interleave on the shared stdout.
    reports = [json.loads(m) for m in re.findall(r"REPORT(\{.*?\})", proc.stdout)]
    assert len(reports) == 2
    for r in reports:
        assert r["sharded"] and r["inner_dtypes"] == ["torch.float32"] and r["state_dtypes"] == ["torch.float32"]
    assert reports[0]["rows"] != reports[1]["rows"], "each process trains on its own lanes"

    import ttt_omni.models  # noqa: F401
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "final")
    assert model.model.layers[1].self_attn.ttt.inner.W1.dtype == torch.float32
    assert (tmp_path / "run" / "checkpoints" / "step-0000002" / "rank1.pt").is_file()
    assert (tmp_path / "run" / "monitor.csv").is_file()
