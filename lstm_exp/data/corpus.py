"""Read and validate a TIMIT tree (the LDC layout, real or synthetic) into the Kaldi s5 split.

Layout: ``<root>/TRAIN/DR1/FCJF0/SI1027.WAV`` with ``.PHN`` (and ``.WRD``/``.TXT``) beside it, in
upper or lower case (``train/dr1/fcjf0/si1027.wav``).  A ``TIMIT`` folder directly under
``root`` holding ``TRAIN``/``TEST`` is also accepted (the layout of the LDC disc).

Split (Kaldi ``egs/timit/s5``): train = every speaker under ``TRAIN``; dev = the ``TEST``
speakers in the dev list; test = the ``TEST`` speakers in the test list; other ``TEST``
speakers are not used.  SA sentences are excluded.  Utterance ids are ``<speaker>_<utterance>``
in lower case (``fcjf0_si1027``); each split's list is sorted by id.

:func:`scan_timit` checks every utterance of the three splits before returning (audio header:
readable, not truncated, mono, 16 kHz; ``.PHN``: present, known labels, ordered,
non-overlapping, inside the audio) and raises one :class:`DataError` listing every fault.
Only headers are read, so a full TIMIT tree takes seconds.  A partial copy is accepted, as
Kaldi's ``timit_data_prep.sh`` does: dev/test speakers of the lists that are not in the tree
are returned in :attr:`TimitScan.missing_speakers` (the caller warns); a split left with no
speaker at all is an error.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import soundfile as sf
from tqdm import tqdm

from lstm_exp.data.phones import DEV_SPEAKER_LIST_NAME, TEST_SPEAKER_LIST_NAME, TIMIT_61
from lstm_exp.errors import DataError, fault_message

SPLITS = ("train", "dev", "test")
EXPECTED_SAMPLE_RATE = 16000
#: faults listed per file at most; the rest are counted
MAX_FAULTS_PER_FILE = 5

_TIMIT_61_SET = frozenset(TIMIT_61)
_BYTES_PER_SAMPLE = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}

Segment = Tuple[int, int, str]


@dataclass
class Utterance:
    """One TIMIT utterance: audio file, 61-set phone segments (in samples) and audio length."""

    utt_id: str
    speaker: str
    wav_path: Path
    phones61: List[Segment] = field(default_factory=list)
    num_samples: int = 0
    sample_rate: int = EXPECTED_SAMPLE_RATE


def _child_dir(parent: Path, name: str) -> Optional[Path]:
    """The sub-folder of ``parent`` called ``name`` in any letter case, or None."""
    exact = parent / name
    if exact.is_dir():
        return exact
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return None
    for entry in entries:
        if entry.is_dir() and entry.name.lower() == name.lower():
            return Path(entry.path)
    return None


def _subdirs(parent: Path) -> List[Path]:
    return sorted(Path(e.path) for e in os.scandir(parent) if e.is_dir())


def locate_timit_parts(root: Path) -> Tuple[Optional[Path], Optional[Path]]:
    """``(TRAIN folder, TEST folder)`` under ``root`` (or under ``root/TIMIT``), None where absent."""
    train, test = _child_dir(root, "train"), _child_dir(root, "test")
    if train is None and test is None:
        nested = _child_dir(root, "timit")
        if nested is not None:
            train, test = _child_dir(nested, "train"), _child_dir(nested, "test")
    return train, test


@dataclass
class _UttFiles:
    wav: List[Path] = field(default_factory=list)
    phn: List[Path] = field(default_factory=list)
    #: ``<utt>.WAV.wav``: the RIFF copies some TIMIT distributions hold instead of (or beside) the .WAV
    riff_copy: List[Path] = field(default_factory=list)


#: what the first four bytes of a .WAV say it is
_AUDIO_MAGIC = {b"NIST": "NIST SPHERE", b"RIFF": "RIFF WAVE"}


def _audio_kind(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            return _AUDIO_MAGIC.get(handle.read(4), "unknown format")
    except OSError:
        return "unreadable"


def _case_clash(speaker_dir: Path, name: str, files: _UttFiles) -> str:
    """The fault of several files of one utterance differing in letter case, with which to keep."""
    clashing = ", ".join(f"{p.name}: {_audio_kind(p)}" for p in files.wav) if len(files.wav) > 1 else ""
    names = ", ".join(p.name for p in files.wav + files.phn)
    advice = ("keep one file per utterance: the LDC originals are the NIST SPHERE .WAV files, so move the converted "
              "copies (e.g. sph2pipe's RIFF .wav) out of the tree" if "NIST SPHERE" in clashing else
              "keep one file per utterance and move the others out of the tree")
    return f"{speaker_dir}: several files for utterance {name} differing in letter case ({clashing or names}); {advice}"


def _scan_speakers(part: Path) -> Dict[str, List[Path]]:
    """Speaker id (lower-case) -> speaker folders found under ``<part>/<DRn>/``."""
    speakers: Dict[str, List[Path]] = {}
    for region in _subdirs(part):
        for speaker_dir in _subdirs(region):
            speakers.setdefault(speaker_dir.name.lower(), []).append(speaker_dir)
    return speakers


def _scan_utterances(speaker_dir: Path) -> Dict[str, _UttFiles]:
    """Utterance name (lower-case, SA excluded) -> its .WAV/.PHN files in ``speaker_dir``."""
    found: Dict[str, _UttFiles] = {}
    for entry in os.scandir(speaker_dir):
        parts = entry.name.split(".")
        if len(parts) == 3 and [p.lower() for p in parts[1:]] == ["wav", "wav"] and entry.is_file():
            if not parts[0].lower().startswith("sa"):
                found.setdefault(parts[0].lower(), _UttFiles()).riff_copy.append(Path(entry.path))
            continue
        if len(parts) != 2 or not entry.is_file():
            continue
        stem, ext = parts[0].lower(), parts[1].lower()
        if stem.startswith("sa") or ext not in ("wav", "phn"):
            continue
        files = found.setdefault(stem, _UttFiles())
        (files.wav if ext == "wav" else files.phn).append(Path(entry.path))
    return found


def _nist_declared_samples(path: Path) -> Optional[int]:
    """``sample_count`` from a NIST SPHERE header, or None when the header does not say."""
    with open(path, "rb") as handle:
        head = handle.read(1024)
    if not head.startswith(b"NIST_1A"):
        return None
    for line in head.split(b"\n"):
        fields = line.split()
        if len(fields) == 3 and fields[0] == b"sample_count":
            try:
                return int(fields[2])
            except ValueError:
                return None
        if line.startswith(b"end_head"):
            break
    return None


def _riff_declared_frames(path: Path, bytes_per_frame: int) -> Optional[int]:
    """Frames the RIFF ``data`` chunk claims, or None when not stated (streamed WAV)."""
    with open(path, "rb") as handle:
        if handle.read(12)[:4] != b"RIFF":
            return None
        while True:
            chunk = handle.read(8)
            if len(chunk) < 8:
                return None
            chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"data":
                return None if size in (0, 0xFFFFFFFF) else size // bytes_per_frame
            handle.seek(size + (size & 1), os.SEEK_CUR)


def check_audio(path: Path) -> Tuple[int, int, List[str]]:
    """``(num_samples, sample_rate, faults)`` from the header of ``path``; reads no samples."""
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as err:
        return 0, 0, [f"{path}: unreadable audio ({err})"]
    faults = []
    if info.channels != 1:
        faults.append(f"{path}: {info.channels} channels, expected mono")
    if info.samplerate != EXPECTED_SAMPLE_RATE:
        faults.append(f"{path}: sample rate {info.samplerate} Hz, expected {EXPECTED_SAMPLE_RATE}")
    declared: Optional[int] = None
    try:
        if info.format == "NIST":
            declared = _nist_declared_samples(path)
        elif info.format == "WAV" and info.subtype in _BYTES_PER_SAMPLE:
            declared = _riff_declared_frames(path, _BYTES_PER_SAMPLE[info.subtype] * max(info.channels, 1))
    except OSError as err:
        faults.append(f"{path}: unreadable audio ({err})")
    if declared is not None and declared > info.frames:
        faults.append(f"{path}: truncated audio: header declares {declared} samples, file holds {info.frames}")
    elif info.frames == 0:
        faults.append(f"{path}: audio holds no samples")
    return info.frames, info.samplerate, faults


def read_phn(path: Path, num_samples: Optional[int]) -> Tuple[List[Segment], List[str]]:
    """Segments of a ``.PHN`` file and its faults; ``num_samples`` None skips the length check."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as err:
        return [], [f"{path}: cannot read ({err.strerror or err})"]
    segments: List[Segment] = []
    faults: List[str] = []
    previous_end = 0
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3 or not fields[0].isdigit() or not fields[1].isdigit():
            faults.append(f"line {number}: expected '<start> <end> <label>', got {line.strip()!r}")
            continue
        start, end, label = int(fields[0]), int(fields[1]), fields[2]
        if label not in _TIMIT_61_SET:
            faults.append(f"line {number}: label {label!r} is not one of the 61 TIMIT phones")
        if end <= start:
            faults.append(f"line {number}: segment {start}-{end} is empty or reversed")
        elif start < previous_end:
            faults.append(
                f"line {number}: segment {start}-{end} starts before the previous one ends ({previous_end}):"
                " out of order or overlapping"
            )
        if num_samples is not None and end > num_samples:
            faults.append(f"line {number}: segment ends at sample {end}, beyond the audio ({num_samples} samples)")
        previous_end = max(previous_end, end)
        segments.append((start, end, label))
    if not segments and not faults:
        faults.append("no phone segments")
    if len(faults) > MAX_FAULTS_PER_FILE:
        extra = len(faults) - MAX_FAULTS_PER_FILE
        faults = faults[:MAX_FAULTS_PER_FILE] + [f"... and {extra} more faults in this file"]
    return segments, [f"{path}: {fault}" for fault in faults]


