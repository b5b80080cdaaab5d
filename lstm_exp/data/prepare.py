"""The ``prepare`` stage: corpus -> Kaldi data dirs, raw fbank, global CMVN, units, phone bigram LM.

Output layout (``docs/ARCHITECTURE.md``)::

    <out_dir>/units  cmvn.mat  lm_phone_bg.arpa  meta.json
    <out_dir>/{train,dev,test}/wav.scp text utt2spk spk2utt feats.scp utt2num_frames (+ feats.ark)

For ``timit`` and ``synth`` corpora the whole tree is validated, labels folded to 39 phones and
the units checked before anything is written; features are then extracted over
``cfg.workers`` processes.  ``feats.scp`` entries are absolute paths to ``feats.ark`` in the
folder the output will finally live in (``final_dir``: the stage cache builds in a temporary
folder and renames it), as Kaldi's ``make_fbank.sh`` writes them, so that Kaldi binaries,
kaldiio or ESPnet can read them from anywhere; :func:`lstm_exp.data.kaldi_dir.resolve_feats_scp`
reads these and the relative entries of older outputs.  For ``kaldi_dir`` the user's
``feats.scp`` / ``fbank.scp`` entries are referenced with absolute paths, nothing is
re-extracted, and the user's CMVN stats are used when ``cfg.cmvn`` names them.

Partial data is accepted with warnings, as Kaldi's ``timit_data_prep.sh`` does: dev/test
speakers of the lists that the tree lacks are named in a warning (an empty split stays an
error), and dev/test phones that never occur in train are mapped to ``UNK`` in ``text`` (the
recipe's Vocab does the same) with a warning naming each phone and how often it occurs.  The
returned summary (``meta.json``) holds ``utterances_<split>``, ``missing_speakers_<split>`` and
``unk_phones_<split>`` beside the nested details.  Every written data dir is checked like
Kaldi's ``utils/validate_data_dir.sh`` (:func:`lstm_exp.data.kaldi_dir.validate_data_dir`).
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import kaldiio
import numpy as np
from tqdm import tqdm

from conf_schemas.data import DataConfig
from lstm_exp.data.corpus import SPLITS, Utterance, scan_timit
from lstm_exp.data.features import check_cmvn_shape, compute_cmvn_stats, extract_features, save_cmvn
from lstm_exp.data.kaldi_dir import (
    KaldiDataDir,
    files_outside,
    read_data_dir,
    spk2utt_from_utt2spk,
    validate_data_dir,
    write_data_dir,
    write_feats_scp,
    write_table,
    write_utt2num_frames,
)
from lstm_exp.data.lm import train_bigram_arpa
from lstm_exp.data.phones import (
    DEV_SPEAKER_LIST_NAME,
    TEST_SPEAKER_LIST_NAME,
    fold_to_39,
    packaged_resource_path,
    read_speaker_list,
)
from lstm_exp.errors import ConfigError, DataError, fault_message, non_finite

log = logging.getLogger(__name__)

BLANK, UNK = "blank", "UNK"
UNITS_FILE = "units"
CMVN_FILE = "cmvn.mat"
LM_FILE = "lm_phone_bg.arpa"
META_FILE = "meta.json"


# --------------------------------------------------------------------------------- units


def build_units(train_transcripts: Iterable[Sequence[str]]) -> List[str]:
    """``[blank, UNK, phones in order of first appearance]`` over the train transcripts (in order)."""
    units = [BLANK, UNK]
    seen = set(units)
    for phones in train_transcripts:
        for phone in phones:
            if phone not in seen:
                seen.add(phone)
                units.append(phone)
    return units


def write_units(path: Path, units: Sequence[str]) -> None:
    """``<name> <id>`` per line."""
    Path(path).write_text("".join(f"{name} {index}\n" for index, name in enumerate(units)), encoding="utf-8")


def map_unseen_to_unk(
    texts: Mapping[str, Mapping[str, Sequence[str]]], units: Sequence[str]
) -> Tuple[Dict[str, Dict[str, List[str]]], Dict[str, Dict[str, int]]]:
    """Dev/test labels the train transcripts never use -> ``UNK`` (the model has no class for them).

    Returns ``(texts with UNK in their place, split -> phone -> occurrences)`` and logs one
    warning per split naming each phone and its count.  Train is returned as given.
    """
    known = set(units)
    mapped: Dict[str, Dict[str, List[str]]] = {}
    unseen: Dict[str, Dict[str, int]] = {}
    for split, by_utt in texts.items():
        counts: Dict[str, int] = {}
        mapped[split] = {}
        for utt, phones in by_utt.items():
            out = []
            for phone in phones:
                if split != "train" and phone not in known:
                    counts[phone] = counts.get(phone, 0) + 1
                    phone = UNK
                out.append(phone)
            mapped[split][utt] = out
        unseen[split] = dict(sorted(counts.items()))
        if counts:
            named = ", ".join(f"{phone!r} ({count}x)" for phone, count in unseen[split].items())
            log.warning("%s: phone(s) never seen in train mapped to %s: %s; the model cannot output "
                        "them, so each counts as an error (unk_ref_phones in the scores)", split, UNK, named)
    return mapped, unseen


def _raise_if(faults: List[str], summary: str) -> None:
    if faults:
        raise DataError(fault_message(summary, faults))


def report_files_outside(root: Path, files_by_split: Mapping[str, Iterable[str]], what: str) -> Dict[str, List[str]]:
    """Files the data files name outside the data root, by split, with one warning per split.

    Nothing is refused (Kaldi recipes keep their archives in ``../fbank``, beside ``data/``):
    the user learns which files a run reads from elsewhere, and the prepare summary keeps the
    counts (``files_outside_root_<split>``) and the files (``files_outside_root``).
    """
    outside = {split: files_outside(root, files) for split, files in files_by_split.items()}
    for split, files in outside.items():
        if files:
            log.warning("%s of the %s split: %d file(s) outside the data root %s, e.g. %s (read as given)",
                        what, split, len(files), root, files[0])
    return outside


# --------------------------------------------------------------------------------- TIMIT-format corpora


def _speaker_lists(cfg: DataConfig, root: Path) -> Tuple[Tuple[List[str], str], Tuple[List[str], str]]:
    """((dev speakers, list name), (test speakers, list name)) for a timit or synth corpus."""
    chosen = []
    for configured, name in ((cfg.dev_speakers_list, DEV_SPEAKER_LIST_NAME), (cfg.test_speakers_list, TEST_SPEAKER_LIST_NAME)):
        if configured is not None:
            path = Path(configured)
        elif cfg.kind == "synth":
            path = root / name
            if not path.is_file():
                raise DataError(f"{path}: the synthetic corpus has no {name}; regenerate it (delete {root})")
        else:
            path = packaged_resource_path(name)
        chosen.append((read_speaker_list(path), str(path) if configured is not None else name))
    return chosen[0], chosen[1]


def _corpus_root(cfg: DataConfig, out_dir: Path, corpus_root: Optional[Path], progress: bool) -> Path:
    if corpus_root is not None:
        return Path(corpus_root)
    if cfg.kind == "timit":
        if not cfg.root:
            raise ConfigError("data.root is required for data=timit: write data.root=/path/to/TIMIT")
        return Path(cfg.root)
    if cfg.root:
        return Path(cfg.root)
    # synth with no corpus given: generate it inside the prepared folder
    from lstm_exp.data.synth import generate_corpus

    root = out_dir / "corpus"
    root.mkdir(parents=True)
    generate_corpus(root, cfg.synth, progress=progress)
    return root


def _pre_extraction_faults(splits: Mapping[str, List[Utterance]], cfg: DataConfig) -> List[str]:
    """Faults feature extraction would hit: wrong sample rate for the fbank config, too short audio."""
    frame_samples = int(cfg.fbank.sample_frequency * cfg.fbank.frame_length_ms / 1000)
    faults = []
    for split in SPLITS:
        for utt in splits[split]:
            if utt.sample_rate != cfg.fbank.sample_frequency:
                faults.append(
                    f"{utt.wav_path}: {utt.sample_rate} Hz, but data.fbank.sample_frequency is {cfg.fbank.sample_frequency:g}"
                )
            elif utt.num_samples < frame_samples:
                faults.append(f"{utt.wav_path}: {utt.num_samples} samples, shorter than one {cfg.fbank.frame_length_ms:g} ms frame")
    return faults


def _warn_partial(root: Path, missing: Mapping[str, List[str]], list_names: Mapping[str, str],
                  splits: Mapping[str, List[Utterance]]) -> None:
    if not any(missing.values()):
        return
    counts = ", ".join(f"{split} {len(splits[split])}" for split in SPLITS)
    for split, speakers in missing.items():
        if speakers:
            log.warning("%s: %d speaker(s) of %s not found, %s goes on without them: %s "
                        "(utterances found: %s)", root, len(speakers), list_names[split], split,
                        " ".join(speakers), counts)


def _prepare_timit_format(cfg: DataConfig, out_dir: Path, corpus_root: Optional[Path], progress: bool,
                          final_dir: Path) -> dict:
    root = _corpus_root(cfg, out_dir, corpus_root, progress)
    (dev_speakers, dev_name), (test_speakers, test_name) = _speaker_lists(cfg, root)
    scan = scan_timit(root, dev_speakers, test_speakers, dev_list_name=dev_name, test_list_name=test_name,
                      progress=progress)
    splits = scan.splits

    texts: Dict[str, Dict[str, List[str]]] = {}
    faults = _pre_extraction_faults(splits, cfg)
    for split in SPLITS:
        texts[split] = {}
        for utt in splits[split]:
            phones = fold_to_39(label for _, _, label in utt.phones61)
            if not phones:
                faults.append(f"{utt.wav_path}: no phones left after folding to 39 (only 'q' segments)")
            texts[split][utt.utt_id] = phones
    units = build_units(texts["train"][utt] for utt in sorted(texts["train"]))
    _raise_if(faults, f"corpus {root}")
    _warn_partial(root, scan.missing_speakers, {"dev": dev_name, "test": test_name}, splits)
    outside = report_files_outside(root, {s: [str(u.wav_path) for u in splits[s]] for s in SPLITS}, "the audio files")
    texts, unseen = map_unseen_to_unk(texts, units)

    out_dir.mkdir(parents=True, exist_ok=True)
    frames: Dict[str, Dict[str, int]] = {}
    for split in SPLITS:
        split_dir = out_dir / split
        write_data_dir(split_dir, splits[split], texts[split], final_dir=final_dir / split)
        items = [(u.utt_id, u.wav_path) for u in splits[split]]
        frames[split] = extract_features(items, cfg.fbank, split_dir, workers=cfg.workers, progress=progress)
        _make_scp_final(split_dir / "feats.scp", final_dir / split)
        write_utt2num_frames(split_dir, frames[split])
        validate_data_dir(split_dir)

    train_ark = out_dir / "train" / "feats.ark"
    stats = compute_cmvn_stats(mat for _, mat in kaldiio.load_ark(str(train_ark)))
    save_cmvn(out_dir / CMVN_FILE, stats)
    write_units(out_dir / UNITS_FILE, units)
    train_bigram_arpa([texts["train"][utt] for utt in sorted(texts["train"])], out_dir / LM_FILE)
    meta = _meta(
        cfg,
        source=str(Path(root).absolute()),
        speaker_lists={"dev": dev_name, "test": test_name},
        speakers={split: len({u.speaker for u in splits[split]}) for split in SPLITS},
        frames=frames,
        feature_dim=int(stats.shape[1] - 1),
        units=units,
        cmvn_source="train",
        missing_speakers=scan.missing_speakers,
        unseen_phones=unseen,
        files_outside_root=outside,
    )
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def _make_scp_final(scp: Path, final_split_dir: Path) -> None:
    """Point ``<build>/<split>/feats.ark:N`` entries at ``<final_split_dir>/feats.ark:N`` (absolute).

    The stage builds in a temporary folder that is renamed into ``final_split_dir``'s parent;
    Kaldi's ``make_fbank.sh`` writes absolute paths too, so any tool reads the scp from anywhere.
    """
    prefix = str(scp.parent.absolute()) + "/"
    final_prefix = str(Path(final_split_dir).absolute()) + "/"
    lines = []
    for line in scp.read_text(encoding="utf-8").splitlines():
        utt, location = line.split(None, 1)
        absolute = str(Path(location).absolute()) if not location.startswith("/") else location
        if absolute.startswith(prefix):
            absolute = final_prefix + absolute[len(prefix):]
        if any(c.isspace() for c in absolute):
            raise DataError(f"{absolute}: a path with white space cannot go into a Kaldi feats.scp; "
                            "set paths.cache_dir to a folder without spaces")
        lines.append(f"{utt} {absolute}\n")
    scp.write_text("".join(lines), encoding="utf-8")


# --------------------------------------------------------------------------------- existing Kaldi dirs


def load_cmvn_stats_file(path: Path) -> np.ndarray:
    """Kaldi CMVN stats from a matrix file or an archive (several entries are summed: global stats)."""
    path = Path(path)
    try:
        stats = np.asarray(kaldiio.load_mat(str(path)), dtype=np.float64)
    except Exception:  # not a bare matrix: try an archive (kaldiio raises various errors)
        try:
            entries = [np.asarray(m, dtype=np.float64) for _, m in kaldiio.load_ark(str(path))]
        except Exception as err:
            raise DataError(f"{path}: not a Kaldi matrix or archive of CMVN stats ({type(err).__name__}: {err})") from None
        if not entries or any(e.shape != entries[0].shape for e in entries):
            raise DataError(f"{path}: archive holds no CMVN stats, or stats of different shapes")
        stats = np.sum(entries, axis=0)
    check_cmvn_shape(stats, path)
    return stats


def _read_user_features(
    data_dir: KaldiDataDir, split: str, expected_dim: int, accumulate: bool, progress: bool
) -> Tuple[Dict[str, int], Optional[np.ndarray], List[str]]:
    """Frame counts (and CMVN stats when ``accumulate``) of a user's dir; faults for bad matrices."""
    frames: Dict[str, int] = {}
    faults: List[str] = []
    handles: dict = {}

    def matrices():
        for utt in tqdm(data_dir.utt_ids, desc=f"read {split} feats", unit="utt", disable=not progress):
            location = data_dir.feats[utt]
            try:
                matrix = kaldiio.load_mat(location, fd_dict=handles)
            except Exception as err:  # kaldiio raises many types on damaged archives
                faults.append(f"{data_dir.feats_scp}: utterance {utt} ({location}): unreadable ({type(err).__name__}: {err})")
                continue
            if matrix.ndim != 2 or matrix.shape[1] != expected_dim or matrix.shape[0] == 0:
                faults.append(
                    f"{data_dir.feats_scp}: utterance {utt}: features of shape {matrix.shape}, expected [T >= 1, {expected_dim}]"
                    " (data.fbank: num_mel_bins + energy)"
                )
                continue
            found = non_finite(matrix)
            if found:
                faults.append(f"{data_dir.feats_scp}: utterance {utt}: non-finite features ({found}) at {location}; "
                              "recompute them or remove the utterance")
                continue
            frames[utt] = int(matrix.shape[0])
            yield matrix

    stats: Optional[np.ndarray] = None
    try:
        if accumulate:  # streamed: the train features are never all in memory
            try:
                stats = compute_cmvn_stats(matrices())
            except DataError as err:
                if not faults:
                    faults.append(f"{data_dir.feats_scp}: {err}")
        else:
            for _ in matrices():
                pass
    finally:
        for handle in handles.values():
            handle.close()
    return frames, stats, faults


