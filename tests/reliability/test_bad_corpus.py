"""Catalogue, corpora and data dirs (docs/RELIABILITY.md, "Bad inputs: corpora, audio, labels and
data dirs"): each case damages one thing in a small, otherwise valid corpus and runs the CLI on it.

TIMIT-layout cases run ``data=timit`` on a tree of :mod:`timit_fixtures`; Kaldi data dir cases
run ``data=kaldi_dir`` on dirs of random 81-dim features.  A positive control shows each
undamaged input prepares, so that every failure below is the damage's doing.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest

from catalogue import CHECKOUT, SMOKE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from timit_fixtures import build_timit_tree, write_kaldi_user_dir, write_speaker_list  # noqa: E402


# ----------------------------------------------------------------------------- inputs


@pytest.fixture(scope="module")
def good_timit(tmp_path_factory) -> Path:
    """A valid TIMIT-layout tree and its speaker lists: ``<dir>/TIMIT``, ``dev.list``, ``test.list``."""
    base = tmp_path_factory.mktemp("timit")
    info = build_timit_tree(base / "TIMIT")
    write_speaker_list(base / "dev.list", info.dev_speakers)
    write_speaker_list(base / "test.list", info.test_speakers)
    return base


@pytest.fixture
def timit(good_timit, tmp_path) -> Path:
    """A fresh copy of the valid tree, for one test to damage."""
    return Path(shutil.copytree(good_timit, tmp_path / "copy")) / "TIMIT"


def timit_args(root: Path, *more: str) -> list:
    return [*SMOKE, "data=timit", f"data.root={root}", f"data.dev_speakers_list={root.parent / 'dev.list'}",
            f"data.test_speakers_list={root.parent / 'test.list'}", *more]


KALDI_IDS = {"train": [f"tr{i}" for i in range(6)], "dev": ["dv0", "dv1"], "test": ["ts0", "ts1"]}


@pytest.fixture
def kaldi(tmp_path) -> Path:
    """``<root>/{train,dev,test}`` Kaldi data dirs (feats.scp + raw.ark + text), valid."""
    root = tmp_path / "data"
    for split, ids in KALDI_IDS.items():
        write_kaldi_user_dir(root / split, ids, labels="sil s iy sh sil")
    return root


def kaldi_args(root: Path, *more: str) -> list:
    return [*SMOKE, "data=kaldi_dir", f"data.root={root}", *more]


def rewrite_ark(split_dir: Path, utt: str, matrix: np.ndarray) -> None:
    """Replace one utterance's matrix (rewrites the split's ark and scp)."""
    scp = split_dir / "feats.scp"
    mats = {u: kaldiio.load_mat(loc) for u, loc in (line.split(None, 1) for line in scp.read_text().splitlines())}
    mats[utt] = matrix
    with kaldiio.WriteHelper(f"ark,scp:{split_dir / 'raw.ark'},{scp}") as writer:
        for u, m in mats.items():
            writer(u, m)


# ----------------------------------------------------------------------------- positive controls


def test_the_undamaged_inputs_run(workspace, timit, kaldi):
    """The TIMIT tree prepares; the Kaldi dirs (2 dev utterances) run end to end."""
    for args in (timit_args(timit, "stage=prepare"), kaldi_args(kaldi, "batch=2")):  # 2 dev utterances
        proc = workspace.run(*args)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "outside the data root" not in proc.stdout + proc.stderr
        workspace.assert_earlier_outputs_intact()


# ----------------------------------------------------------------------------- files outside the data root


def test_files_outside_the_data_root_are_reported(workspace, timit, kaldi, tmp_path):
    """Not refused (Kaldi recipes keep arks beside data/), but named in a warning and counted."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    wav = timit / "TRAIN/DR1/FCJF0/SI1027.WAV"
    shutil.move(wav, elsewhere / wav.name)
    wav.symlink_to(elsewhere / wav.name)
    ark = kaldi / "dev" / "raw.ark"
    shutil.move(ark, elsewhere / "dev.ark")
    scp = kaldi / "dev" / "feats.scp"
    scp.write_text(scp.read_text().replace(str(ark), str(elsewhere / "dev.ark")))

    for args, named, split in ((timit_args(timit, "stage=prepare"), elsewhere / wav.name, "train"),
                               (kaldi_args(kaldi, "stage=prepare"), elsewhere / "dev.ark", "dev")):
        proc = workspace.run(*args)
        assert proc.returncode == 0, proc.stderr[-3000:]
        warning = [line for line in (proc.stdout + proc.stderr).splitlines() if "outside the data root" in line]
        assert len(warning) == 1 and f"the {split} split: 1 file(s) outside the data root" in warning[0], proc.stderr
        assert str(named) in warning[0]
        (meta,) = [p for p in (workspace.root / "cache" / "prepare").glob("*/meta.json")
                   if str(named) in p.read_text()]
        summary = json.loads(meta.read_text())
        assert summary[f"files_outside_root_{split}"] == 1 and summary["files_outside_root"][split] == [str(named)]


