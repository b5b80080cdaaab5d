"""The recipe's pre- and postprocessing for Ascend tools: padded batches as raw ``.bin`` files.

Layout written by :func:`write_bin_batches` into ``out_dir``::

    lstm.info          one line per batch: ``<index> <bin file> <B>,<T>,<D>`` (paths relative
                       to the info file, the recipe's ``lstm.info`` style)
    <n>.bin            the padded batch, raw little-endian float32, C order, exactly B*T*D*4 bytes
    <n>.ids.txt        one line per row of the batch: ``<utt_id> <true length in frames>``

Inference tools (pyacl_infer, ais_bench, :func:`infer_bin_batches`) save one ``.npy`` per batch
holding log-probs ``[T', B, C]``: ``<n>.npy`` (ours), ``<n>_0.npy`` (ais_bench) or
``<index>.<output>.npy`` such as ``0.0.npy`` (the recipe's ``pyacl_infer.py``, which the recipe's
postprocess reads as ``{i}.0.npy``); :func:`read_inference_outputs` turns those back into
per-utterance log-probs.

The recipe's own info file (``LSTM_get_info.py``) reads the same, only spelled differently:
``<index> ./lstm_bin/inputs_<index>.bin (<B>,390,243)``, one line per batch and no utterance ids
beside the ``.bin`` files; :func:`read_info` takes both spellings.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np
from tqdm import tqdm

from lstm_exp.errors import DataError, fault_message, non_finite

INFO_NAME = "lstm.info"
BIN_DTYPE = np.dtype("<f4")


class BatchLike(Protocol):
    """What :func:`write_bin_batches` needs of a batch (``lstm_exp.data.batching.Batch``)."""

    ids: Sequence[str]
    x: np.ndarray
    lengths: np.ndarray


@dataclass(frozen=True)
class BinEntry:
    """One line of the info file."""

    index: int
    bin_path: Path
    shape: tuple[int, int, int]

    @property
    def ids_path(self) -> Path:
        return self.bin_path.with_name(f"{self.bin_path.stem}.ids.txt")


def write_bin_batches(batches: Iterable[BatchLike], out_dir: Path | str, info_name: str = INFO_NAME, progress: bool = False) -> Path:
    """Write every batch as ``<n>.bin`` + ``<n>.ids.txt``; return the info file's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, batch in enumerate(tqdm(batches, desc="write .bin", unit="batch", disable=not progress)):
        ids = [str(i) for i in batch.ids]
        x = np.asarray(batch.x)
        lengths = np.asarray(batch.lengths).astype(np.int64)
        if x.ndim != 3 or not (x.shape[0] == len(ids) == len(lengths)):
            raise DataError(f"batch {index}: x {list(x.shape)}, {len(ids)} ids and {len(lengths)} lengths do not agree: x must be [B, T, D] with B ids and lengths")
        if len(lengths) and (lengths.min() < 1 or lengths.max() > x.shape[1]):
            raise DataError(f"batch {index}: lengths {lengths.tolist()} must lie in 1..{x.shape[1]} (the padded frame count)")
        bin_path = out_dir / f"{index}.bin"
        bin_path.write_bytes(np.ascontiguousarray(x, dtype=BIN_DTYPE).tobytes())
        entry = BinEntry(index, bin_path, tuple(int(d) for d in x.shape))
        entry.ids_path.write_text("".join(f"{utt} {int(n)}\n" for utt, n in zip(ids, lengths)))
        lines.append(f"{index} {bin_path.name} {','.join(map(str, entry.shape))}\n")
    if not lines:
        raise DataError(f"no batches to write into {out_dir}: the split is empty or infer.max_utterances=0")
    info_path = out_dir / info_name
    info_path.write_text("".join(lines))
    return info_path


