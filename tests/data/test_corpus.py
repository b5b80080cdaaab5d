"""TIMIT tree reader: split membership, ids, SA exclusion, whole-tree validation, phone fold."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lstm_exp.data.corpus import read_timit, scan_timit
from lstm_exp.data.phones import (
    FOLD_61_TO_39,
    PHONES_39,
    TIMIT_61,
    fold_to_39,
    packaged_speaker_list,
)
from lstm_exp.errors import DataError
from timit_fixtures import build_timit_tree, make_waveform, write_phn


def test_packaged_phone_sets_and_speaker_lists():
    assert len(TIMIT_61) == 61 and len(set(TIMIT_61)) == 61
    assert len(PHONES_39) == 39
    assert FOLD_61_TO_39["q"] is None
    for closure in ("bcl", "dcl", "gcl", "pcl", "tcl", "kcl", "pau", "epi", "h#"):
        assert FOLD_61_TO_39[closure] == "sil"
    dev, test = packaged_speaker_list("dev_spk.list"), packaged_speaker_list("test_spk.list")
    assert (len(dev), len(test)) == (50, 24)
    assert not set(dev) & set(test)


def test_fold_drops_q_and_keeps_consecutive_identical():
    assert fold_to_39(["h#", "bcl", "b", "ao", "q", "ae", "pau", "epi", "n", "ix", "h#"]) == [
        "sil", "sil", "b", "aa", "ae", "sil", "sil", "n", "ih", "sil",
    ]


@pytest.mark.parametrize("upper", [True, False], ids=["upper-case", "lower-case"])
def test_split_membership_ids_and_segments(tmp_path, upper):
    info = build_timit_tree(tmp_path, upper=upper)
    splits = read_timit(tmp_path, info.dev_speakers, info.test_speakers)
    assert {split: [u.utt_id for u in utts] for split, utts in splits.items()} == info.expected_ids
    all_ids = [u.utt_id for utts in splits.values() for u in utts]
    assert not any("_sa" in utt for utt in all_ids), "SA sentences must be excluded"
    assert not any(utt.startswith("mkxl0") for utt in all_ids), "a TEST speaker in neither list is unused"
    for utts in splits.values():
        for utt in utts:
            path, labels, num_samples = info.utterances[utt.utt_id]
            assert utt.wav_path == path
            assert utt.speaker == utt.utt_id.split("_")[0]
            assert [label for _, _, label in utt.phones61] == labels
            assert (utt.num_samples, utt.sample_rate) == (num_samples, 16000)


def test_speaker_lists_match_case_insensitively(tmp_path):
    info = build_timit_tree(tmp_path)
    splits = read_timit(tmp_path, [s.upper() for s in info.dev_speakers], info.test_speakers)
    assert [u.utt_id for u in splits["dev"]] == info.expected_ids["dev"]


def test_nested_timit_folder_is_found(tmp_path):
    info = build_timit_tree(tmp_path / "TIMIT")
    splits = read_timit(tmp_path, info.dev_speakers, info.test_speakers)
    assert [u.utt_id for u in splits["test"]] == info.expected_ids["test"]


def test_every_fault_class_is_reported_in_one_error(tmp_path):
    build_timit_tree(tmp_path)
    train_spk = tmp_path / "TRAIN" / "DR1" / "FCJF0"
    dev_spk = tmp_path / "TEST" / "DR1" / "FAKS0"
    test_spk = tmp_path / "TEST" / "DR1" / "MDAB0"
    # unreadable audio
    (train_spk / "SI1027.WAV").write_bytes(b"this is not audio" * 10)
    # truncated audio: SPHERE header declares more samples than the file holds
    sx37 = (train_spk / "SX37.WAV").read_bytes()
    (train_spk / "SX37.WAV").write_bytes(sx37[: 1024 + 2000])
    # wrong sample rate
    sf.write(str(dev_spk / "SI943.WAV"), make_waveform(8000, 1), 8000, format="NIST", subtype="PCM_16")
    # missing .PHN
    (dev_spk / "SX43.PHN").unlink()
    # label outside the 61 set, overlapping segments, end beyond the audio
    write_phn(test_spk / "SI1039.PHN", [(0, 3000, "h#"), (3000, 5000, "xx"), (4000, 6000, "s"), (6000, 99999, "h#")])
    # out of order
    write_phn(tmp_path / "TRAIN" / "DR2" / "FAEM0" / "SX42.PHN", [(3000, 5000, "s"), (0, 3000, "h#")])

    with pytest.raises(DataError) as caught:
        read_timit(tmp_path, ["faks0", "fdac1"], ["mdab0", "mwbt0"])
    lines = str(caught.value).splitlines()
    assert "problems; the first: " in lines[0] and str(tmp_path) in lines[0]
    faults = [lines[0].split("the first: ", 1)[1], *lines[1:]]

    def fault_about(path: Path, words: str) -> bool:
        return any(line.startswith(str(path)) and words in line for line in faults)

    assert fault_about(train_spk / "SI1027.WAV", "unreadable audio")
    assert fault_about(train_spk / "SX37.WAV", "truncated")
    assert fault_about(dev_spk / "SI943.WAV", "sample rate 8000 Hz")
    assert fault_about(dev_spk / "SX43.PHN", "missing phone transcription")
    assert fault_about(test_spk / "SI1039.PHN", "'xx' is not one of the 61")
    assert fault_about(test_spk / "SI1039.PHN", "overlapping")
    assert fault_about(test_spk / "SI1039.PHN", "beyond the audio")
    assert fault_about(tmp_path / "TRAIN" / "DR2" / "FAEM0" / "SX42.PHN", "out of order")
    assert len(faults) == 8


def test_split_with_no_speakers_names_the_list(tmp_path):
    build_timit_tree(tmp_path)
    with pytest.raises(DataError) as caught:
        read_timit(tmp_path, ["zzzz0", "yyyy0"], ["mdab0", "mwbt0"])
    message = str(caught.value)
    assert f"no dev utterances: none of the 2 speakers in dev_spk.list found under {tmp_path / 'TEST'}" in message


def test_partially_missing_speakers_are_returned_not_refused(tmp_path):
    build_timit_tree(tmp_path)
    scan = scan_timit(tmp_path, ["faks0", "yyyy0"], ["mdab0", "mwbt0", "zzzz0"], test_list_name="test_spk.list")
    assert scan.missing_speakers == {"train": [], "dev": ["yyyy0"], "test": ["zzzz0"]}
    assert {u.speaker for u in scan.splits["test"]} == {"mdab0", "mwbt0"}
    assert {u.speaker for u in scan.splits["dev"]} == {"faks0"}


def test_missing_train_folder(tmp_path):
    build_timit_tree(tmp_path, layout={"TEST": {"DR1": {"FAKS0": {"SI943": None}, "MDAB0": {"SI1039": None}}}})
    with pytest.raises(DataError, match="no TRAIN folder"):
        read_timit(tmp_path, ["faks0"], ["mdab0"])


def test_validation_is_fast(tmp_path):
    # 300 utterances; a full TIMIT (~4,600 non-SA files) scales linearly from here.
    layout = {
        "TRAIN": {"DR1": {f"MTRN{i}": {f"SX{j}": ["s", "iy"] for j in range(10)} for i in range(20)}},
        "TEST": {"DR1": {f"FDEV{i}": {f"SX{j}": ["s", "iy"] for j in range(10)} for i in range(10)}},
    }
    build_timit_tree(tmp_path, layout=layout, dev_speakers=[f"fdev{i}" for i in range(5)],
                     test_speakers=[f"fdev{i}" for i in range(5, 10)])
    start = time.perf_counter()
    splits = read_timit(tmp_path, [f"fdev{i}" for i in range(5)], [f"fdev{i}" for i in range(5, 10)])
    elapsed = time.perf_counter() - start
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [200, 50, 50]
    assert elapsed < 2.0, f"validating 300 utterances took {elapsed:.2f} s"
    assert np.all([u.num_samples > 0 for u in splits["train"]])