# ----------------------------------------------------------------------------- corpora


def test_missing_corpus_root(workspace, tmp_path):
    missing = tmp_path / "no-such-TIMIT"
    proc = workspace.run(*SMOKE, "data=timit", f"data.root={missing}")
    workspace.assert_user_error(proc, str(missing))


def test_empty_corpus_folder(workspace, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = workspace.run(*SMOKE, "data=timit", f"data.root={empty}")
    line = workspace.assert_user_error(proc, str(empty))
    assert "no TRAIN folder" in line


def test_corpus_without_speakers(workspace, tmp_path):
    root = tmp_path / "TIMIT"
    (root / "TRAIN").mkdir(parents=True)
    (root / "TEST").mkdir()
    proc = workspace.run(*SMOKE, "data=timit", f"data.root={root}")
    workspace.assert_user_error(proc, str(root / "TRAIN"))


# ----------------------------------------------------------------------------- audio


def test_corrupt_audio(workspace, timit):
    wav = timit / "TRAIN/DR1/FCJF0/SI1027.WAV"
    wav.write_bytes(b"this is not audio at all\n" * 40)
    proc = workspace.run(*timit_args(timit))
    line = workspace.assert_user_error(proc, str(wav))
    assert "unreadable audio" in line


def test_truncated_audio(workspace, timit):
    wav = timit / "TRAIN/DR1/FCJF0/SI1027.WAV"
    data = wav.read_bytes()
    wav.write_bytes(data[: 1024 + (len(data) - 1024) // 2])  # NIST header kept, half the samples
    proc = workspace.run(*timit_args(timit))
    line = workspace.assert_user_error(proc, str(wav))
    assert "truncated audio" in line


def test_empty_audio(workspace, timit):
    wav = timit / "TEST/DR1/FAKS0/SI943.WAV"
    import soundfile as sf

    sf.write(str(wav), np.zeros(0, dtype=np.int16), 16000, format="NIST", subtype="PCM_16")
    proc = workspace.run(*timit_args(timit))
    line = workspace.assert_user_error(proc, str(wav))
    assert "no samples" in line


def test_audio_at_the_wrong_sample_rate(workspace, timit):
    wav = timit / "TEST/DR2/FDAC1/SI844.WAV"
    import soundfile as sf

    samples, _ = sf.read(str(wav), dtype="int16")
    sf.write(str(wav), samples, 8000, format="NIST", subtype="PCM_16")
    proc = workspace.run(*timit_args(timit))
    line = workspace.assert_user_error(proc, str(wav))
    assert "sample rate 8000 Hz" in line


# ----------------------------------------------------------------------------- labels


def test_missing_label_file(workspace, timit):
    phn = timit / "TRAIN/DR2/FAEM0/SX42.PHN"
    phn.unlink()
    proc = workspace.run(*timit_args(timit))
    line = workspace.assert_user_error(proc, str(phn))
    assert "missing phone transcription" in line


def test_malformed_label_file(workspace, timit):
    phn = timit / "TRAIN/DR1/MDEF0/SI648.PHN"
    phn.write_text("0 3000 h#\nthree thousand to six thousand sh\n")
    proc = workspace.run(*timit_args(timit))
    line = workspace.assert_user_error(proc, str(phn))
    assert "expected '<start> <end> <label>'" in line


def test_label_outside_the_phone_set(workspace, timit):
    phn = timit / "TEST/DR1/MDAB0/SI1039.PHN"
    phn.write_text(phn.read_text().replace(" sh\n", " xx\n", 1) if " sh\n" in phn.read_text()
                   else phn.read_text().replace(" h#\n", " xx\n", 1))
    proc = workspace.run(*timit_args(timit))
    line = workspace.assert_user_error(proc, str(phn))
    assert "'xx' is not one of the 61 TIMIT phones" in line


# ----------------------------------------------------------------------------- Kaldi data dirs


def test_missing_kaldi_dir(workspace, kaldi):
    shutil.rmtree(kaldi / "test")
    proc = workspace.run(*kaldi_args(kaldi))
    workspace.assert_user_error(proc, str(kaldi / "test"))


def test_missing_label_file_in_a_kaldi_dir(workspace, kaldi):
    (kaldi / "dev" / "text").unlink()
    proc = workspace.run(*kaldi_args(kaldi))
    line = workspace.assert_user_error(proc, str(kaldi / "dev"))
    assert "no transcript" in line


def test_mismatched_scp_and_label_ids(workspace, kaldi):
    text = kaldi / "dev" / "text"
    text.write_text(text.read_text().replace("dv1 ", "dv9 "))
    proc = workspace.run(*kaldi_args(kaldi))
    line = workspace.assert_user_error(proc, str(kaldi / "dev"))
    assert "dv1" in proc.stderr and "dv9" in proc.stderr, proc.stderr
    assert "utterance" in line


def test_unreadable_ark_entry(workspace, kaldi):
    scp = kaldi / "train" / "feats.scp"
    ark = kaldi / "train" / "raw.ark"
    ark.write_bytes(ark.read_bytes()[: ark.stat().st_size // 2])  # the later entries are cut off
    proc = workspace.run(*kaldi_args(kaldi))
    line = workspace.assert_user_error(proc, str(scp))
    assert "unreadable" in line and str(ark) in line


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_features(workspace, kaldi, bad):
    matrix = np.random.default_rng(1).normal(size=(25, 81)).astype(np.float32)
    matrix[7, 3] = bad
    rewrite_ark(kaldi / "dev", "dv1", matrix)
    proc = workspace.run(*kaldi_args(kaldi))
    line = workspace.assert_user_error(proc, str(kaldi / "dev" / "feats.scp"), "dv1")
    assert "non-finite" in line


def test_features_of_the_wrong_dimension(workspace, kaldi):
    rewrite_ark(kaldi / "test", "ts0", np.zeros((30, 40), dtype=np.float32))
    proc = workspace.run(*kaldi_args(kaldi))
    line = workspace.assert_user_error(proc, str(kaldi / "test" / "feats.scp"), "ts0")
    assert "expected [T >= 1, 81]" in line


def test_a_command_in_feats_scp_is_refused(workspace, kaldi):
    scp = kaldi / "dev" / "feats.scp"
    first, rest = scp.read_text().split("\n", 1)
    scp.write_text(f"{first.split()[0]} cat /etc/passwd |\n{rest}")
    proc = workspace.run(*kaldi_args(kaldi))
    line = workspace.assert_user_error(proc, str(scp))
    assert "allow_pipes" in line


def test_unreadable_cmvn_stats(workspace, kaldi, tmp_path):
    cmvn = tmp_path / "cmvn.ark"
    cmvn.write_text("not kaldi stats\n")
    proc = workspace.run(*kaldi_args(kaldi, f"data.cmvn={cmvn}"))
    workspace.assert_user_error(proc, str(cmvn))


def test_the_synthetic_corpus_without_espeak(workspace, tmp_path):
    """An install without the `synth` extra: the corpus stage names the package to install."""
    blocker = tmp_path / "site" / "espeakng_loader"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('espeakng_loader is not installed (test)')\n")
    path = os.pathsep.join([str(CHECKOUT), str(tmp_path / "site")])
    proc = workspace.run(*SMOKE, "data.synth.seed=7", env={"PYTHONPATH": path})  # a corpus not cached yet
    line = workspace.assert_user_error(proc, "espeakng-loader")
    assert "pip install 'lstm_exp[synth]'" in line


def test_a_file_replaced_at_the_same_path_is_not_taken_from_the_cache(workspace, kaldi, tmp_path):
    """The stage cache keys a file the config names (here data.cmvn) by its size and mtime too:
    replaced at the same path, it is read again, not served stale from an earlier entry."""
    from lstm_exp.data.features import compute_cmvn_stats, save_cmvn

    mats = [kaldiio.load_mat(loc.split(None, 1)[1]) for loc in (kaldi / "train" / "feats.scp").read_text().splitlines()]
    cmvn = tmp_path / "cmvn.mat"
    save_cmvn(cmvn, compute_cmvn_stats(mats))
    args = kaldi_args(kaldi, f"data.cmvn={cmvn}", "stage=prepare", "tracking=none")
    first = workspace.run(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    save_cmvn(cmvn, compute_cmvn_stats(m * 2.0 for m in mats))  # other statistics, same path
    os.utime(cmvn, ns=(cmvn.stat().st_atime_ns, cmvn.stat().st_mtime_ns + 1_000_000_000))
    second = workspace.run(*args)
    assert second.returncode == 0, second.stderr[-3000:]
    built = [line for line in (first.stdout + first.stderr + second.stdout + second.stderr).splitlines()
             if "prepare: built" in line]
    assert len(built) == 2, "the second run reused the entry made from the replaced file"
    workspace.assert_earlier_outputs_intact()


# ----------------------------------------------------------------------------- messages that point the right way


def _riff_copy(wav: Path, target: Path) -> None:
    import soundfile as sf

    samples, rate = sf.read(str(wav), dtype="int16")
    sf.write(str(target), samples, rate, format="WAV", subtype="PCM_16")


def test_a_tree_of_riff_wav_wav_copies_prepares(workspace, timit):
    """``<utt>.WAV.wav`` RIFF files only, as some distributions ship TIMIT: they are the audio."""
    for wav in sorted(timit.rglob("*.WAV")):
        _riff_copy(wav, wav.with_name(wav.name + ".wav"))
        wav.unlink()
    proc = workspace.run(*timit_args(timit, "stage=prepare"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    workspace.assert_earlier_outputs_intact()


def test_a_wav_beside_its_sph2pipe_copy_says_which_to_keep(workspace, timit):
    wav = timit / "TRAIN/DR1/FCJF0/SI1027.WAV"
    _riff_copy(wav, wav.with_name("SI1027.wav"))
    proc = workspace.run(*timit_args(timit))
    line = workspace.assert_user_error(proc, str(wav.parent), "SI1027.WAV: NIST SPHERE", "SI1027.wav: RIFF WAVE")
    assert "keep one file per utterance" in line and "move the converted copies" in line


def test_data_root_at_the_train_folder_says_to_use_its_parent(workspace, timit):
    proc = workspace.run(*SMOKE, "data=timit", f"data.root={timit / 'TRAIN'}")
    line = workspace.assert_user_error(proc, str(timit / "TRAIN"), f"data.root={timit}")
    assert "this is the TRAIN folder" in line


def test_a_corpus_under_the_home_folder_written_with_a_tilde_prepares(workspace, timit):
    home = timit.parent.parent
    for root in ("~/copy/TIMIT", '"~/copy/TIMIT"'):  # unquoted: the command line; quoted: validation
        args = [a.replace(f"data.root={timit}", f"data.root={root}") for a in timit_args(timit, "stage=prepare")]
        proc = workspace.run(*args, env={"HOME": str(home)})
        assert proc.returncode == 0, proc.stderr[-3000:]
        workspace.assert_earlier_outputs_intact()


def test_a_cache_folder_with_white_space_is_refused_before_synthesis(workspace, tmp_path):
    cache = tmp_path / "my runs" / "cache"
    proc = workspace.run(*SMOKE, f"paths.cache_dir={cache}")
    line = workspace.assert_user_error(proc, f"paths.cache_dir={cache}")
    assert "set paths.cache_dir to a folder without spaces" in line and "synthetic corpus" in line
    assert not cache.exists()