def _read_utterance(utt_id: str, speaker: str, files: _UttFiles, speaker_dir: Path) -> Tuple[Optional[Utterance], List[str]]:
    faults: List[str] = []
    name = utt_id.split("_", 1)[1]
    if not files.wav:  # only <utt>.WAV.wav (a RIFF copy, as some distributions ship TIMIT): read it
        files.wav = list(files.riff_copy)
    if len(files.wav) > 1 or len(files.phn) > 1:
        faults.append(_case_clash(speaker_dir, name, files))
    if not files.wav:
        faults.append(f"{files.phn[0].with_suffix('')}.WAV: missing audio (the .PHN has no .WAV beside it)")
    if not files.phn:
        faults.append(f"{files.wav[0].with_suffix('')}.PHN: missing phone transcription (.PHN) for {files.wav[0].name}")
    num_samples, sample_rate = 0, 0
    audio_faults: List[str] = []
    if files.wav:
        num_samples, sample_rate, audio_faults = check_audio(files.wav[0])
        faults.extend(audio_faults)
    segments: List[Segment] = []
    if files.phn:
        # the segments are checked against the audio length only when the audio itself is sound
        audio_ok = bool(files.wav) and not audio_faults
        segments, phn_faults = read_phn(files.phn[0], num_samples if audio_ok else None)
        faults.extend(phn_faults)
    if faults:
        return None, faults
    return Utterance(utt_id, speaker, files.wav[0], segments, num_samples, sample_rate), []


