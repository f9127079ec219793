"""Attention transfer: a converted TTT layer learns to do the job of the attention it replaces (calibration text ->
activation shards -> per-layer training -> optional end-to-end fine-tune). `distill_checkpoint` runs it all;
`ttt-omni distill` is its command."""
from .activations import ActivationStore, StoreSettings, layer_io
from .calibration import calibration_set
from .pipeline import DistillConfig, distill_checkpoint, load_teacher
from .transfer import LayerTransfer, TransferSettings, transfer_loss

__all__ = ["ActivationStore", "StoreSettings", "layer_io", "calibration_set", "DistillConfig", "distill_checkpoint",
           "load_teacher", "LayerTransfer", "TransferSettings", "transfer_loss"]
