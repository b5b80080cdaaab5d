"""Save and load CTC model checkpoints: ours and the recipe's original ones.

Our format (``save_checkpoint``) is a dict of tensors and plain types only, loadable with
``torch.load(weights_only=True)``::

    {"format": "lstm_exp.ctc/1", "state_dict": {...}, "arch": {...ModelArch...},
     "units": ["blank", "UNK", ...], "meta": {...}}

Original checkpoints (GPU layout from Diamondfan/CTC_pytorch, NPU layout from the Ascend
ModelZoo) are dicts holding ``state_dict`` (often with DataParallel's ``module.`` prefix) plus
training metadata, or a bare state dict.  The architecture is inferred from tensor shapes,
checked against any configured values, and the weights are loaded strictly (the recipe's
``strict=False`` silently ignores wrong keys).  Files that need full unpickling (the GPU
recipe's ``save_package`` stores ``nn.LSTM`` as a class object) are refused unless the caller
passes ``trust=True`` (``model.trust_checkpoint=true``).

The recipe's ``ctc_best_model.pth`` carries no unit list.  Log-probs need none, so such a model
loads with ``units=None`` (and is saved so); whatever maps class ids to phones (the decoders,
the app through :func:`require_units`) refuses it with one line naming ``model.units_file``.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch

from lstm_exp.decode.greedy import NO_UNITS_MESSAGE
from lstm_exp.errors import CheckpointError
from lstm_exp.model.ctc import CTCModel, ModelArch

FORMAT_TAG = "lstm_exp.ctc/1"
_CONV_WEIGHT = re.compile(r"^conv\.(\d+)\.conv\.weight$")
_RNN_WEIGHT = re.compile(r"^rnns\.(\d+)\.rnn\.weight_ih_l0$")
# Config keys compared with what the weights say (dropout is not visible in weights).
_CHECKED_KEYS = ("input_dim", "conv_channels", "lstm_layers", "hidden", "num_classes", "layout")


def _plain(value: Any) -> Any:
    """Reduce ``value`` to types that ``torch.load(weights_only=True)`` accepts."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    return str(value)


