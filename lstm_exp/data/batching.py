"""Load a prepared split as model-ready examples and group them into padded batches.

An example's features are the split's raw fbank with the global CMVN of ``cmvn.mat`` applied
(``apply-cmvn --norm-vars=true``), then the recipe's ``splice_skip_pad`` (right context and
frame skip from ``meta.json``'s ``fbank`` entry, the recipe's 2 / 2 when absent):
``[T', 243]`` float32 for the recipe's 81-dim fbank.  Labels are ids in the ``units`` file.

Batches keep the examples' order (the recipe batches in file order) unless asked to sort them,
and are zero-padded either to a fixed frame count (the recipe's 390, one static shape for the
NPU) or to the longest utterance of each batch.  :func:`plan_batches` is the one planner every
consumer uses (evaluation, training: `sorted` within each shuffled bucket and for dev scoring,
the export check, the acl preprocess stage, benchmarks), with the
three ``infer.batching`` modes:

* ``fixed``: file order, every batch padded to ``pad_to`` frames (the recipe: 390);
* ``longest``: file order, each batch padded to its longest utterance;
* ``sorted``: utterances sorted by length (longest first), each batch padded to its longest.

The reverse LSTM reads the padding, so the three modes give slightly different posteriors;
callers keep per-utterance results keyed by utterance id, never by batch position.
"""

from __future__ import annotations

import json
import numbers
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import kaldiio
import numpy as np
from tqdm import tqdm

from lstm_exp.data.features import apply_cmvn, load_cmvn, splice_skip_pad
from lstm_exp.data.kaldi_dir import read_table, resolve_feats_scp
from lstm_exp.errors import ConfigError, DataError, fault_message
from lstm_exp.recipe import RECIPE_FRAMES

DEFAULT_RIGHT_CONTEXT = 2
DEFAULT_FRAME_SKIP = 2
MAX_LISTED_FAULTS = 20


@dataclass
class Example:
    """One utterance: features ``float32 [T', D']`` and label ids ``int64 [L]``."""

    utt_id: str
    feats: np.ndarray
    labels: np.ndarray


@dataclass
class Batch:
    """Zero-padded features ``float32 [B, T, D']``, lengths ``int64 [B]``, label ids.

    A length is the example's row count after ``splice_skip_pad``, so it includes the zero row
    that makes it even (the recipe counts it too).
    """

    ids: List[str]
    x: np.ndarray
    lengths: np.ndarray
    labels: List[np.ndarray]


def _raise_faults(summary: str, faults: List[str]) -> None:
    if faults:
        raise DataError(fault_message(summary, faults))


