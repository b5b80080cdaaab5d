"""Tests of units loading, prepared-split loading and batching."""

from __future__ import annotations

import json
from pathlib import Path

import kaldiio
import numpy as np
import pytest

from lstm_exp.data.batching import Example, load_split, load_units, make_batches
from lstm_exp.data.features import compute_cmvn_stats, save_cmvn
from lstm_exp.errors import ConfigError, DataError

UNITS = ["blank", "UNK", "sil", "aa", "b"]


def write_prepared(root: Path, feats: dict[str, np.ndarray], text: dict[str, str],
                   meta: dict | None = None) -> Path:
    """A minimal prepared folder: dev/{feats.ark,feats.scp,text}, cmvn.mat, units, meta.json."""
    split_dir = root / "dev"
    split_dir.mkdir(parents=True)
    with kaldiio.WriteHelper(f"ark,scp:{split_dir / 'feats.ark'},{split_dir / 'feats.scp'}") as writer:
        for utt, matrix in feats.items():
            writer(utt, matrix)
    # relative entries, as the prepare stage writes them
    scp = split_dir / "feats.scp"
    scp.write_text(scp.read_text().replace(f"{split_dir}/", ""))
    (split_dir / "text").write_text("".join(f"{utt} {labels}\n" for utt, labels in text.items()))
    save_cmvn(root / "cmvn.mat", compute_cmvn_stats(feats.values()))
    (root / "units").write_text("".join(f"{u} {i}\n" for i, u in enumerate(UNITS)))
    if meta is not None:
        (root / "meta.json").write_text(json.dumps(meta))
    return root


