"""Helpers of the distillation tests (tests/distill): a small activation store on the bundled attention baseline,
and its fresh conversion's TTT layers."""
import torch
from transformers import AutoTokenizer

from ttt_omni.convert import convert_checkpoint
from ttt_omni.distill import ActivationStore, StoreSettings, calibration_set, load_teacher
from ttt_omni.models import TTTLlamaForCausalLM

LAYERS = [2, 3]


def settings(source, corpus, **overrides) -> StoreSettings:
    fields = dict(source=str(source), layers=LAYERS, seq_len=64, sequences_per_shard=2, train_sequences=3,
                  validation_sequences=2, attention_window=None, attention_sinks=0, corpus=str(corpus), seed=0)
    return StoreSettings(**{**fields, **overrides})


def calibration(source, s: StoreSettings):
    return calibration_set(AutoTokenizer.from_pretrained(source), s.corpus, s.seq_len, s.train_sequences,
                           s.validation_sequences, seed=s.seed)


def collect(source, corpus, folder, **overrides) -> ActivationStore:
    s = settings(source, corpus, **overrides)
    store = ActivationStore(folder, s)
    calibration_ = calibration(source, s)
    store.collect(load_teacher(source, s.attention_window, s.attention_sinks), calibration_.train,
                  calibration_.validation)
    return store


def fresh_layers(source, folder):
    """The fresh conversion's TTT layers {2: ..., 3: ...} (mini-batch 16), float32."""
    convert_checkpoint(source, folder / "converted", ttt_layers=LAYERS, mini_batch_size=16)
    model = TTTLlamaForCausalLM.from_pretrained(folder / "converted", dtype=torch.float32)
    return {i: model.model.layers[i].self_attn.ttt for i in LAYERS}
