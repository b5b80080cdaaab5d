"""The CTC acoustic model: network, checkpoints (ours and the recipe's), training, ONNX export."""

from lstm_exp.model.checkpoint import load_checkpoint, read_units, require_units, save_checkpoint
from lstm_exp.model.ctc import CTCModel, ModelArch

__all__ = ["CTCModel", "ModelArch", "load_checkpoint", "read_units", "require_units", "save_checkpoint"]