def save_checkpoint(path: Union[str, Path], model: CTCModel, units: Optional[Sequence[str]],
                    **meta: Any) -> Path:
    """Write ``model`` (weights, architecture) and its ``units`` (None: unknown) to ``path``."""
    units = [str(u) for u in units] if units is not None else None
    if units is not None and len(units) != model.arch.num_classes:
        raise CheckpointError(f"{path}: {len(units)} units given for a model with "
                              f"{model.arch.num_classes} classes; pass the model's unit list")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    package = {"format": FORMAT_TAG, "state_dict": state, "arch": model.arch.to_dict(),
               "units": units, "meta": _plain(meta)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(package, tmp)
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- reading


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


def _check_container(path: Path) -> None:
    """What torch.save writes: a zip archive (torch >= 1.6) or a pickle (older torch); say which
    is broken rather than torch's internal message."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head:
        raise CheckpointError(f"{path}: not a torch checkpoint (an empty file)")
    if head.startswith(b"PK\x03\x04"):
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path}: not a readable torch checkpoint (a truncated or damaged zip archive, "
                                  f"{path.stat().st_size} bytes): copy or save it again")
    elif not head.startswith(b"\x80"):
        raise CheckpointError(f"{path}: not a torch checkpoint (it starts with {head!r}, neither the zip archive "
                              "torch.save writes nor an older torch pickle)")


def _read_file(path: Path, trust: bool) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found; set model.checkpoint to an "
                              "existing .pth/.pt file")
    _check_container(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's weights-only unpickler names the class it refused ("Unsupported global:
        # GLOBAL torch.nn.modules.rnn.LSTM ..."); other unpickling errors mean garbage.
        needs_global = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if needs_global is None:
            raise CheckpointError(f"{path}: not a readable torch checkpoint (UnpicklingError: "
                                  f"{_first_line(exc)})") from None
        if not trust:
            raise CheckpointError(
                f"{path}: needs full unpickling, which can run arbitrary code (it stores "
                f"{needs_global.group(1)}); if you trust its origin, set "
                "model.trust_checkpoint=true to load it") from None
    except Exception as exc:  # corrupt, truncated, not a torch file
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: "
                              f"{_first_line(exc)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"{path}: could not be unpickled even with "
                              f"model.trust_checkpoint=true ({type(exc).__name__}: "
                              f"{_first_line(exc)})") from None


def _extract_state_dict(path: Path, package: Any) -> Dict[str, torch.Tensor]:
    """The tensors of a checkpoint, ``module.`` prefix removed."""
    if not isinstance(package, Mapping):
        raise CheckpointError(f"{path}: holds a {type(package).__name__}, not a dict; expected "
                              "a state dict or a dict with 'state_dict'")
    state = package.get("state_dict", package)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: 'state_dict' is a {type(state).__name__}, not a dict")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: contains no tensors; is this a model checkpoint?")
    non_tensors = sorted(k for k in state if not isinstance(state[k], torch.Tensor))
    if state is not package and non_tensors:
        raise CheckpointError(f"{path}: state_dict entries that are not tensors: "
                              f"{', '.join(map(str, non_tensors[:5]))}")
    if all(str(k).startswith("module.") for k in tensors):
        tensors = {str(k)[len("module."):]: v for k, v in tensors.items()}
    return {str(k): v.float() if v.is_floating_point() else v for k, v in tensors.items()}


def infer_arch(state: Mapping[str, torch.Tensor], path: Union[str, Path] = "<state dict>",
               input_dim: int = 243) -> ModelArch:
    """Architecture implied by the tensor shapes of a (prefix-free) state dict."""
    conv_ids = sorted(int(m.group(1)) for k in state if (m := _CONV_WEIGHT.match(k)))
    rnn_ids = sorted(int(m.group(1)) for k in state if (m := _RNN_WEIGHT.match(k)))
    faults = []
    if not conv_ids or conv_ids != list(range(len(conv_ids))):
        faults.append(f"conv.N.conv.weight: found layers {conv_ids}, expected 0, 1, ...")
    if not rnn_ids or rnn_ids != list(range(len(rnn_ids))):
        faults.append(f"rnns.N.rnn.weight_ih_l0: found layers {rnn_ids}, expected 0, 1, ...")
    head = state.get("fc.1.weight")
    if head is None:
        faults.append("fc.1.weight: missing (the recipe head is BatchNorm1d fc.0 -> Linear fc.1)")
    if faults:
        raise CheckpointError.listing(f"{path}: not the recipe's CTC network", faults)
    channels = [int(state[f"conv.{i}.conv.weight"].shape[0]) for i in conv_ids]
    hidden = int(state["rnns.0.rnn.weight_hh_l0"].shape[1]) if "rnns.0.rnn.weight_hh_l0" in state \
        else int(state["rnns.0.rnn.weight_ih_l0"].shape[0]) // 4
    has_npu = any(k.startswith("rnns.") and ".rnn_w." in k for k in state)
    has_gpu = any(k.endswith("_reverse") for k in state)
    if has_npu and has_gpu:
        raise CheckpointError(f"{path}: mixes GPU-layout keys (*_reverse) and NPU-layout keys "
                              "(rnn_w); expected one layout")
    return ModelArch(input_dim=input_dim, conv_channels=channels, lstm_layers=len(rnn_ids),
                     hidden=hidden, num_classes=int(head.shape[0]),
                     layout="npu" if has_npu else "gpu")


def _expected_values(expected: Any) -> Dict[str, Any]:
    if expected is None:
        return {}
    if dataclasses.is_dataclass(expected) and not isinstance(expected, type):
        expected = dataclasses.asdict(expected)
    if not isinstance(expected, Mapping):
        expected = {k: getattr(expected, k) for k in _CHECKED_KEYS if hasattr(expected, k)}
    return {k: expected[k] for k in _CHECKED_KEYS if k in expected and expected[k] is not None}


def _check_expected(path: Path, arch: ModelArch, expected: Mapping[str, Any]) -> None:
    faults = []
    for key, value in expected.items():
        found = getattr(arch, key)
        if key == "conv_channels":
            value = [int(v) for v in value]
        if value == found:
            continue
        if key == "layout":
            faults.append(f"model.layout: config says {value!r}, the checkpoint has the "
                          f"{found!r} layout; set model.layout={found}")
        else:
            faults.append(f"model.{key}: config says {value!r}, the checkpoint's weights say "
                          f"{found!r}; set model.{key}={found} or use another checkpoint")
    if faults:
        raise CheckpointError.listing(f"{path}: checkpoint does not match the model config", faults)


def _check_keys_and_shapes(path: Path, model: CTCModel, state: Dict[str, torch.Tensor]) -> None:
    wanted = model.state_dict()
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in state if k not in wanted]
    faults = [f"{k}: missing" for k in missing]
    faults += [f"{k}: unexpected key" for k in unexpected]
    for key, tensor in state.items():
        if key in wanted and tuple(tensor.shape) != tuple(wanted[key].shape):
            faults.append(f"{key}: shape {tuple(tensor.shape)}, the inferred architecture "
                          f"needs {tuple(wanted[key].shape)}")
    if faults:
        raise CheckpointError.listing(f"{path}: weights do not fit the recipe network {model.arch.to_dict()}",
                                      faults)


# --------------------------------------------------------------------------- units


def read_units(path: Union[str, Path]) -> List[str]:
    """Unit list from our ``<name> <id>`` file or the recipe's ``data/units``.

    The recipe's file lists one phone per line (first appearance in the train transcripts);
    its ``Vocab`` prepends ``blank`` (0) and ``UNK`` (1).  Our file names every class with its
    id, blank and UNK included.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: units file not found; set model.units_file to the "
                              "prepared data's 'units' or the recipe's data/units")
    rows = [line.split() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]
    if not rows:
        raise CheckpointError(f"{path}: units file is empty")
    if all(len(r) == 2 and r[1].lstrip("-").isdigit() for r in rows):
        ids = [int(r[1]) for r in rows]
        if sorted(ids) != list(range(len(rows))):
            raise CheckpointError(f"{path}: ids must be 0..{len(rows) - 1}, each once; found "
                                  f"{sorted(ids)[:5]}...")
        by_id = {int(r[1]): r[0] for r in rows}
        return [by_id[i] for i in range(len(rows))]
    if all(len(r) == 1 for r in rows):
        names = [r[0] for r in rows]
        if names[:2] == ["blank", "UNK"]:
            return names
        return ["blank", "UNK"] + [n for n in names if n not in ("blank", "UNK")]
    bad = next(i for i, r in enumerate(rows, 1) if len(r) not in (1, 2))
    raise CheckpointError(f"{path}: line {bad}: expected '<name> <id>' or one unit per line "
                          "(the recipe's data/units)")


