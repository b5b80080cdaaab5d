"""The prepare stage on small TIMIT trees and users' Kaldi dirs: layout, frames, units, CMVN, config."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import kaldiio
import numpy as np
import pytest

from conf_schemas.data import DataConfig
from lstm_exp.data.kaldi_dir import resolve_feats_scp
from lstm_exp.data.phones import fold_to_39
from lstm_exp.data.prepare import build_units, prepare_data
from lstm_exp.errors import ConfigError, DataError
from timit_fixtures import build_timit_tree, write_kaldi_user_dir, write_speaker_list

SPLITS = ("train", "dev", "test")


def timit_config(tmp_path: Path, info) -> DataConfig:
    return DataConfig(
        kind="timit",
        root=str(info.root),
        dev_speakers_list=str(write_speaker_list(tmp_path / "dev.list", info.dev_speakers)),
        test_speakers_list=str(write_speaker_list(tmp_path / "test.list", info.test_speakers)),
        workers=1,
    )


def read_kv(path: Path) -> dict:
    return {line.split(None, 1)[0]: line.split(None, 1)[1] for line in path.read_text().splitlines()}


def raw_stats(matrices) -> np.ndarray:
    """Kaldi CMVN layout computed directly: sums + count, sums of squares."""
    stacked = np.concatenate([np.asarray(m, dtype=np.float64) for m in matrices])
    stats = np.zeros((2, stacked.shape[1] + 1))
    stats[0, :-1], stats[0, -1], stats[1, :-1] = stacked.sum(0), len(stacked), (stacked**2).sum(0)
    return stats


@pytest.fixture(scope="module")
def prepared_timit(tmp_path_factory):
    """One lower-case TIMIT tree, TEST waveforms louder and offset so dev/test stats differ."""
    tmp_path = tmp_path_factory.mktemp("prepare")
    info = build_timit_tree(tmp_path / "timit", upper=False, amplitude_by_part={"TEST": (12000.0, 800.0)})
    out = tmp_path / "prepared"
    summary = prepare_data(timit_config(tmp_path, info), out, progress=False)
    return info, out, summary


def test_layout_counts_and_meta(prepared_timit):
    info, out, summary = prepared_timit
    for name in ("units", "cmvn.mat", "lm_phone_bg.arpa", "meta.json"):
        assert (out / name).is_file(), name
    for split in SPLITS:
        for name in ("wav.scp", "text", "utt2spk", "spk2utt", "feats.scp", "feats.ark", "utt2num_frames"):
            assert (out / split / name).is_file(), f"{split}/{name}"
        assert sorted(read_kv(out / split / "text")) == info.expected_ids[split]
    meta = json.loads((out / "meta.json").read_text())
    assert meta == summary
    assert meta["counts"] == {split: len(info.expected_ids[split]) for split in SPLITS} == {"train": 6, "dev": 3, "test": 3}
    assert meta["feature_dim"] == 81 and meta["kind"] == "timit"
    assert (out / "lm_phone_bg.arpa").read_text().lstrip().startswith("\\data\\")


def test_frame_counts_follow_snip_edges(prepared_timit):
    info, out, _ = prepared_timit
    for split in SPLITS:
        frames = {utt: int(n) for utt, n in read_kv(out / split / "utt2num_frames").items()}
        assert frames == {utt: 1 + (info.utterances[utt][2] - 400) // 160 for utt in info.expected_ids[split]}
        feats = resolve_feats_scp(out / split / "feats.scp")
        for utt, location in feats.items():
            assert kaldiio.load_mat(location).shape == (frames[utt], 81)


def test_text_holds_folded_39_phone_labels(prepared_timit):
    info, out, _ = prepared_timit
    for split in SPLITS:
        for utt, labels in read_kv(out / split / "text").items():
            assert labels.split() == fold_to_39(info.utterances[utt][1])
    # fcjf0_si1027 is the first utterance written: PHONE_SEQUENCES[0]; dcl d -> sil d
    assert read_kv(out / "train" / "text")["fcjf0_si1027"] == "sil sh iy hh ae sil d y er sil"
    # q deleted, pau epi -> sil sil kept as consecutive identical labels
    assert read_kv(out / "train" / "text")["fcjf0_sx37"] == "sil sil b aa ae sil sil n ih sil"


def test_units_in_order_of_first_appearance_in_train(prepared_timit):
    info, out, _ = prepared_timit
    expected = ["blank", "UNK"]
    for utt in info.expected_ids["train"]:
        for phone in fold_to_39(info.utterances[utt][1]):
            if phone not in expected:
                expected.append(phone)
    lines = (out / "units").read_text().splitlines()
    assert lines == [f"{name} {index}" for index, name in enumerate(expected)]
    assert build_units([["b", "a"], ["a", "c"]]) == ["blank", "UNK", "b", "a", "c"]


def test_cmvn_stats_come_from_train_only(prepared_timit):
    _, out, _ = prepared_timit
    stats = kaldiio.load_mat(str(out / "cmvn.mat"))
    per_split = {
        split: [kaldiio.load_mat(loc) for loc in resolve_feats_scp(out / split / "feats.scp").values()]
        for split in SPLITS
    }
    train_stats = raw_stats(per_split["train"])
    np.testing.assert_allclose(stats, train_stats, rtol=1e-9)
    assert stats[0, -1] == sum(int(n) for n in read_kv(out / "train" / "utt2num_frames").values())
    with_dev = raw_stats(per_split["train"] + per_split["dev"])
    train_mean, with_dev_mean = train_stats[0, :-1] / train_stats[0, -1], with_dev[0, :-1] / with_dev[0, -1]
    assert np.abs(train_mean - with_dev_mean).max() > 0.5  # the louder dev audio would have moved the mean


def test_feats_scp_is_absolute_and_kaldiio_reads_it_from_elsewhere(prepared_timit, tmp_path, monkeypatch):
    _, out, _ = prepared_timit
    monkeypatch.chdir(tmp_path)  # another working directory
    for split in SPLITS:
        for line in (out / split / "feats.scp").read_text().splitlines():
            assert line.split()[1].startswith(str(out / split / "feats.ark") + ":")
        for line in (out / split / "wav.scp").read_text().splitlines():
            assert Path(line.split()[1]).is_absolute()
        frames = {utt: int(n) for utt, n in read_kv(out / split / "utt2num_frames").items()}
        table = kaldiio.load_scp(str(out / split / "feats.scp"))
        assert {utt: table[utt].shape for utt in table} == {utt: (n, 81) for utt, n in frames.items()}


def test_scp_points_at_the_final_folder_and_a_moved_folder_still_reads(tmp_path):
    info = build_timit_tree(tmp_path / "timit")
    build, final = tmp_path / "cache" / ".tmp-key", tmp_path / "cache" / "key"
    prepare_data(timit_config(tmp_path, info), build, progress=False, final_dir=final)
    assert str(build) not in (build / "dev" / "feats.scp").read_text()
    build.rename(final)
    table = kaldiio.load_scp(str(final / "dev" / "feats.scp"))
    assert len(list(table.items())) == 3
    moved = tmp_path / "moved"
    final.rename(moved)  # the absolute entries now point nowhere: the archive beside the scp is used
    for location in resolve_feats_scp(moved / "dev" / "feats.scp").values():
        assert location.startswith(str(moved / "dev" / "feats.ark"))
        assert kaldiio.load_mat(location).shape[1] == 81


def test_older_relative_feats_scp_is_still_read(prepared_timit, tmp_path):
    _, out, _ = prepared_timit
    copy = tmp_path / "old"
    shutil.copytree(out / "dev", copy / "dev")
    scp = copy / "dev" / "feats.scp"
    scp.write_text(scp.read_text().replace(str(out / "dev") + "/", ""))
    for location in resolve_feats_scp(scp).values():
        assert location.startswith(str(copy / "dev" / "feats.ark"))
        assert kaldiio.load_mat(location).shape[1] == 81


def test_dev_phone_unseen_in_train_becomes_unk_with_a_warning(tmp_path, caplog):
    layout = {
        "TRAIN": {"DR1": {"FCJF0": {"SI1027": ["s", "iy"]}}},
        "TEST": {"DR1": {"FAKS0": {"SI943": ["sh", "iy", "sh"]}}, "DR2": {"MDAB0": {"SI1039": ["s"]}}},
    }
    info = build_timit_tree(tmp_path / "timit", layout=layout, dev_speakers=["faks0"], test_speakers=["mdab0"])
    out = tmp_path / "prepared"
    with caplog.at_level("WARNING", logger="lstm_exp.data.prepare"):
        summary = prepare_data(timit_config(tmp_path, info), out, progress=False)
    assert "dev: phone(s) never seen in train mapped to UNK: 'sh' (2x)" in caplog.text
    assert read_kv(out / "dev" / "text") == {"faks0_si943": "sil UNK iy UNK sil"}
    assert summary["unk_phones_dev"] == 2 and summary["unk_phones_test"] == 0
    assert summary["unseen_phones"]["dev"] == {"sh": 2}
    assert "sh" not in (out / "units").read_text().split()


def test_partial_timit_tree_prepares_with_a_warning_naming_missing_speakers(tmp_path, caplog):
    info = build_timit_tree(tmp_path / "timit")
    info.dev_speakers.append("fxyz0")
    info.test_speakers.extend(["mabc0", "mdef1"])
    out = tmp_path / "prepared"
    with caplog.at_level("WARNING", logger="lstm_exp.data.prepare"):
        summary = prepare_data(timit_config(tmp_path, info), out, progress=False)
    assert "1 speaker(s) of" in caplog.text and "fxyz0" in caplog.text
    assert "2 speaker(s) of" in caplog.text and "mabc0 mdef1" in caplog.text
    assert "utterances found: train 6, dev 3, test 3" in caplog.text
    assert summary["missing_speakers_dev"] == 1 and summary["missing_speakers_test"] == 2
    assert summary["missing_speaker_ids"] == {"train": [], "dev": ["fxyz0"], "test": ["mabc0", "mdef1"]}
    assert [summary[f"utterances_{s}"] for s in SPLITS] == [6, 3, 3]


def test_timit_tree_with_an_empty_split_is_refused(tmp_path):
    info = build_timit_tree(tmp_path / "timit")
    info.dev_speakers[:] = ["fxyz0"]
    with pytest.raises(DataError, match=r"no dev utterances: none of the 1 speakers"):
        prepare_data(timit_config(tmp_path, info), tmp_path / "prepared", progress=False)
    assert not (tmp_path / "prepared").exists()


def test_corpus_faults_raise_before_writing(tmp_path):
    info = build_timit_tree(tmp_path / "timit")
    (info.root / "TRAIN" / "DR1" / "FCJF0" / "SX37.PHN").unlink()
    out = tmp_path / "prepared"
    with pytest.raises(DataError, match="SX37.PHN: missing phone transcription"):
        prepare_data(timit_config(tmp_path, info), out, progress=False)
    assert not out.exists()


def user_kaldi_dirs(root: Path) -> dict:
    """train in the recipe's names (fbank.scp, phn_text), dev/test in Kaldi's; dev features offset."""
    return {
        "train": write_kaldi_user_dir(root / "train", ["t1", "t2", "t3"], "fbank.scp", "phn_text", labels="sil s iy sil"),
        "dev": write_kaldi_user_dir(root / "dev", ["d1", "d2"], labels="sil iy s", offset=5.0),
        "test": write_kaldi_user_dir(root / "test", ["e1"], labels="s sil"),
    }


def test_kaldi_dir_kind_references_user_features(tmp_path):
    mats = user_kaldi_dirs(tmp_path / "data")
    out = tmp_path / "prepared"
    summary = prepare_data(DataConfig(kind="kaldi_dir", root=str(tmp_path / "data")), out, progress=False)
    assert summary["counts"] == {"train": 3, "dev": 2, "test": 1}
    for split in SPLITS:
        scp = read_kv(out / split / "feats.scp")
        assert all(loc.startswith(str(tmp_path / "data" / split / "raw.ark")) for loc in scp.values())
        frames = {utt: int(n) for utt, n in read_kv(out / split / "utt2num_frames").items()}
        assert frames == {utt: m.shape[0] for utt, m in mats[split].items()}
    assert read_kv(out / "train" / "text")["t1"] == "sil s iy sil"
    assert (out / "units").read_text().splitlines() == ["blank 0", "UNK 1", "sil 2", "s 3", "iy 4"]
    np.testing.assert_allclose(kaldiio.load_mat(str(out / "cmvn.mat")), raw_stats(mats["train"].values()), rtol=1e-9)
    assert not (out / "train" / "feats.ark").exists(), "features are referenced, not copied"


def test_kaldi_dir_kind_maps_unseen_test_phones_to_unk(tmp_path, caplog):
    user_kaldi_dirs(tmp_path / "data")
    write_kaldi_user_dir(tmp_path / "data" / "test", ["e1"], labels="s aa sil aa")
    with caplog.at_level("WARNING", logger="lstm_exp.data.prepare"):
        summary = prepare_data(DataConfig(kind="kaldi_dir", root=str(tmp_path / "data")), tmp_path / "out", progress=False)
    assert "test: phone(s) never seen in train mapped to UNK: 'aa' (2x)" in caplog.text
    assert read_kv(tmp_path / "out" / "test" / "text") == {"e1": "s UNK sil UNK"}
    assert summary["unk_phones_test"] == 2 and summary["utterances_test"] == 1


def test_kaldi_dir_kind_uses_given_cmvn_stats(tmp_path):
    user_kaldi_dirs(tmp_path / "data")
    given = np.zeros((2, 82))
    given[0, :-1], given[0, -1], given[1, :-1] = 3.0, 10.0, 7.0
    cmvn_path = tmp_path / "global_cmvn"
    kaldiio.save_mat(str(cmvn_path), given)
    out = tmp_path / "prepared"
    cfg = DataConfig(kind="kaldi_dir", root=str(tmp_path / "data"), cmvn=str(cmvn_path))
    summary = prepare_data(cfg, out, progress=False)
    np.testing.assert_array_equal(kaldiio.load_mat(str(out / "cmvn.mat")), given)
    assert summary["cmvn_source"] == str(cmvn_path)


def test_kaldi_dir_kind_missing_split(tmp_path):
    write_kaldi_user_dir(tmp_path / "data" / "train", ["t1"])
    write_kaldi_user_dir(tmp_path / "data" / "dev", ["d1"])
    with pytest.raises(DataError, match=r"data/test: missing Kaldi data dir for the test split"):
        prepare_data(DataConfig(kind="kaldi_dir", root=str(tmp_path / "data")), tmp_path / "out", progress=False)


def test_data_config_checks(tmp_path):
    with pytest.raises(ConfigError, match="data.root is required for data=timit: write data.root=/path/to/TIMIT"):
        DataConfig(kind="timit")
    with pytest.raises(ConfigError, match="data.kind='wav' is not known"):
        DataConfig(kind="wav")
    with pytest.raises(ConfigError, match="does not exist"):
        DataConfig(kind="timit", root=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="data.cmvn is only used with data=kaldi_dir"):
        DataConfig(kind="timit", root=str(tmp_path), cmvn=str(tmp_path))
    with pytest.raises(ConfigError, match="data.workers=0"):
        DataConfig(kind="timit", root=str(tmp_path), workers=0)
    assert DataConfig(kind="synth").synth is not None


def _pipe_the_dev_scp(root: Path) -> None:
    """Rewrite dev's feats.scp so its first entry is a shell command (``cat ark |``)."""
    scp = root / "dev" / "feats.scp"
    lines = scp.read_text().splitlines()
    utt, location = lines[0].split(None, 1)
    # a pipe entry reads one binary matrix (no key) from the command's output
    single = root / "dev" / "single.mat"
    kaldiio.save_mat(str(single), kaldiio.load_mat(location))
    lines[0] = f"{utt} cat {single} |"
    scp.write_text("\n".join(lines) + "\n")


def test_kaldi_dir_pipes_allowed_at_prepare_are_allowed_at_load(tmp_path):
    from lstm_exp.data.batching import load_split, load_units

    mats = user_kaldi_dirs(tmp_path / "data")
    _pipe_the_dev_scp(tmp_path / "data")
    with pytest.raises(DataError, match="allow_pipes"):
        prepare_data(DataConfig(kind="kaldi_dir", root=str(tmp_path / "data")), tmp_path / "refused", progress=False)
    out = tmp_path / "prepared"
    prepare_data(DataConfig(kind="kaldi_dir", root=str(tmp_path / "data"), allow_pipes=True), out, progress=False)
    assert json.loads((out / "meta.json").read_text())["allow_pipes"] is True
    examples = load_split(out, "dev", load_units(out / "units"), progress=False)
    assert [ex.utt_id for ex in examples] == ["d1", "d2"]
    with pytest.raises(DataError, match="allow_pipes"):
        load_split(out, "dev", load_units(out / "units"), progress=False, allow_pipes=False)
    assert mats["dev"]["d1"].shape[0] > 0