def _prepare_kaldi_dirs(cfg: DataConfig, out_dir: Path, progress: bool) -> dict:
    root = Path(cfg.root) if cfg.root else None
    if root is None:
        raise ConfigError("data.root is required for data=kaldi_dir: write data.root=/path/to/data (holding train/ dev/ test/)")
    faults: List[str] = []
    dirs: Dict[str, KaldiDataDir] = {}
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            faults.append(f"{split_dir}: missing Kaldi data dir for the {split} split")
            continue
        try:
            dirs[split] = read_data_dir(split_dir, allow_pipes=cfg.allow_pipes)
        except DataError as err:
            faults.extend(err.faults or [str(err)])
    _raise_if(faults, f"Kaldi data dirs under {root}")

    outside = report_files_outside(root, {s: d.feats.values() for s, d in dirs.items()}, "feats.scp")
    units = build_units(dirs["train"].text[utt] for utt in dirs["train"].utt_ids)
    texts, unseen = map_unseen_to_unk({s: d.text for s, d in dirs.items()}, units)
    expected_dim = cfg.fbank.feature_dim
    user_stats = None
    if cfg.cmvn is not None:
        user_stats = load_cmvn_stats_file(Path(cfg.cmvn))
        if user_stats.shape[1] - 1 != expected_dim:
            faults.append(f"{cfg.cmvn}: CMVN stats for {user_stats.shape[1] - 1} dims, but features have {expected_dim}")
    frames: Dict[str, Dict[str, int]] = {}
    train_stats = None
    for split in SPLITS:
        accumulate = split == "train" and user_stats is None
        frames[split], stats, read_faults = _read_user_features(dirs[split], split, expected_dim, accumulate, progress)
        faults.extend(read_faults)
        if accumulate:
            train_stats = stats
    _raise_if(faults, f"Kaldi data dirs under {root}")

    out_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        source, split_dir = dirs[split], out_dir / split
        split_dir.mkdir()
        write_feats_scp(split_dir / "feats.scp", source.feats)
        write_table(split_dir / "text", texts[split])
        write_table(split_dir / "utt2spk", source.utt2spk)
        write_table(split_dir / "spk2utt", spk2utt_from_utt2spk(source.utt2spk))
        write_utt2num_frames(split_dir, frames[split])
        if source.wav_scp is not None:
            shutil.copyfile(source.wav_scp, split_dir / "wav.scp")
        validate_data_dir(split_dir)
    stats = user_stats if user_stats is not None else train_stats
    save_cmvn(out_dir / CMVN_FILE, stats)
    write_units(out_dir / UNITS_FILE, units)
    train_bigram_arpa([dirs["train"].text[utt] for utt in dirs["train"].utt_ids], out_dir / LM_FILE)
    meta = _meta(
        cfg,
        source=str(root.absolute()),
        speaker_lists=None,
        speakers={split: len(set(dirs[split].utt2spk.values())) for split in SPLITS},
        frames=frames,
        feature_dim=expected_dim,
        units=units,
        cmvn_source=str(Path(cfg.cmvn).absolute()) if cfg.cmvn is not None else "train",
        missing_speakers={split: [] for split in SPLITS},
        unseen_phones=unseen,
        files_outside_root=outside,
    )
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


