"""TIMIT phone sets and the Kaldi s5 speaker lists, read from the packaged resources.

* :data:`TIMIT_61` — the 61 labels that may appear in a TIMIT ``.PHN`` file (first column of
  ``phones.60-48-39.map``; the file lists 60 phones plus ``q``).
* :data:`FOLD_61_TO_39` — the standard fold to 39 phones (third column); ``q`` has no target and
  is deleted by :func:`fold_to_39`.
* :data:`PHONES_39` — the 39 target phones, sorted.
* :func:`packaged_speaker_list` — the dev (50 speakers) and core test (24 speakers) lists of
  Kaldi's ``egs/timit/s5``.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from lstm_exp.errors import DataError

_RESOURCE_PACKAGE = "lstm_exp"
_RESOURCE_DIR = ("resources", "timit")
PHONE_MAP_NAME = "phones.60-48-39.map"
DEV_SPEAKER_LIST_NAME = "dev_spk.list"
TEST_SPEAKER_LIST_NAME = "test_spk.list"


def packaged_resource_path(name: str) -> Path:
    """Filesystem path of a packaged file under ``lstm_exp/resources/timit``."""
    node = resources.files(_RESOURCE_PACKAGE).joinpath(*_RESOURCE_DIR, name)
    return Path(str(node))


def _read_phone_map() -> Tuple[Tuple[str, ...], Dict[str, Optional[str]]]:
    path = packaged_resource_path(PHONE_MAP_NAME)
    labels: List[str] = []
    fold: Dict[str, Optional[str]] = {}
    for line in path.read_text(encoding="ascii").splitlines():
        columns = line.split()
        if not columns:
            continue
        label = columns[0]
        labels.append(label)
        fold[label] = columns[2] if len(columns) >= 3 else None
    return tuple(labels), fold


TIMIT_61, FOLD_61_TO_39 = _read_phone_map()
PHONES_39: Tuple[str, ...] = tuple(sorted({p for p in FOLD_61_TO_39.values() if p is not None}))

assert len(TIMIT_61) == 61 and len(PHONES_39) == 39, "packaged phone map is damaged"


def fold_to_39(labels61: Iterable[str]) -> List[str]:
    """Map 61-set labels to the 39 set; ``q`` is deleted, consecutive identical phones are kept."""
    folded: List[str] = []
    for label in labels61:
        target = FOLD_61_TO_39[label]
        if target is not None:
            folded.append(target)
    return folded


def read_speaker_list(path: Path) -> List[str]:
    """Speaker ids (lower-case) from a list file, one per line; blank lines and ``#`` comments skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise DataError(f"{path}: cannot read speaker list ({err.strerror or err})") from err
    speakers = []
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            speakers.append(entry.lower())
    if not speakers:
        raise DataError(f"{path}: speaker list is empty: write one speaker id per line")
    return speakers


def packaged_speaker_list(name: str) -> List[str]:
    """The packaged ``dev_spk.list`` or ``test_spk.list`` (Kaldi timit s5)."""
    if name not in (DEV_SPEAKER_LIST_NAME, TEST_SPEAKER_LIST_NAME):
        raise ValueError(f"no packaged speaker list named {name!r}")
    return read_speaker_list(packaged_resource_path(name))