def _check_speaker_list(
    split: str, list_name: str, wanted: Sequence[str], available: Dict[str, List[Path]], test_dir: Path
) -> Tuple[List[str], List[str], List[str]]:
    """``(found, missing, faults)``: speakers of ``wanted`` found under TEST and not; faults
    only when none is found (an empty split)."""
    wanted_lower = [s.lower() for s in wanted]
    found = [s for s in wanted_lower if s in available]
    missing = [s for s in wanted_lower if s not in available]
    if not wanted_lower:
        return [], [], [f"{list_name}: no {split} utterances: the speaker list is empty"]
    if not found:
        return [], missing, [
            f"{test_dir}: no {split} utterances: none of the {len(wanted_lower)} speakers in {list_name} found under {test_dir}"
        ]
    return found, missing, []


@dataclass
class TimitScan:
    """What :func:`scan_timit` found: the utterances per split and the listed speakers absent."""

    splits: Dict[str, List[Utterance]]
    #: split -> speakers of its list not found under TEST (empty lists for a complete tree)
    missing_speakers: Dict[str, List[str]]


def read_timit(
    root: Path,
    dev_speakers: Sequence[str],
    test_speakers: Sequence[str],
    *,
    dev_list_name: str = DEV_SPEAKER_LIST_NAME,
    test_list_name: str = TEST_SPEAKER_LIST_NAME,
    progress: bool = False,
) -> Dict[str, List[Utterance]]:
    """The ``{"train", "dev", "test"}`` utterance lists of :func:`scan_timit`."""
    return scan_timit(root, dev_speakers, test_speakers, dev_list_name=dev_list_name,
                      test_list_name=test_list_name, progress=progress).splits