def read_info(info_path: Path | str) -> list[BinEntry]:
    """Parse an info file; every malformed line is reported at once."""
    info_path = Path(info_path)
    if not info_path.is_file():
        raise DataError(f"info file {info_path} does not exist: run stage=preprocess first")
    entries, faults = [], []
    for number, line in enumerate(info_path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(maxsplit=2)
        try:
            if len(fields) != 3:
                raise ValueError("expected '<index> <bin file> <B>,<T>,<D>' (or the recipe's '(<B>,<T>,<D>)')")
            shape_text = fields[2].strip()
            if shape_text.startswith("(") and shape_text.endswith(")"):
                shape_text = shape_text[1:-1]  # LSTM_get_info.py writes (16,390,243)
            shape = tuple(int(d) for d in shape_text.replace(" ", "").split(","))
            if len(shape) != 3 or min(shape) < 1:
                raise ValueError(f"shape {fields[2].strip()} is not three positive sizes B,T,D")
            entries.append(BinEntry(int(fields[0]), info_path.parent / fields[1], shape))
        except ValueError as exc:
            faults.append(f"{info_path}:{number}: {exc}")
    if faults:
        raise DataError(fault_message(f"info file {info_path} is malformed", faults))
    if not entries:
        raise DataError(f"info file {info_path} lists no batches: rerun stage=preprocess")
    return entries


def read_ids(entry: BinEntry) -> tuple[list[str], np.ndarray]:
    if not entry.ids_path.is_file():
        raise DataError(f"{entry.ids_path} is missing (utterance ids of {entry.bin_path.name}): rerun stage=preprocess")
    ids, lengths = [], []
    for number, line in enumerate(entry.ids_path.read_text().splitlines(), start=1):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise DataError(f"{entry.ids_path}:{number}: expected '<utt_id> <length>', got {line!r}")
        ids.append(fields[0])
        lengths.append(int(fields[1]))
    if len(ids) != entry.shape[0]:
        raise DataError(f"{entry.ids_path} lists {len(ids)} utterances but {entry.bin_path.name} holds a batch of {entry.shape[0]}")
    return ids, np.asarray(lengths, dtype=np.int64)


def read_bin_batches(info_path: Path | str) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
    """Yield ``(ids, x float32 [B, T, D], lengths int64 [B])`` for every batch the info file lists."""
    for entry in read_info(info_path):
        ids, lengths = read_ids(entry)
        expected = math.prod(entry.shape) * BIN_DTYPE.itemsize
        if not entry.bin_path.is_file():
            raise DataError(f"{entry.bin_path} (listed in {info_path}) does not exist: rerun stage=preprocess")
        actual = entry.bin_path.stat().st_size
        if actual != expected:
            raise DataError(f"{entry.bin_path} has {actual} bytes; shape {list(entry.shape)} float32 needs {expected}: rerun stage=preprocess")
        x = np.fromfile(entry.bin_path, dtype=BIN_DTYPE).reshape(entry.shape).astype(np.float32, copy=False)
        yield ids, x, lengths


def output_path(out_dir: Path | str, entry: BinEntry) -> Path:
    """Where :func:`infer_bin_batches` saves the log-probs of ``entry``: ``<stem>.npy``."""
    return Path(out_dir) / f"{entry.bin_path.stem}.npy"


def output_candidates(out_dir: Path | str, entry: BinEntry) -> list[Path]:
    """The names an inference tool may have given ``entry``'s first output, in the order tried:
    ours (``<stem>.npy``), ais_bench's (``<stem>_0.npy``), the recipe's pyacl_infer
    (``<index>.0.npy``, also ``<stem>.0.npy``)."""
    out_dir = Path(out_dir)
    stem = entry.bin_path.stem
    names = [f"{stem}.npy", f"{stem}_0.npy", f"{entry.index}.0.npy", f"{stem}.0.npy"]
    return [out_dir / name for name in dict.fromkeys(names)]


def load_output(path: Path) -> np.ndarray:
    """The log-probs an inference tool saved at ``path`` (``.npy``); a DataError naming the file
    when it is not a NumPy array file or holds NaN or infinite values (a diverged model, or an
    fp16 overflow on the device) that would otherwise be decoded into a silent, wrong score."""
    try:
        log_probs = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # numpy: ValueError for bad headers, EOFError for empty files
        raise DataError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc})") from None
    if not isinstance(log_probs, np.ndarray) or not np.issubdtype(log_probs.dtype, np.floating):
        raise DataError(f"{path}: holds {getattr(log_probs, 'dtype', type(log_probs).__name__)} data, not float log-probs")
    found = non_finite(log_probs)
    if found:
        raise DataError(f"{path}: non-finite log-probs ({found}); the model or its precision (e.g. fp16 "
                        "overflow) produced them, and they cannot be decoded")
    return log_probs


def find_output(out_dir: Path | str, entry: BinEntry) -> Path:
    """The saved output of ``entry`` (see :func:`output_candidates`), or a DataError naming them."""
    candidates = output_candidates(out_dir, entry)
    for path in candidates:
        if path.is_file():
            return path
    raise DataError(
        f"inference output {candidates[0]} for {entry.bin_path.name} does not exist (nor "
        f"{', '.join(p.name for p in candidates[1:])}): run stage=infer first"
    )


def infer_bin_batches(backend, info_path: Path | str, out_dir: Path | str, progress: bool = False) -> list[float]:
    """Run a loaded backend over every ``.bin`` (the recipe's pyacl_infer); save ``<n>.npy``
    ``[T', B, C]`` into ``out_dir``; return each batch's ``infer_ms``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = read_info(info_path)
    timings = []
    for entry, (_, x, _) in tqdm(zip(entries, read_bin_batches(info_path)), total=len(entries), desc="infer .bin", unit="batch", disable=not progress):
        result = backend.run(x)
        np.save(output_path(out_dir, entry), result.log_probs)
        timings.append(result.infer_ms)
    return timings


def stride_output_lengths(frames_in: int, frames_out: int) -> Callable[[int], int]:
    """Output length of a network that shortens time by an integer stride (the recipe's conv
    with stride 2 and padding 1: ``ceil(len / 2)``), derived from padded in/out frame counts."""
    if frames_out < 1 or frames_in % frames_out:
        raise DataError(
            f"cannot derive output lengths: {frames_in} input frames give {frames_out} output frames, not an integer stride; "
            "pass out_lengths=<function of the input length>"
        )
    stride = frames_in // frames_out
    return lambda length: -(-int(length) // stride)


def read_inference_outputs(
    out_dir: Path | str, info: Path | str, out_lengths: Callable[[int], int] | None = None
) -> dict[str, np.ndarray]:
    """Per-utterance log-probs ``[T'_i, C]`` from the ``.npy`` outputs saved for each batch.

    ``T'_i = out_lengths(length_i)``; by default derived from the padded shapes (390 -> 195
    frames: ``ceil(length / 2)``).
    """
    out_dir = Path(out_dir)
    results: dict[str, np.ndarray] = {}
    for entry in read_info(info):
        ids, lengths = read_ids(entry)
        path = find_output(out_dir, entry)
        log_probs = load_output(path)
        if log_probs.ndim != 3 or log_probs.shape[1] < len(ids):
            raise DataError(f"{path} has shape {list(log_probs.shape)}; expected [T', {len(ids)}, C] (time-major, batch {len(ids)})")
        length_of = out_lengths or stride_output_lengths(entry.shape[1], log_probs.shape[0])
        for row, (utt, length) in enumerate(zip(ids, lengths)):
            n = min(int(length_of(int(length))), log_probs.shape[0])
            results[utt] = np.array(log_probs[:n, row], dtype=np.float32)
    return results
