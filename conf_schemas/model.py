"""Schemas of the ``model``, ``train`` and ``export`` config groups.

Defaults follow the recipe (Diamondfan/CTC_pytorch ``timit/conf/ctc_config.yaml``): 2 convs of
32 channels, 4 BiLSTM layers of 384, dropout 0.2, Adam lr 1e-3, weight decay 5e-4, lr halved
when dev stops improving, batch 8, seed 1.  The presets ``ctc_small`` / ``ctc_recipe`` override
them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional

from lstm_exp.errors import ConfigError, fault_message
from lstm_exp.recipe import RECIPE_FRAMES

MODEL_LAYOUTS = ("gpu", "npu")
TRAIN_DEVICES = ("auto", "cpu", "cuda")


def _raise_all(what: str, faults: List[str]) -> None:
    if faults:
        raise ConfigError(fault_message(f"invalid {what} config", faults))


@dataclass
class ModelConfig:
    """The network's shape, or an external checkpoint to use instead of training."""

    name: str = "ctc_recipe"
    #: output channels of each conv (first stride (1,2), then (2,2)); recipe [32, 32]
    conv_channels: Optional[List[int]] = field(default_factory=lambda: [32, 32])
    lstm_layers: Optional[int] = 4
    #: LSTM hidden size per direction
    hidden: Optional[int] = 384
    #: parameter layout: gpu (one bidirectional nn.LSTM per layer, Diamondfan/CTC_pytorch) or
    #: npu (forward rnn + time-flipped rnn_w, Ascend ModelZoo); same maths, different ONNX graph
    layout: Optional[str] = "gpu"
    dropout: float = 0.2
    #: an original or external checkpoint (.pth); when set, training is skipped
    checkpoint: Optional[str] = None
    #: unit list for a checkpoint (or export.onnx_file) that carries none (the recipe's data/units,
    #: or ours); checked with the backend (lstm_exp.backends.plugin.BackendPlugin.validate)
    units_file: Optional[str] = None
    #: allow full unpickling (can run code) for checkpoints that weights_only loading refuses
    trust_checkpoint: bool = False

    def __post_init__(self) -> None:
        faults = []
        if self.checkpoint is None:
            missing = [k for k in ("conv_channels", "lstm_layers", "hidden", "layout") if getattr(self, k) is None]
            if missing:
                _raise_all("model", [f"model.{k}: null is only allowed with model.checkpoint (read from its "
                                     "tensors); give a value to train a model" for k in missing])
        channels = list(self.conv_channels) if self.conv_channels is not None else None
        if channels is not None and (not channels or any(not isinstance(c, int) or c < 1 for c in channels)):
            faults.append(f"model.conv_channels: {self.conv_channels!r} must be a non-empty "
                          "list of positive integers, e.g. [32, 32] (recipe)")
        if self.lstm_layers is not None and not (isinstance(self.lstm_layers, int) and self.lstm_layers >= 1):
            faults.append(f"model.lstm_layers: {self.lstm_layers!r} must be an integer >= 1 "
                          "(recipe: 4)")
        if self.hidden is not None and not (isinstance(self.hidden, int) and self.hidden >= 1):
            faults.append(f"model.hidden: {self.hidden!r} must be an integer >= 1 (recipe: 384)")
        if self.layout is not None and self.layout not in MODEL_LAYOUTS:
            faults.append(f"model.layout: {self.layout!r} is not a layout; write gpu or npu")
        if not 0.0 <= self.dropout < 1.0:
            faults.append(f"model.dropout: {self.dropout!r} must be in [0, 1) (recipe: 0.2)")
        _raise_all("model", faults)


