"""Kaldi data directories: write them from TIMIT utterances, read (and check) existing ones.

Written files (one line per utterance, sorted by utterance id, Kaldi's conventions):
``wav.scp`` (``utt path``), ``text`` (``utt ph ph ...``, 39-set phones), ``utt2spk``,
``spk2utt`` (``spk utt utt ...``) and, from the prepare stage, ``utt2num_frames``.  Paths are
absolute, pointing into the folder the data dir will finally live in (the stage cache builds in
a temporary folder and renames it), as Kaldi's ``make_fbank.sh`` writes them.
:func:`resolve_feats_scp` reads absolute entries, relative ones (older prepared folders, users'
recipes) and absolute ones whose folder was moved since (the file is then looked up beside the
scp).  :func:`validate_data_dir` is the check of Kaldi's ``utils/validate_data_dir.sh``.

:func:`read_data_dir` reads a user's existing directory: features from ``feats.scp`` or the
recipe's ``fbank.scp``, labels from ``text`` or the recipe's ``phn_text``, ``utt2spk`` when
present.  kaldiio runs the shell command of an scp entry written ``cmd |`` (or ``| cmd``), so
such entries are refused unless the caller allows pipes.  Every fault of the directory is
reported in one :class:`DataError`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from lstm_exp.data.corpus import Utterance
from lstm_exp.data.phones import PHONES_39
from lstm_exp.errors import DataError, fault_message

FEATS_SCP_NAMES = ("feats.scp", "fbank.scp")
TEXT_NAMES = ("text", "phn_text")
_PHONES_39_SET = frozenset(PHONES_39)
#: ``path:offset`` and ``path:offset[rows]`` / ``[rows,cols]`` as kaldiio parses them
_ARK_SPECIFIER = re.compile(r"^(?P<path>.*?)(?P<offset>:\d+)?(?P<range>\[[0-9:, ]*\])?$")


@dataclass
class KaldiDataDir:
    """An existing Kaldi data dir, checked: every utterance has features and labels."""

    path: Path
    feats_scp: Path
    #: utt -> rxfilename as kaldiio reads it (relative file paths made absolute)
    feats: Dict[str, str]
    text_file: Path
    text: Dict[str, List[str]]
    #: utt -> speaker (utt -> utt when the dir has no utt2spk, Kaldi's convention)
    utt2spk: Dict[str, str]
    wav_scp: Optional[Path] = None

    @property
    def utt_ids(self) -> List[str]:
        return sorted(self.text)


# --------------------------------------------------------------------------------- writing


def write_table(path: Path, entries: Mapping[str, object]) -> None:
    """Write ``key value`` lines sorted by key; list values are joined by spaces."""
    lines = []
    for key in sorted(entries):
        value = entries[key]
        if isinstance(value, (list, tuple)):
            value = " ".join(str(v) for v in value)
        lines.append(f"{key} {value}\n")
    Path(path).write_text("".join(lines), encoding="utf-8")


def spk2utt_from_utt2spk(utt2spk: Mapping[str, str]) -> Dict[str, List[str]]:
    """Invert ``utt2spk``: speaker -> sorted utterance ids."""
    spk2utt: Dict[str, List[str]] = {}
    for utt in sorted(utt2spk):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return spk2utt


def _wav_location(wav_path: Path, dir: Path, final_dir: Path) -> str:
    """Absolute path; audio inside the prepared folder being built is given at its final place."""
    wav_path, prepared = wav_path.absolute(), dir.absolute().parent
    if wav_path.is_relative_to(prepared):
        return str(final_dir.absolute().parent / wav_path.relative_to(prepared))
    return str(wav_path)


def write_data_dir(dir: Path, utts: Sequence[Utterance], text39: Mapping[str, Sequence[str]],
                   final_dir: Optional[Path] = None) -> None:
    """Write ``wav.scp``, ``text``, ``utt2spk``, ``spk2utt`` for ``utts`` into ``dir`` (created).

    ``final_dir``: where ``dir`` will be once its prepared folder is renamed (default ``dir``).
    """
    dir = Path(dir)
    final_dir = Path(final_dir) if final_dir is not None else dir
    missing = [u.utt_id for u in utts if u.utt_id not in text39]
    if missing:
        raise ValueError(f"no 39-phone transcript for {len(missing)} utterance(s), e.g. {missing[0]}")
    for utt in utts:
        if any(c.isspace() for c in str(utt.wav_path)):
            raise DataError(f"{utt.wav_path}: a path with white space cannot go into a Kaldi wav.scp: move the corpus")
    dir.mkdir(parents=True, exist_ok=True)
    utt2spk = {u.utt_id: u.speaker for u in utts}
    write_table(dir / "wav.scp", {u.utt_id: _wav_location(Path(u.wav_path), dir, final_dir) for u in utts})
    write_table(dir / "text", {u.utt_id: list(text39[u.utt_id]) for u in utts})
    write_table(dir / "utt2spk", utt2spk)
    write_table(dir / "spk2utt", spk2utt_from_utt2spk(utt2spk))


def write_utt2num_frames(dir: Path, frames: Mapping[str, int]) -> None:
    """Write ``utt2num_frames`` (``utt frames``)."""
    write_table(Path(dir) / "utt2num_frames", {utt: int(n) for utt, n in frames.items()})


# --------------------------------------------------------------------------------- reading


def _find_one(dir: Path, names: Sequence[str], what: str) -> Tuple[Optional[Path], List[str]]:
    present = [dir / n for n in names if (dir / n).is_file()]
    if not present:
        return None, [f"{dir}: no {what} (expected one of {', '.join(names)})"]
    if len(present) > 1:
        return None, [f"{dir}: both {present[0].name} and {present[1].name} present: keep one {what}"]
    return present[0], []


def read_table(path: Path) -> Tuple[List[Tuple[int, str, str]], List[str]]:
    """``(line number, key, rest of line)`` of a Kaldi table, plus faults (empty values, repeated keys)."""
    rows: List[Tuple[int, str, str]] = []
    faults: List[str] = []
    seen: Dict[str, int] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return [], [f"{path}: cannot read ({err})"]
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(None, 1)
        key = parts[0]
        rest = parts[1].strip() if len(parts) == 2 else ""
        if key in seen:
            faults.append(f"{path}:{number}: utterance {key} repeated (first on line {seen[key]})")
            continue
        seen[key] = number
        rows.append((number, key, rest))
    return rows, faults


def is_pipe(rxfilename: str) -> bool:
    """True when kaldiio would run ``rxfilename`` as a shell command (or read stdin)."""
    value = rxfilename.strip()
    return value.endswith("|") or value.startswith("|") or value == "-"


def _absolute_ark(spec: str, candidates: Sequence[Path]) -> Tuple[Optional[str], Optional[str]]:
    """Make the file part of ``path[:offset][range]`` absolute; (None, why) when it is not found.

    An absolute path that no longer exists is looked up by name in ``candidates[0]`` (the scp's
    own folder): a prepared folder that was moved or copied still reads its own archives.
    """
    match = _ARK_SPECIFIER.match(spec)
    path_part = match.group("path") if match else spec
    suffix = spec[len(path_part):]
    path = Path(path_part)
    if path.is_absolute():
        if path.is_file():
            return spec, None
        beside = candidates[0] / path.name if candidates else None
        if beside is not None and beside.is_file():
            return f"{beside.resolve()}{suffix}", None
        return None, f"feature file {path_part} does not exist"
    for base in candidates:
        resolved = base / path
        if resolved.is_file():
            return f"{resolved.resolve()}{suffix}", None
    where = ", ".join(str(b) for b in candidates)
    return None, f"feature file {path_part} not found relative to {where}: write absolute paths"


def _read_feats_scp(feats_scp: Path, allow_pipes: bool) -> Tuple[Dict[str, str], Set[str], List[str]]:
    """``(utt -> rxfilename with absolute file paths, every id listed, faults)`` of an scp."""
    scp_dir = feats_scp.absolute().parent
    # Relative paths: the scp's own folder first (the prepared layout), then the places Kaldi
    # recipes write them relative to (the recipe folder, two levels above data/<split>), then cwd.
    bases = list(dict.fromkeys([scp_dir, scp_dir.parent, scp_dir.parent.parent, Path.cwd()]))
    rows, faults = read_table(feats_scp)
    feats: Dict[str, str] = {}
    resolved_cache: Dict[str, Tuple[Optional[str], Optional[str]]] = {}
    for number, utt, spec in rows:
        if not spec:
            faults.append(f"{feats_scp}:{number}: utterance {utt} has no feature location")
        elif is_pipe(spec):
            if allow_pipes:
                feats[utt] = spec
            else:
                faults.append(
                    f"{feats_scp}:{number}: entry {spec!r} is a shell command that kaldiio would run;"
                    " write data.allow_pipes=true only if you trust this file"
                )
        else:
            match = _ARK_SPECIFIER.match(spec)
            file_part = match.group("path") if match else spec
            if file_part not in resolved_cache:
                resolved_cache[file_part] = _absolute_ark(file_part, bases)
            absolute, why = resolved_cache[file_part]
            if absolute is None:
                faults.append(f"{feats_scp}:{number}: {why}")
            else:
                feats[utt] = absolute + spec[len(file_part):]
    return feats, {utt for _, utt, _ in rows}, faults


def files_outside(root: Path, rxfilenames: Iterable[str]) -> List[str]:
    """The distinct files named by ``rxfilenames`` (``path[:offset][range]``; commands are
    skipped) whose real path, symbolic links followed, is not inside ``root``; sorted."""
    base = os.path.realpath(root)
    files = set()
    for spec in rxfilenames:
        if not is_pipe(spec):
            match = _ARK_SPECIFIER.match(spec)
            files.add(match.group("path") if match else spec)  # many entries share one archive
    real = {os.path.realpath(path) for path in files}
    return sorted(path for path in real if os.path.commonpath([base, path]) != base)


def resolve_feats_scp(feats_scp: Path, allow_pipes: bool = False) -> Dict[str, str]:
    """utt -> rxfilename for ``kaldiio.load_mat``, relative paths made absolute.

    Relative paths are taken relative to the scp's own folder first: the prepared layout writes
    ``feats.ark:<offset>`` so that the folder can be moved (the stage cache renames it).
    """
    feats, _, faults = _read_feats_scp(Path(feats_scp), allow_pipes)
    if faults:
        raise DataError.listing(str(feats_scp), faults)
    return feats


def read_data_dir(dir: Path, allow_pipes: bool) -> KaldiDataDir:
    """Read and check an existing Kaldi data dir (see module docstring); one DataError for all faults."""
    dir = Path(dir)
    if not dir.is_dir():
        raise DataError(f"{dir}: Kaldi data dir does not exist")
    faults: List[str] = []
    feats_scp, found_faults = _find_one(dir, FEATS_SCP_NAMES, "feature list")
    faults.extend(found_faults)
    text_file, found_faults = _find_one(dir, TEXT_NAMES, "transcript")
    faults.extend(found_faults)

    feats: Dict[str, str] = {}
    feats_ids: Set[str] = set()  # every id listed, including refused entries: they do have a feature line
    if feats_scp is not None:
        feats, feats_ids, scp_faults = _read_feats_scp(feats_scp, allow_pipes)
        faults.extend(scp_faults)

    text: Dict[str, List[str]] = {}
    if text_file is not None:
        rows, table_faults = read_table(text_file)
        faults.extend(table_faults)
        for number, utt, labels in rows:
            phones = labels.split()
            if not phones:
                faults.append(f"{text_file}:{number}: utterance {utt} has no labels")
                continue
            unknown = sorted({p for p in phones if p not in _PHONES_39_SET})
            if unknown:
                faults.append(
                    f"{text_file}:{number}: labels {' '.join(unknown)} are not in the 39-phone set"
                    " (fold TIMIT labels with phones.60-48-39.map)"
                )
            text[utt] = phones

    if feats_scp is not None and text_file is not None:
        for utt in sorted(set(text) - feats_ids):
            faults.append(f"{feats_scp}: no features for utterance {utt} of {text_file.name}")
        for utt in sorted(feats_ids - set(text)):
            faults.append(f"{text_file}: no labels for utterance {utt} of {feats_scp.name}")

    utt2spk = {utt: utt for utt in text}
    utt2spk_file = dir / "utt2spk"
    if utt2spk_file.is_file():
        rows, table_faults = read_table(utt2spk_file)
        faults.extend(table_faults)
        utt2spk = {utt: speaker for _, utt, speaker in rows}
        for number, utt, speaker in rows:
            if not speaker:
                faults.append(f"{utt2spk_file}:{number}: utterance {utt} has no speaker")
        for utt in sorted(set(text) - set(utt2spk)):
            faults.append(f"{utt2spk_file}: no speaker for utterance {utt}")

    if faults:
        raise DataError.listing(f"Kaldi data dir {dir}", faults)
    wav_scp = dir / "wav.scp"
    return KaldiDataDir(
        path=dir,
        feats_scp=feats_scp,
        feats=feats,
        text_file=text_file,
        text=text,
        utt2spk={utt: utt2spk[utt] for utt in sorted(text)},
        wav_scp=wav_scp if wav_scp.is_file() else None,
    )


def validate_data_dir(dir: Path) -> None:
    """The checks of Kaldi's ``utils/validate_data_dir.sh`` on a data dir; one DataError for all faults.

    ``text``, ``feats.scp``, ``utt2spk``, ``spk2utt`` must exist; those and ``wav.scp`` /
    ``utt2num_frames`` (when present) must be sorted (``LC_ALL=C sort``, no repeated keys) and
    name the same utterances; ``spk2utt`` must be the inverse of ``utt2spk``.
    """
    dir = Path(dir)
    faults: List[str] = []
    ids: Dict[str, List[str]] = {}
    rows_of: Dict[str, List[Tuple[int, str, str]]] = {}
    for name in ("text", "feats.scp", "utt2spk", "spk2utt", "wav.scp", "utt2num_frames"):
        path = dir / name
        if not path.is_file():
            if name in ("text", "feats.scp", "utt2spk", "spk2utt"):
                faults.append(f"{path}: missing")
            continue
        rows, table_faults = read_table(path)
        faults.extend(table_faults)
        keys = [key for _, key, _ in rows]
        unsorted = next((i for i in range(1, len(keys)) if keys[i - 1].encode() > keys[i].encode()), None)
        if unsorted is not None:
            faults.append(f"{path}:{rows[unsorted][0]}: not sorted ({keys[unsorted - 1]} before "
                          f"{keys[unsorted]}); sort it with LC_ALL=C sort -k1,1")
        rows_of[name] = rows
        if name != "spk2utt":
            ids[name] = keys
    reference = ids.get("utt2spk")
    if reference is not None:
        for name, keys in ids.items():
            if name == "utt2spk" or set(keys) == set(reference):
                continue
            only_here, only_ref = sorted(set(keys) - set(reference)), sorted(set(reference) - set(keys))
            faults.append(f"{dir / name}: utterance ids differ from utt2spk ({len(only_here)} only in "
                          f"{name}, {len(only_ref)} only in utt2spk, e.g. {(only_here or only_ref)[0]})")
    if "utt2spk" in rows_of and "spk2utt" in rows_of:
        expected = spk2utt_from_utt2spk({utt: spk for _, utt, spk in rows_of["utt2spk"]})
        found = {spk: sorted(utts.split()) for _, spk, utts in rows_of["spk2utt"]}
        if found != expected:
            faults.append(f"{dir / 'spk2utt'}: does not match utt2spk; regenerate it with "
                          "utils/utt2spk_to_spk2utt.pl")
    if faults:
        raise DataError(fault_message(f"Kaldi data dir {dir} (utils/validate_data_dir.sh would refuse it)", faults))


def write_feats_scp(path: Path, feats: Mapping[str, str]) -> None:
    """Write a ``feats.scp`` (``utt rxfilename``) sorted by utterance id."""
    write_table(path, dict(feats))