# --------------------------------------------------------------------------- loading


def load_checkpoint(path: Union[str, Path], units_file: Optional[Union[str, Path]] = None,
                    trust: bool = False, expected: Any = None) -> CTCModel:
    """Load our or an original checkpoint as a :class:`CTCModel` in eval mode.

    ``expected``: config values (a dict, ``ModelArch`` or ``ModelConfig``) that must agree with
    the weights; ``None`` entries and unknown keys are ignored.  The returned model carries
    ``.arch`` and ``.units``: the stored list, else the one of ``units_file``, else None (an
    original checkpoint; see :func:`require_units`).
    """
    path = Path(path)
    package = _read_file(path, trust)
    state = _extract_state_dict(path, package)
    expected_values = _expected_values(expected)
    ours = isinstance(package, Mapping) and package.get("format") == FORMAT_TAG
    input_dim = int(expected_values.get("input_dim", 243))
    if ours:
        arch = ModelArch.from_dict(package["arch"])
        if "input_dim" not in expected_values:
            input_dim = arch.input_dim
    inferred = infer_arch(state, path, input_dim)
    if ours and {k: v for k, v in arch.to_dict().items() if k != "dropout"} != \
            {k: v for k, v in inferred.to_dict().items() if k != "dropout"}:
        raise CheckpointError(f"{path}: stored arch {arch.to_dict()} disagrees with its weights "
                              f"{inferred.to_dict()}; the file is inconsistent")
    _check_expected(path, inferred, expected_values)
    model = CTCModel(inferred)
    # Checkpoints from torch < 0.4.1 lack BatchNorm's num_batches_tracked (unused in eval).
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    _check_keys_and_shapes(path, model, state)
    model.load_state_dict(state, strict=True)
    model.eval()

    units: Optional[List[str]] = None
    if ours and package.get("units") is not None:
        units = [str(u) for u in package["units"]]
    if units_file is not None:
        file_units = read_units(units_file)
        if units is not None and file_units != units:
            raise CheckpointError(f"{units_file}: unit list differs from the one stored in "
                                  f"{path}; drop model.units_file or fix the file")
        units = file_units
    if units is not None and len(units) != inferred.num_classes:
        raise CheckpointError(f"{units_file or path}: {len(units)} units but the checkpoint has "
                              f"{inferred.num_classes} output classes; use the unit list the "
                              "model was trained with")
    model.units = units
    return model


def require_units(model: CTCModel, source: Union[str, Path, None] = None) -> List[str]:
    """The model's unit list; a :class:`CheckpointError` naming ``model.units_file`` when it has none."""
    units = getattr(model, "units", None)
    if units is None:
        raise CheckpointError(f"{source or 'the model'}: {NO_UNITS_MESSAGE}")
    return list(units)