def random_feats(lengths: dict[str, int], dim: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {utt: rng.normal(2.0, 4.0, size=(n, dim)).astype(np.float32) for utt, n in lengths.items()}


def test_load_units_and_its_errors(tmp_path):
    good = tmp_path / "units"
    good.write_text("blank 0\nUNK 1\nsil 2\n")
    assert load_units(good) == ["blank", "UNK", "sil"]
    bad = tmp_path / "bad_units"
    bad.write_text("blank 0\nUNK 2\nsil 2\nblank 3\n")
    with pytest.raises(DataError) as info:
        load_units(bad)
    lines = str(info.value).splitlines()
    assert "2 problems" in lines[0]
    assert "bad_units:2: expected '<name> 1', got 'UNK 2'" in lines[0]  # the first line names the first fault
    assert "bad_units:4: unit 'blank' already has id 0" in lines[1]
    with pytest.raises(DataError, match="cannot read units file"):
        load_units(tmp_path / "missing")


def test_load_split_applies_cmvn_splice_and_maps_labels(tmp_path):
    feats = random_feats({"u2": 7, "u1": 4})
    root = write_prepared(tmp_path, feats, {"u2": "sil aa b sil", "u1": "b"})
    examples = load_split(root, "dev", UNITS, progress=False)
    assert [e.utt_id for e in examples] == ["u2", "u1"]  # feats.scp order, not sorted
    stacked = np.concatenate(list(feats.values())).astype(np.float64)
    normalised = (feats["u2"] - stacked.mean(axis=0)) / stacked.std(axis=0)
    first = examples[0]
    assert first.feats.shape == (4, 9) and first.feats.dtype == np.float32  # 7 -> 4 kept, even
    np.testing.assert_allclose(first.feats[1], np.concatenate(normalised[[2, 3, 4]]), atol=1e-5)
    np.testing.assert_allclose(first.feats[3], np.concatenate(normalised[[6, 6, 6]]), atol=1e-5)
    np.testing.assert_array_equal(first.labels, [2, 3, 4, 2])
    assert first.labels.dtype == np.int64
    assert examples[1].feats.shape == (2, 9)


def test_load_split_uses_meta_splice_settings(tmp_path):
    root = write_prepared(tmp_path, random_feats({"u": 7}), {"u": "aa"},
                          meta={"fbank": {"right_context": 0, "frame_skip": 3}})
    (example,) = load_split(root, "dev", UNITS, progress=False)
    assert example.feats.shape == (4, 3)  # rows 0, 3, 6 then one zero row


def test_load_split_reports_unknown_labels_and_missing_utts(tmp_path):
    root = write_prepared(tmp_path, random_feats({"u1": 5, "u2": 5}), {"u1": "aa zz", "u3": "b"})
    with pytest.raises(DataError, match=r"utterance u1: label 'zz' is not in the units file"):
        load_split(root, "dev", UNITS, progress=False)
    (root / "dev" / "text").write_text("u1 aa\nu3 b\n")
    with pytest.raises(DataError) as info:
        load_split(root, "dev", UNITS, progress=False)
    message = str(info.value)
    assert "no labels for utterance u2" in message and "no features for utterance u3" in message
    with pytest.raises(DataError, match="'test' is not a prepared split"):
        load_split(root, "test", UNITS, progress=False)


def make_examples(lengths: list[int], dim: int = 2) -> list[Example]:
    return [Example(f"utt{i}", np.full((n, dim), i + 1, dtype=np.float32), np.array([i], dtype=np.int64))
            for i, n in enumerate(lengths)]


def test_make_batches_pads_to_longest_in_order():
    batches = list(make_batches(make_examples([3, 5, 2, 4, 1]), batch_size=2))
    assert [b.ids for b in batches] == [["utt0", "utt1"], ["utt2", "utt3"], ["utt4"]]
    assert [b.x.shape for b in batches] == [(2, 5, 2), (2, 4, 2), (1, 1, 2)]
    first = batches[0]
    assert first.x.dtype == np.float32 and first.lengths.dtype == np.int64
    np.testing.assert_array_equal(first.lengths, [3, 5])
    np.testing.assert_array_equal(first.x[0, :3], 1.0)
    np.testing.assert_array_equal(first.x[0, 3:], 0.0)  # zero padding
    np.testing.assert_array_equal(first.x[1], 2.0)
    assert [int(lab[0]) for lab in first.labels] == [0, 1]


def test_make_batches_fixed_pad_sort_and_drop_last():
    batches = list(make_batches(make_examples([3, 5, 2, 4, 1]), batch_size=2, pad_to=6,
                                sort_by_length=True, drop_last=True))
    assert [b.ids for b in batches] == [["utt1", "utt3"], ["utt0", "utt2"]]
    assert all(b.x.shape == (2, 6, 2) for b in batches)
    np.testing.assert_array_equal(batches[1].lengths, [3, 2])
    np.testing.assert_array_equal(batches[1].x[1, 2:], 0.0)


def test_make_batches_too_long_and_bad_arguments():
    examples = make_examples([3, 8, 2, 9])
    with pytest.raises(DataError) as info:
        make_batches(examples, batch_size=2, pad_to=5)  # raised on the call, before iterating
    lines = str(info.value).splitlines()
    assert "2 utterance(s) longer than pad_to=5" in lines[0] and "pad_to=null" in lines[0]
    assert ">= 9" in lines[0]
    assert lines[1:] == ["utt1: 8 frames > pad_to=5", "utt3: 9 frames > pad_to=5"]
    with pytest.raises(ConfigError, match="batch_size=0"):
        make_batches(examples, batch_size=0)
    with pytest.raises(ConfigError, match="pad_to=-1"):
        make_batches(examples, batch_size=1, pad_to=-1)


def test_plan_batches_modes():
    from lstm_exp.data.batching import plan_batches

    examples = make_examples([3, 5, 2, 4, 1])
    fixed = plan_batches(examples, 2, "fixed", pad_to=6)
    assert [b.ids for b in fixed] == [["utt0", "utt1"], ["utt2", "utt3"], ["utt4"]]
    assert all(b.x.shape[1] == 6 for b in fixed)
    assert all(b.x.shape[1] == 390 for b in plan_batches(examples, 2, "fixed"))  # the recipe's default
    longest = plan_batches(examples, 2, "longest")
    assert [b.x.shape[1] for b in longest] == [5, 4, 1]
    ordered = plan_batches(examples, 2, "sorted")
    assert [b.ids for b in ordered] == [["utt1", "utt3"], ["utt0", "utt2"], ["utt4"]]
    assert [b.x.shape[1] for b in ordered] == [5, 3, 1]
    with pytest.raises(ConfigError, match="infer.batching='bucket'"):
        plan_batches(examples, 2, "bucket")