def load_units(path: Path) -> List[str]:
    """Class names from a ``units`` file (``<name> <id>`` lines, ids 0..N-1 in order)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read units file ({exc}); run the prepare stage") from None
    units: List[str] = []
    faults: List[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or fields[1] != str(len(units)):
            faults.append(f"{path}:{number}: expected '<name> {len(units)}', got {line.strip()!r}")
            units.append(fields[0])  # keep counting so one bad line gives one fault
            continue
        if fields[0] in seen:
            faults.append(f"{path}:{number}: unit {fields[0]!r} already has id {seen[fields[0]]}")
        seen.setdefault(fields[0], len(units))
        units.append(fields[0])
    if not units:
        faults.append(f"{path}: no units; expected '<name> <id>' lines (blank 0, UNK 1, phones)")
    _raise_faults(f"units file {path}", faults)
    return units


def _read_meta(prepared_dir: Path) -> dict:
    """``prepared_dir/meta.json`` as a dict ({} when absent: data prepared by hand)."""
    meta_path = prepared_dir / "meta.json"
    if not meta_path.is_file():
        return {}
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{meta_path}: unreadable ({exc}); re-run the prepare stage") from None
    return meta if isinstance(meta, dict) else {}


def _splice_settings(prepared_dir: Path) -> tuple[int, int]:
    """``(right_context, frame_skip)`` recorded in ``meta.json`` (recipe values if absent)."""
    meta_path = prepared_dir / "meta.json"
    meta = _read_meta(prepared_dir)
    fbank = meta.get("fbank")
    fbank = fbank if isinstance(fbank, dict) else {}
    right_context = fbank.get("right_context", DEFAULT_RIGHT_CONTEXT)
    frame_skip = fbank.get("frame_skip", DEFAULT_FRAME_SKIP)
    if not (isinstance(right_context, int) and right_context >= 0
            and isinstance(frame_skip, int) and frame_skip >= 1):
        raise DataError(f"{meta_path}: fbank.right_context={right_context!r}, "
                        f"fbank.frame_skip={frame_skip!r}; need integers >= 0 and >= 1")
    return right_context, frame_skip


def model_input_dim(prepared_dir: Path) -> int:
    """Features per frame that :func:`load_split` gives a model: the CMVN's dimension times the
    spliced frames (``1 + right_context``, e.g. 81 * 3 = 243)."""
    right_context, _ = _splice_settings(Path(prepared_dir))
    return (load_cmvn(Path(prepared_dir) / "cmvn.mat").shape[1] - 1) * (1 + right_context)


def _recorded_allow_pipes(prepared_dir: Path) -> bool:
    return bool(_read_meta(prepared_dir).get("allow_pipes", False))


def _read_labels(text_path: Path, units: Sequence[str]) -> dict[str, np.ndarray]:
    """utt -> label ids; every unknown label or malformed line reported together."""
    if not text_path.is_file():
        raise DataError(f"{text_path}: transcript file not found; run the prepare stage")
    rows, faults = read_table(text_path)
    unit_ids = {name: index for index, name in enumerate(units)}
    labels: dict[str, np.ndarray] = {}
    for number, utt_id, rest in rows:
        names = rest.split()
        unknown = [name for name in dict.fromkeys(names) if name not in unit_ids]
        for name in unknown:
            faults.append(f"{text_path}:{number}: utterance {utt_id}: label {name!r} is not in "
                          "the units file; use the units the model was trained with")
        if not unknown:
            labels[utt_id] = np.array([unit_ids[name] for name in names], dtype=np.int64)
    _raise_faults(f"transcripts {text_path}", faults)
    return labels


def load_split(prepared_dir: Path, split: str, units: List[str], progress: bool = True,
               allow_pipes: Optional[bool] = None) -> List[Example]:
    """Examples of ``prepared_dir/<split>`` in ``feats.scp`` order (CMVN, splice, skip, pad).

    ``allow_pipes`` lets ``feats.scp`` entries be shell commands (``cmd |``), which kaldiio
    runs: only for data you trust.  ``None`` takes what the prepare stage recorded in
    ``meta.json`` (the user's ``data.allow_pipes``), else refuses them.
    """
    prepared_dir = Path(prepared_dir)
    if allow_pipes is None:
        allow_pipes = _recorded_allow_pipes(prepared_dir)
    split_dir = prepared_dir / split
    feats_scp = split_dir / "feats.scp"
    if not feats_scp.is_file():
        raise DataError(f"{feats_scp}: not found; '{split}' is not a prepared split of "
                        f"{prepared_dir} (run the prepare stage, or pick train/dev/test)")
    stats = load_cmvn(prepared_dir / "cmvn.mat")
    right_context, frame_skip = _splice_settings(prepared_dir)
    labels = _read_labels(split_dir / "text", units)
    locations = resolve_feats_scp(feats_scp, allow_pipes=allow_pipes)

    faults = [f"{split_dir / 'text'}: no labels for utterance {utt} of feats.scp"
              for utt in locations if utt not in labels]
    faults += [f"{feats_scp}: no features for utterance {utt} of text"
               for utt in labels if utt not in locations]
    _raise_faults(f"prepared split {split_dir}", faults)

    dim = stats.shape[1] - 1
    examples: List[Example] = []
    bar = tqdm(locations.items(), total=len(locations), desc=f"load {split}", unit="utt",
               disable=not progress, file=sys.stderr)
    for utt_id, location in bar:
        try:
            raw = kaldiio.load_mat(location)
        except Exception as exc:  # kaldiio raises many types for truncated/garbled archives
            raise DataError(f"{feats_scp}: cannot read features of {utt_id} from {location} "
                            f"({type(exc).__name__}: {exc}); re-run the prepare stage") from None
        if raw.ndim != 2 or raw.shape[0] == 0 or raw.shape[1] != dim:
            faults.append(f"{feats_scp}: utterance {utt_id} has features of shape {raw.shape}; "
                          f"expected [T >= 1, {dim}] to match cmvn.mat")
            continue
        feats = splice_skip_pad(apply_cmvn(raw, stats), right_context, frame_skip)
        examples.append(Example(utt_id=utt_id, feats=feats, labels=labels[utt_id]))
    _raise_faults(f"prepared split {split_dir}", faults)
    return examples


def make_batches(examples: Sequence[Example], batch_size: int, pad_to: Optional[int] = None,
                 sort_by_length: bool = False, drop_last: bool = False) -> Iterator[Batch]:
    """Group examples into zero-padded batches of ``batch_size`` (the last may be smaller).

    ``pad_to`` pads every batch to that many frames (the recipe: 390); ``None`` pads each batch
    to its longest utterance.  Order is kept unless ``sort_by_length`` (longest first, ties in
    input order).  ``drop_last`` leaves out a final batch smaller than ``batch_size``.  Arguments
    are checked when this is called, not when the first batch is drawn.
    """
    if not _is_count(batch_size):
        raise ConfigError(f"batch_size={batch_size!r}: write a positive integer")
    if pad_to is not None and not _is_count(pad_to):
        raise ConfigError(f"pad_to={pad_to!r}: write a positive number of frames (the recipe: "
                          "390) or null to pad each batch to its longest utterance")
    if not examples:
        raise DataError("no examples to batch: the split is empty")
    dims = {example.feats.shape[1] for example in examples}
    if len(dims) != 1:
        raise DataError(f"examples have different feature dims {sorted(dims)}; load them with "
                        "one prepared folder")
    if pad_to is not None:
        too_long = [f"{example.utt_id}: {example.feats.shape[0]} frames > pad_to={pad_to}"
                    for example in examples if example.feats.shape[0] > pad_to]
        if too_long:
            raise DataError("\n".join(
                [f"{len(too_long)} utterance(s) longer than pad_to={pad_to} frames: write "
                 f"pad_to=null (pad to each batch's longest) or a value >= "
                 f"{max(e.feats.shape[0] for e in examples)}", *too_long[:MAX_LISTED_FAULTS]]))
    ordered = list(examples)
    if sort_by_length:
        ordered.sort(key=lambda example: -example.feats.shape[0])
    return _batches(ordered, batch_size, pad_to, drop_last, dims.pop())


#: infer.batching modes, see the module docstring
BATCHING_MODES = ("fixed", "longest", "sorted")


def plan_batches(examples: Sequence[Example], batch_size: int, batching: str = "longest",
                 pad_to: Optional[int] = None) -> List[Batch]:
    """The batches of ``examples`` for an ``infer.batching`` mode (see the module docstring).

    ``pad_to`` is only read by ``fixed`` (``None`` there means the recipe's 390 frames)."""
    if batching not in BATCHING_MODES:
        raise ConfigError(f"infer.batching={batching!r}: write one of {', '.join(BATCHING_MODES)}")
    if batching == "fixed":
        return list(make_batches(examples, batch_size, pad_to=pad_to or RECIPE_FRAMES))
    return list(make_batches(examples, batch_size, pad_to=None, sort_by_length=batching == "sorted"))


def _is_count(value: object) -> bool:
    """True for a positive integer (numpy integers included, bools not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def _batches(ordered: List[Example], batch_size: int, pad_to: Optional[int], drop_last: bool,
             dim: int) -> Iterator[Batch]:
    for start in range(0, len(ordered), batch_size):
        group = ordered[start:start + batch_size]
        if drop_last and len(group) < batch_size:
            return
        lengths = np.array([example.feats.shape[0] for example in group], dtype=np.int64)
        frames = int(pad_to) if pad_to is not None else int(lengths.max())
        x = np.zeros((len(group), frames, dim), dtype=np.float32)
        for row, example in enumerate(group):
            x[row, :lengths[row]] = example.feats
        yield Batch(ids=[example.utt_id for example in group], x=x, lengths=lengths,
                    labels=[example.labels for example in group])
