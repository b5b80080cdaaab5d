"""Kaldi data dirs: writing from utterances, reading users' dirs (name variants, pipes, mismatches)."""
from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import pytest

from lstm_exp.data.corpus import read_timit
from lstm_exp.data.kaldi_dir import read_data_dir, resolve_feats_scp, validate_data_dir, write_data_dir
from lstm_exp.data.phones import fold_to_39
from lstm_exp.errors import DataError
from timit_fixtures import build_timit_tree, write_kaldi_user_dir


def test_write_data_dir_follows_kaldi_conventions(tmp_path):
    info = build_timit_tree(tmp_path / "corpus")
    utts = read_timit(info.root, info.dev_speakers, info.test_speakers)["train"]
    text39 = {u.utt_id: fold_to_39(label for _, _, label in u.phones61) for u in utts}
    out = tmp_path / "data" / "train"
    write_data_dir(out, list(reversed(utts)), text39)

    def lines(name):
        return (out / name).read_text().splitlines()

    ids = sorted(u.utt_id for u in utts)
    assert [line.split()[0] for line in lines("wav.scp")] == ids
    assert lines("wav.scp")[0] == f"{ids[0]} {info.utterances[ids[0]][0]}"
    assert lines("text")[0] == f"{ids[0]} " + " ".join(text39[ids[0]])
    assert lines("utt2spk") == [f"{utt} {utt.split('_')[0]}" for utt in ids]
    assert lines("spk2utt") == [
        "faem0 faem0_si1392 faem0_sx42",
        "fcjf0 fcjf0_si1027 fcjf0_sx37",
        "mdef0 mdef0_si648 mdef0_sx18",
    ]


@pytest.mark.parametrize(
    "scp_name,text_name", [("feats.scp", "text"), ("fbank.scp", "phn_text")], ids=["kaldi-names", "recipe-names"]
)
def test_read_data_dir_accepts_both_name_variants(tmp_path, scp_name, text_name):
    dir = tmp_path / "data" / "dev"
    mats = write_kaldi_user_dir(dir, ["u1", "u2"], scp_name, text_name)
    data = read_data_dir(dir, allow_pipes=False)
    assert data.feats_scp.name == scp_name and data.text_file.name == text_name
    assert data.text == {"u1": ["sil", "s", "iy", "sil"], "u2": ["sil", "s", "iy", "sil"]}
    assert data.utt2spk == {"u1": "u1", "u2": "u2"}  # no utt2spk file: each utterance its own speaker
    for utt, location in data.feats.items():
        assert Path(location.rsplit(":", 1)[0]).is_absolute()
        np.testing.assert_array_equal(kaldiio.load_mat(location), mats[utt])


def test_relative_ark_paths_resolve_against_the_recipe_folder(tmp_path):
    dir = tmp_path / "s5" / "data" / "train"
    mats = write_kaldi_user_dir(dir, ["u1"], relative=True)
    assert not (dir / "feats.scp").read_text().split()[1].startswith("/")
    data = read_data_dir(dir, allow_pipes=False)
    np.testing.assert_array_equal(kaldiio.load_mat(data.feats["u1"]), mats["u1"])


def test_pipe_entries_refused_unless_allowed(tmp_path):
    dir = tmp_path / "dev"
    write_kaldi_user_dir(dir, ["u1", "u2"])
    scp = dir / "feats.scp"
    lines = scp.read_text().splitlines()
    ark_location = lines[1].split()[1]
    marker = tmp_path / "command-ran"
    lines[1] = f"u2 touch {marker}; copy-feats {ark_location} - |"
    scp.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as caught:
        read_data_dir(dir, allow_pipes=False)
    assert f"{scp}:2: " in str(caught.value) and "shell command" in str(caught.value)
    assert "data.allow_pipes=true" in str(caught.value)
    assert not marker.exists()
    data = read_data_dir(dir, allow_pipes=True)
    assert data.feats["u2"].endswith("|")
    with pytest.raises(DataError, match="shell command"):
        resolve_feats_scp(scp)


def test_all_mismatches_and_unknown_labels_reported(tmp_path):
    dir = tmp_path / "train"
    write_kaldi_user_dir(dir, ["u1", "u2", "u3"])
    (dir / "text").write_text("u1 sil s iy sil\nu2 sil h# q sil\nu4 sil s sil\n")
    with pytest.raises(DataError) as caught:
        read_data_dir(dir, allow_pipes=False)
    first, *rest = str(caught.value).splitlines()
    faults = [first.split("the first: ", 1)[1], *rest]
    assert any("text:2" in f and "h# q" in f and "39-phone" in f for f in faults)
    assert any("no features for utterance u4" in f for f in faults)
    assert any("no labels for utterance u3" in f for f in faults)
    assert len(faults) == 3


def test_missing_files_and_duplicates(tmp_path):
    dir = tmp_path / "test"
    write_kaldi_user_dir(dir, ["u1", "u2"])
    (dir / "fbank.scp").write_text((dir / "feats.scp").read_text())
    (dir / "text").unlink()
    with pytest.raises(DataError) as caught:
        read_data_dir(dir, allow_pipes=False)
    message = str(caught.value)
    assert "both feats.scp and fbank.scp" in message
    assert "no transcript (expected one of text, phn_text)" in message


def test_missing_ark_file_is_named(tmp_path):
    dir = tmp_path / "dev"
    write_kaldi_user_dir(dir, ["u1"])
    (dir / "raw.ark").unlink()
    with pytest.raises(DataError, match=r"feats.scp:1: feature file .*raw.ark does not exist"):
        read_data_dir(dir, allow_pipes=False)


def _valid_dir(dir: Path) -> Path:
    dir.mkdir(parents=True)
    (dir / "text").write_text("a_1 s iy\na_2 iy\nb_1 s\n")
    (dir / "feats.scp").write_text("a_1 /x.ark:1\na_2 /x.ark:2\nb_1 /x.ark:3\n")
    (dir / "utt2spk").write_text("a_1 a\na_2 a\nb_1 b\n")
    (dir / "spk2utt").write_text("a a_1 a_2\nb b_1\n")
    return dir


def test_validate_data_dir_accepts_a_sorted_consistent_dir(tmp_path):
    validate_data_dir(_valid_dir(tmp_path / "ok"))


@pytest.mark.parametrize(
    "name,content,words",
    [
        ("text", "a_2 iy\na_1 s iy\nb_1 s\n", "text:2: not sorted (a_2 before a_1)"),
        ("feats.scp", "a_1 /x.ark:1\nb_1 /x.ark:3\n", "feats.scp: utterance ids differ from utt2spk"),
        ("spk2utt", "a a_1\nb b_1 a_2\n", "spk2utt: does not match utt2spk"),
        ("utt2spk", "a_1 a\na_1 a\na_2 a\nb_1 b\n", "utt2spk:2: utterance a_1 repeated"),
    ],
    ids=["unsorted", "ids-differ", "spk2utt", "repeated"],
)
def test_validate_data_dir_names_the_fault(tmp_path, name, content, words):
    dir = _valid_dir(tmp_path / "bad")
    (dir / name).write_text(content)
    with pytest.raises(DataError, match="validate_data_dir.sh") as caught:
        validate_data_dir(dir)
    assert words in str(caught.value)
