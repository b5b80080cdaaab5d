"""Greedy (best-path) CTC decoding on hand-made posteriors."""
import numpy as np
import pytest

from lstm_exp.decode import GreedyDecoder
from lstm_exp.errors import DataError

UNITS = ["blank", "UNK", "aa", "b", "d"]
ID = {name: i for i, name in enumerate(UNITS)}


def peaky(path, top=0.9, num_classes=len(UNITS)):
    """Log-probs [T, C] where class path[t] holds `top` of the mass at frame t."""
    probs = np.full((len(path), num_classes), (1 - top) / (num_classes - 1))
    for t, name in enumerate(path):
        probs[t, ID[name]] = top
    return np.log(probs).astype(np.float32)


def batch_of(*utterances):
    """Stack [T_b, C] arrays into a time-major [T, B, C] batch padded with blank frames."""
    frames = max(u.shape[0] for u in utterances)
    out = np.tile(peaky(["blank"]), (frames, len(utterances), 1))
    for b, u in enumerate(utterances):
        out[: u.shape[0], b] = u
    return out, np.array([u.shape[0] for u in utterances], dtype=np.int64)


def reference_collapse(best_ids, blank=0):
    out, previous = [], None
    for k in best_ids:
        if k != blank and k != previous:
            out.append(k)
        previous = k
    return out


def test_repeats_merge_unless_separated_by_blank():
    x, lengths = batch_of(peaky(["aa", "aa", "blank", "aa", "b", "b", "blank", "blank", "b"]))
    assert GreedyDecoder(UNITS).decode(x, lengths) == [["aa", "aa", "b", "b"]]


def test_blank_only_gives_empty_hypothesis():
    x, lengths = batch_of(peaky(["blank"] * 6))
    assert GreedyDecoder(UNITS).decode(x, lengths) == [[]]


def test_unk_highest_is_replaced_by_next_best_class():
    frames = peaky(["aa", "blank", "blank"])
    frames[1] = np.log(np.array([0.05, 0.6, 0.05, 0.25, 0.05]))  # UNK first, b second
    x, lengths = batch_of(frames)
    assert GreedyDecoder(UNITS).decode(x, lengths) == [["aa", "b"]]


def test_frames_beyond_length_are_ignored_and_batch_order_kept():
    long = peaky(["aa", "blank", "d", "d", "blank"])
    short = peaky(["b", "blank", "aa", "d", "d"])  # only the first 2 frames count
    x, _ = batch_of(long, short)
    lengths = np.array([5, 2])
    assert GreedyDecoder(UNITS).decode(x, lengths) == [["aa", "d"], ["b"]]
    assert GreedyDecoder(UNITS).decode(x, np.array([0, 5])) == [[], ["b", "aa", "d"]]


def test_matches_a_frame_loop_on_random_batches():
    rng = np.random.default_rng(7)
    x = np.log(rng.dirichlet(np.full(len(UNITS), 0.3), size=(40, 6))).astype(np.float32)
    lengths = rng.integers(0, 41, size=6)
    masked = x.copy()
    masked[..., ID["UNK"]] = -np.inf
    expected = [
        [UNITS[k] for k in reference_collapse(masked[: lengths[b], b].argmax(axis=1).tolist())]
        for b in range(6)
    ]
    assert GreedyDecoder(UNITS).decode(x, lengths) == expected
    assert all("UNK" not in hyp for hyp in expected)


def test_zero_frames_and_empty_batch():
    decoder = GreedyDecoder(UNITS)
    assert decoder.decode(np.zeros((0, 2, len(UNITS)), np.float32), np.array([0, 0])) == [[], []]
    assert decoder.decode(np.zeros((5, 0, len(UNITS)), np.float32), np.zeros(0, np.int64)) == []


@pytest.mark.parametrize(
    "shape, lengths, message",
    [
        ((4, 2, 7), [4, 4], "7 classes"),
        ((4, 2, 5), [4, 5], "outside 0..4"),
        ((4, 2, 5), [4], "one length per utterance"),
        ((4, 5), [4], "time-major"),
    ],
)
def test_bad_batches_raise_data_error(shape, lengths, message):
    with pytest.raises(DataError, match=message):
        GreedyDecoder(UNITS).decode(np.zeros(shape, np.float32), np.array(lengths))


def test_bad_unit_lists_are_reported_together():
    with pytest.raises(DataError) as info:
        GreedyDecoder(["UNK", "aa", "aa", "b c"])
    text = str(info.value)
    assert "units[0]" in text and "appears twice" in text and "whitespace" in text