# --------------------------------------------------------------------------------- entry point


def _meta(
    cfg: DataConfig,
    source: str,
    speaker_lists: Optional[Dict[str, str]],
    speakers: Dict[str, int],
    frames: Mapping[str, Mapping[str, int]],
    feature_dim: int,
    units: Sequence[str],
    cmvn_source: str,
    missing_speakers: Mapping[str, List[str]],
    unseen_phones: Mapping[str, Mapping[str, int]],
    files_outside_root: Mapping[str, List[str]],
) -> dict:
    flat = {}  # one number per split, for the tracking (stage summaries become MLflow values)
    for split in SPLITS:
        flat[f"utterances_{split}"] = len(frames[split])
        flat[f"missing_speakers_{split}"] = len(missing_speakers.get(split, []))
        flat[f"unk_phones_{split}"] = int(sum(unseen_phones.get(split, {}).values()))
        flat[f"files_outside_root_{split}"] = len(files_outside_root.get(split, []))
    return {
        **flat,
        "kind": cfg.kind,
        "source": source,
        "speaker_lists": speaker_lists,
        "counts": {split: len(frames[split]) for split in SPLITS},
        "speakers": speakers,
        "frames": {split: int(sum(frames[split].values())) for split in SPLITS},
        "feature_dim": feature_dim,
        "num_units": len(units),
        "cmvn_source": cmvn_source,
        # kaldi_dir: the fbank options were the user's recipe's, but splice/skip apply at load time
        "fbank": asdict(cfg.fbank),
        "features_extracted": cfg.kind != "kaldi_dir",
        # feats.scp entries that are shell commands were accepted explicitly (data.allow_pipes)
        "allow_pipes": bool(cfg.allow_pipes),
        # listed dev/test speakers the corpus lacks (a partial copy), by split
        "missing_speaker_ids": {split: list(missing_speakers.get(split, [])) for split in SPLITS},
        # dev/test phones never seen in train, mapped to UNK: split -> phone -> occurrences
        "unseen_phones": {split: dict(unseen_phones.get(split, {})) for split in SPLITS},
        # files the corpus or feats.scp names outside the data root (symbolic links followed), by split
        "files_outside_root": {split: list(files_outside_root.get(split, [])) for split in SPLITS},
    }


def prepare_data(cfg: DataConfig, out_dir: Path, corpus_root: Optional[Path] = None, progress: bool = True,
                 final_dir: Optional[Path] = None) -> dict:
    """Build the prepared layout in ``out_dir`` (a fresh folder) and return the ``meta.json`` content.

    ``corpus_root`` overrides ``cfg.root`` for TIMIT-format corpora (the synthetic corpus stage
    passes its output here); for ``synth`` with neither, the corpus is generated into
    ``out_dir/corpus``.  ``final_dir``: where ``out_dir`` will be renamed to (the stage cache's
    entry); absolute paths in ``feats.scp`` / ``wav.scp`` point there (default: ``out_dir``).
    Raises :class:`DataError` before writing anything when the corpus or the data dirs are
    faulty.
    """
    out_dir = Path(out_dir)
    final_dir = Path(final_dir if final_dir is not None else out_dir).absolute()
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"{out_dir}: prepare needs an empty output folder")
    if cfg.kind == "kaldi_dir":
        return _prepare_kaldi_dirs(cfg, out_dir, progress)
    return _prepare_timit_format(cfg, out_dir, corpus_root, progress, final_dir)