@dataclass
class TrainConfig:
    """How the model is trained (CTC loss, Adam, dev-driven lr halving and early stopping)."""

    #: upper bound on epochs; early stopping or max_minutes may end training sooner
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 5e-4
    #: halve the learning rate after every epoch in which dev did not improve
    lr_halving: bool = True
    #: the learning rate never goes below this
    min_lr: float = 1e-5
    #: stop after this many epochs without a dev improvement (0: never stop early)
    patience: int = 4
    #: wall-clock budget for training, evaluation included (0: none)
    max_minutes: float = 0.0
    #: random mel-axis warp + SpecAugment masks on training batches
    augment: bool = False
    #: mel-axis warp factors are drawn uniformly from [warp_min, warp_max] (1.0 = no warp)
    warp_min: float = 0.82
    warp_max: float = 1.18
    #: SpecAugment: number of frequency masks and their maximum width in mel bins
    freq_masks: int = 2
    freq_mask_width: int = 8
    #: SpecAugment: number of time masks and their maximum width in (skipped) frames
    time_masks: int = 2
    time_mask_width: int = 5
    #: torch CPU threads (0: torch's default)
    num_threads: int = 0
    #: auto (cuda when present), cpu or cuda
    device: str = "auto"
    #: continue an interrupted training from its last finished epoch (the work folder's last.pt),
    #: so that a plain rerun of the same command goes on; force=true (stage all or train) and
    #: resume=false start afresh; an unreadable last.pt is reported and training starts afresh
    resume: bool = True
    seed: int = 1
    #: clip the gradient norm at this value (0: no clipping)
    grad_clip: float = 5.0
    #: train batches are formed by length within groups of this many batches (0: global sort)
    bucket_batches: int = 20

    def __post_init__(self) -> None:
        faults = []
        positive_ints = {"epochs": "30", "batch_size": "8 (recipe) or 16"}
        for name, hint in positive_ints.items():
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                faults.append(f"train.{name}: {value!r} must be an integer >= 1, e.g. {hint}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            faults.append(f"train.lr: {self.lr!r} must be > 0 (recipe: 0.001)")
        elif not (math.isfinite(self.min_lr) and 0 <= self.min_lr <= self.lr):
            faults.append(f"train.min_lr: {self.min_lr!r} must be in [0, train.lr]")
        if not self.weight_decay >= 0:
            faults.append(f"train.weight_decay: {self.weight_decay!r} must be >= 0 "
                          "(recipe: 0.0005)")
        for name in ("patience", "freq_masks", "freq_mask_width", "time_masks",
                     "time_mask_width", "num_threads", "bucket_batches"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 0):
                faults.append(f"train.{name}: {value!r} must be an integer >= 0")
        if not self.max_minutes >= 0:
            faults.append(f"train.max_minutes: {self.max_minutes!r} must be >= 0 (0: no budget)")
        if not 0.5 <= self.warp_min <= 1.0 <= self.warp_max <= 2.0:
            faults.append(f"train.warp_min/warp_max: [{self.warp_min}, {self.warp_max}] must "
                          "satisfy 0.5 <= warp_min <= 1 <= warp_max <= 2, e.g. [0.82, 1.18]")
        if self.freq_mask_width > 80:
            faults.append(f"train.freq_mask_width: {self.freq_mask_width} exceeds the 80 mel "
                          "bins; write e.g. 8")
        if self.device not in TRAIN_DEVICES:
            faults.append(f"train.device: {self.device!r} is not a device; write auto, cpu or "
                          "cuda")
        if not self.grad_clip >= 0:
            faults.append(f"train.grad_clip: {self.grad_clip!r} must be >= 0 (0: no clipping)")
        _raise_all("train", faults)


@dataclass
class ExportConfig:
    """ONNX export through torch's legacy exporter (the recipe: opset 11, [16, 390, 243])."""

    opset: int = 11
    #: batch of the static variant (and of the example input)
    batch: int = 16
    #: frames of the static variant (the recipe pads every utterance to 390)
    frames: int = RECIPE_FRAMES
    #: dynamic batch and time axes (onnxruntime); false gives the static shape ATC needs
    dynamic: bool = True
    #: largest |onnxruntime - torch| accepted on the check batches
    atol: float = 1e-4
    #: an ONNX made elsewhere (e.g. the guide's lstm.onnx) used instead of exporting the model:
    #: backend=onnxruntime or acl (ATC converts it); no training, units from model.units_file or
    #: the prepared data; checked on import (lstm_exp.model.onnx_file)
    onnx_file: Optional[str] = None

    def __post_init__(self) -> None:
        faults = []
        if not (isinstance(self.opset, int) and 9 <= self.opset <= 20):
            faults.append(f"export.opset: {self.opset!r} must be in 9..20 (recipe and ATC: 11)")
        if not (isinstance(self.batch, int) and self.batch >= 1):
            faults.append(f"export.batch: {self.batch!r} must be an integer >= 1 (recipe: 16)")
        if not (isinstance(self.frames, int) and self.frames >= 2):
            faults.append(f"export.frames: {self.frames!r} must be an integer >= 2 "
                          "(recipe: 390)")
        if not self.atol > 0:
            faults.append(f"export.atol: {self.atol!r} must be > 0, e.g. 1e-4")
        if self.onnx_file is not None and not str(self.onnx_file).strip():
            faults.append("export.onnx_file: empty; write a path to an .onnx file or null")
        _raise_all("export", faults)
