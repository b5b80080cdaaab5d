"""The recipe's .bin batches: exact bytes, round trip, info file, and outputs back per utterance."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from lstm_exp.backends.acl.inputs import (
    read_bin_batches,
    read_inference_outputs,
    read_info,
    write_bin_batches,
)
from lstm_exp.errors import DataError


def make_batches(sizes=(3, 2), frames=(390, 40), seed=0):
    rng = np.random.default_rng(seed)
    batches = []
    for n, (size, t) in enumerate(zip(sizes, frames)):
        lengths = rng.integers(1, t // 2 + 1, size=size) * 2
        x = rng.standard_normal((size, t, 243)).astype(np.float32)
        batches.append(SimpleNamespace(ids=[f"spk{n}_utt{i}" for i in range(size)], x=x, lengths=lengths))
    return batches


def test_round_trip_is_byte_exact(tmp_path):
    batches = make_batches()
    info = write_bin_batches(iter(batches), tmp_path)
    assert info == tmp_path / "lstm.info"
    assert info.read_text().splitlines() == ["0 0.bin 3,390,243", "1 1.bin 2,40,243"]
    for n, batch in enumerate(batches):
        raw = (tmp_path / f"{n}.bin").read_bytes()
        assert len(raw) == math.prod(batch.x.shape) * 4
        assert raw == batch.x.astype("<f4").tobytes(order="C")
    back = list(read_bin_batches(info))
    assert len(back) == 2
    for (ids, x, lengths), batch in zip(back, batches):
        assert ids == batch.ids
        assert x.dtype == np.float32 and np.array_equal(x, batch.x)
        assert lengths.dtype == np.int64 and lengths.tolist() == batch.lengths.tolist()


def test_non_float32_input_is_written_as_float32(tmp_path):
    batch = SimpleNamespace(ids=["a"], x=np.ones((1, 4, 243), dtype=np.float64), lengths=np.array([4]))
    info = write_bin_batches([batch], tmp_path)
    assert (tmp_path / "0.bin").stat().st_size == 4 * 243 * 4
    (_, x, _), = read_bin_batches(info)
    assert np.array_equal(x, np.ones((1, 4, 243), dtype=np.float32))


def test_inconsistent_batch_is_refused(tmp_path):
    with pytest.raises(DataError, match="do not agree"):
        write_bin_batches([SimpleNamespace(ids=["a", "b"], x=np.zeros((1, 4, 243)), lengths=[4])], tmp_path)
    with pytest.raises(DataError, match="lengths"):
        write_bin_batches([SimpleNamespace(ids=["a"], x=np.zeros((1, 4, 243)), lengths=[6])], tmp_path)
    with pytest.raises(DataError, match="no batches"):
        write_bin_batches([], tmp_path)


def test_truncated_bin_names_the_file(tmp_path):
    info = write_bin_batches(make_batches(), tmp_path)
    (tmp_path / "1.bin").write_bytes((tmp_path / "1.bin").read_bytes()[:-4])
    with pytest.raises(DataError, match=r"1\.bin has 77756 bytes"):
        list(read_bin_batches(info))


def test_malformed_info_lists_every_bad_line(tmp_path):
    info = tmp_path / "lstm.info"
    info.write_text("0 0.bin 3,390,243\n1 1.bin 3,390\nx 2.bin 1,2,3\n# comment\n3 3.bin\n")
    with pytest.raises(DataError) as caught:
        read_info(info)
    lines = str(caught.value).splitlines()
    assert "3 problems; the first: " in lines[0]
    faults = [lines[0].split("the first: ", 1)[1], *lines[1:]]
    assert [line.split(":")[1] for line in faults] == ["2", "3", "5"]


def test_outputs_back_per_utterance_trimmed_to_ceil_half(tmp_path):
    batches = make_batches()
    info = write_bin_batches(batches, tmp_path / "bins")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    saved = {}
    for n, batch in enumerate(batches):
        t_out = batch.x.shape[1] // 2
        log_probs = np.random.default_rng(n).standard_normal((t_out, len(batch.ids), 41)).astype(np.float32)
        name = "0.npy" if n == 0 else "1_0.npy"  # pyacl_infer style and ais_bench style
        np.save(out_dir / name, log_probs)
        saved[n] = log_probs
    got = read_inference_outputs(out_dir, info)
    assert len(got) == 5
    for n, batch in enumerate(batches):
        for row, (utt, length) in enumerate(zip(batch.ids, batch.lengths)):
            assert got[utt].shape == (math.ceil(length / 2), 41)
            assert np.array_equal(got[utt], saved[n][: math.ceil(length / 2), row])
    custom = read_inference_outputs(out_dir, info, out_lengths=lambda length: 3)
    assert all(v.shape == (3, 41) for v in custom.values())


def test_missing_output_and_odd_stride(tmp_path):
    batches = make_batches(sizes=(2,), frames=(40,))
    info = write_bin_batches(batches, tmp_path)
    with pytest.raises(DataError, match=r"0\.npy for 0\.bin does not exist"):
        read_inference_outputs(tmp_path, info)
    np.save(tmp_path / "0.npy", np.zeros((17, 2, 41), dtype=np.float32))
    with pytest.raises(DataError, match="not an integer stride"):
        read_inference_outputs(tmp_path, info)


def test_recipe_info_file_is_read(tmp_path):
    """LSTM_get_info.py writes '<i> ./lstm_bin/inputs_<i>.bin (<B>,390,243)'."""
    info = tmp_path / "lstm.info"
    info.write_text("0 ./lstm_bin/inputs_0.bin (16,390,243)\n1 ./lstm_bin/inputs_1.bin (16,390,243)\n")
    entries = read_info(info)
    assert [(e.index, e.shape) for e in entries] == [(0, (16, 390, 243)), (1, (16, 390, 243))]
    assert entries[1].bin_path == tmp_path / "lstm_bin" / "inputs_1.bin"
    info.write_text("0 ./lstm_bin/inputs_0.bin (16,390)\n")
    with pytest.raises(DataError, match=r"shape \(16,390\) is not three positive sizes"):
        read_info(info)


def test_pyacl_infer_output_names_are_read(tmp_path):
    """pyacl_infer.py saves '<index>.<output index>.npy' (0.0.npy), what the recipe's postprocess reads."""
    batches = make_batches(sizes=(2, 2), frames=(40, 40))
    info = write_bin_batches(batches, tmp_path / "bins")
    out_dir = tmp_path / "infer_res"
    out_dir.mkdir()
    saved = [np.random.default_rng(n).standard_normal((20, 2, 41)).astype(np.float32) for n in range(2)]
    for n, log_probs in enumerate(saved):
        np.save(out_dir / f"{n}.0.npy", log_probs)
    got = read_inference_outputs(out_dir, info)
    first = batches[0]
    assert np.array_equal(got[first.ids[0]], saved[0][: math.ceil(first.lengths[0] / 2), 0])
    (out_dir / "1.0.npy").unlink()
    with pytest.raises(DataError, match=r"1\.npy for 1\.bin does not exist \(nor 1_0\.npy, 1\.0\.npy\)"):
        read_inference_outputs(out_dir, info)
