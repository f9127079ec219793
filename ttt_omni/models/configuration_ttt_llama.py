"""`TTTLlamaConfig`: a `LlamaConfig` plus where the TTT layers go and how they learn."""
from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import LlamaConfig

TTT_TYPES = ("linear", "mlp")
TTT_MODES = ("replace", "beside")
DEFAULT_TTT_LAYER_COUNT = 8


@strict
class TTTLlamaConfig(LlamaConfig):
    """Llama geometry plus the TTT hybrid's own fields.

    ttt_layers: decoder layer indices that get a TTT layer (default: the top 8).
    ttt_mode: "replace": the TTT layer takes the attention's place; "beside": the attention stays and the TTT layer
        runs beside it on the same input, `y = attn(x) + g * ttt(x)` with a learnable per-channel gate `g`
        initialised at 0 (so a fresh model computes exactly what the attention-only model computes).
    ttt_type: "linear" (TTT-Linear) or "mlp" (TTT-MLP).
    mini_batch_size: tokens per inner gradient step.
    ttt_base_lr: base inner learning rate (eta = base_lr * sigmoid(learned gate) / head_dim inside the layer).
    attention_window: None keeps full attention in the remaining layers; an int makes them sliding-window
        attention over that many tokens, and their KV cache is then bounded (bounded-memory mode).
    attention_sinks: with attention_window, the first this-many tokens of the sequence stay visible to every
        windowed attention layer besides the window (attention sinks, StreamingLLM; 0 = a plain sliding window).
    scan_checkpoint_every: gradient-checkpoint the TTT scan every N mini-batches (training memory; None = off).
    """

    model_type = "ttt_llama"
    # transformers' sliding-window mask reads `config.sliding_window`
    attribute_map = {"sliding_window": "attention_window"}

    ttt_layers: list[int] | None = None
    ttt_type: str = "linear"
    ttt_mode: str = "replace"
    mini_batch_size: int = 64
    ttt_base_lr: float = 1.0
    attention_window: int | None = None
    attention_sinks: int = 0
    scan_checkpoint_every: int | None = None

    def __post_init__(self, **kwargs):
        if self.ttt_layers is None:
            self.ttt_layers = list(range(max(0, self.num_hidden_layers - DEFAULT_TTT_LAYER_COUNT), self.num_hidden_layers))
        else:
            self.ttt_layers = sorted(set(int(i) for i in self.ttt_layers))
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Part of `@strict` validation: reject TTT settings the model cannot be built with."""
        super().validate_architecture()
        if self.ttt_type not in TTT_TYPES:
            raise ValueError(f"ttt_type={self.ttt_type!r} is unknown; expected one of {TTT_TYPES}")
        if self.ttt_mode not in TTT_MODES:
            raise ValueError(f"ttt_mode={self.ttt_mode!r} is unknown; expected one of {TTT_MODES}")
        bad = [i for i in self.ttt_layers if not 0 <= i < self.num_hidden_layers]
        if bad:
            raise ValueError(
                f"ttt_layers {bad} are out of range; expected layer indices in 0..{self.num_hidden_layers - 1} "
                f"(num_hidden_layers={self.num_hidden_layers})"
            )
        if self.mini_batch_size < 1:
            raise ValueError(f"mini_batch_size={self.mini_batch_size} must be a positive number of tokens")
        if self.attention_window is not None and self.attention_window < 1:
            raise ValueError(f"attention_window={self.attention_window} must be None (full attention) or >= 1 tokens")
        if self.attention_sinks < 0:
            raise ValueError(f"attention_sinks={self.attention_sinks} must be >= 0 tokens")
        if self.attention_sinks and self.attention_window is None:
            raise ValueError(f"attention_sinks={self.attention_sinks} needs attention_window (sink tokens are what a "
                             "sliding window keeps besides its window); set attention_window or attention_sinks=0")
        if self.scan_checkpoint_every is not None and self.scan_checkpoint_every < 1:
            raise ValueError(f"scan_checkpoint_every={self.scan_checkpoint_every} must be None or >= 1 mini-batches")

    @property
    def attention_layers(self) -> list[int]:
        """Decoder layers that keep transformers' own attention (all of them in beside mode)."""
        ttt = set(self.ttt_layers) if self.ttt_mode == "replace" else set()
        return [i for i in range(self.num_hidden_layers) if i not in ttt]


__all__ = ["TTTLlamaConfig", "TTT_TYPES", "TTT_MODES"]