def scan_timit(
    root: Path,
    dev_speakers: Sequence[str],
    test_speakers: Sequence[str],
    *,
    dev_list_name: str = DEV_SPEAKER_LIST_NAME,
    test_list_name: str = TEST_SPEAKER_LIST_NAME,
    progress: bool = False,
) -> TimitScan:
    """Validate the TIMIT tree at ``root``: its utterances per split and the missing speakers.

    ``dev_list_name`` / ``test_list_name`` only name the lists in messages.  Raises one
    :class:`DataError` naming every fault found; listed dev/test speakers absent from the tree
    are no fault (see module doc) unless a split is left empty.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: TIMIT root folder does not exist: point data.root at the folder holding TRAIN and TEST")
    train_dir, test_dir = locate_timit_parts(root)
    faults: List[str] = []
    if train_dir is None and test_dir is None and root.name.lower() in ("train", "test"):
        raise DataError(f"TIMIT tree {root}: this is the {root.name} folder of a TIMIT tree, not its root: set "
                        f"data.root={root.parent} (the folder holding TRAIN and TEST)")
    if train_dir is None:
        faults.append(f"{root}: no TRAIN folder (expected {root}/TRAIN/DR1/<speaker>/<utterance>.WAV, or lower case)")
    if test_dir is None:
        faults.append(f"{root}: no TEST folder (expected {root}/TEST/DR1/<speaker>/<utterance>.WAV, or lower case)")

    split_speakers: Dict[str, Dict[str, List[Path]]] = {split: {} for split in SPLITS}
    missing_speakers: Dict[str, List[str]] = {split: [] for split in SPLITS}
    if train_dir is not None:
        split_speakers["train"] = _scan_speakers(train_dir)
        if not split_speakers["train"]:
            faults.append(f"{train_dir}: no train utterances: no speaker folders under {train_dir}/<DRn>/")
    if test_dir is not None:
        test_available = _scan_speakers(test_dir)
        overlap = sorted({s.lower() for s in dev_speakers} & {s.lower() for s in test_speakers})
        for speaker in overlap:
            faults.append(f"{dev_list_name}: speaker {speaker} is also in {test_list_name}: a speaker belongs to one split")
        for split, list_name, wanted in (
            ("dev", dev_list_name, dev_speakers),
            ("test", test_list_name, test_speakers),
        ):
            found, missing_speakers[split], list_faults = _check_speaker_list(
                split, list_name, wanted, test_available, test_dir)
            faults.extend(list_faults)
            split_speakers[split] = {s: test_available[s] for s in found}
    if train_dir is not None and test_dir is not None:
        for speaker in sorted(set(split_speakers["train"]) & (set(split_speakers["dev"]) | set(split_speakers["test"]))):
            faults.append(f"{root}: speaker {speaker} appears under both TRAIN and TEST")

    jobs = [
        (split, speaker, folders)
        for split in SPLITS
        for speaker, folders in sorted(split_speakers[split].items())
    ]
    splits: Dict[str, List[Utterance]] = {split: [] for split in SPLITS}
    for split, speaker, folders in tqdm(jobs, desc="validate TIMIT", unit="spk", disable=not progress):
        if len(folders) > 1:
            faults.append(f"{folders[1]}: speaker {speaker} also has a folder at {folders[0]}: keep one")
        speaker_dir = folders[0]
        utterance_files = _scan_utterances(speaker_dir)
        if not utterance_files:
            faults.append(f"{speaker_dir}: speaker {speaker} has no utterances besides SA")
        for name, files in sorted(utterance_files.items()):
            utt, utt_faults = _read_utterance(f"{speaker}_{name}", speaker, files, speaker_dir)
            faults.extend(utt_faults)
            if utt is not None:
                splits[split].append(utt)
    if faults:
        raise DataError(fault_message(f"TIMIT tree {root}", faults, limit=len(faults)))
    for split in SPLITS:
        splits[split].sort(key=lambda u: u.utt_id)
    return TimitScan(splits, missing_speakers)
