"""Tests of the interpolated Witten-Bell ARPA LM: normalisation, KenLM loading and scoring."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
from flashlight.lib.text.decoder.kenlm import KenLM
from flashlight.lib.text.dictionary import Dictionary

from lstm_exp.data.lm import train_bigram_arpa
from lstm_exp.errors import ConfigError, DataError

TRAIN = [
    "sil dh ax k ae t s ae t sil".split(),
    "sil ax d ao g s ae t sil".split(),
    "sil k ae t sil".split(),
    "sil dh ax d ao g r ae n sil".split(),
    [],  # an empty transcript is still "<s> </s>"
]
HELD_OUT = "sil dh ax k ae t r ae n zz sil".split()  # "zz" is out of vocabulary


def read_arpa(path: Path) -> dict[tuple[str, ...], tuple[float, float | None]]:
    """ngram -> (log10 prob, log10 backoff or None) of an ARPA file; checks the header counts."""
    entries: dict[tuple[str, ...], tuple[float, float | None]] = {}
    declared: dict[int, int] = {}
    found: Counter = Counter()
    order = 0
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line in ("\\data\\", "\\end\\"):
            continue
        if line.startswith("ngram "):
            k, n = line[len("ngram "):].split("=")
            declared[int(k)] = int(n)
        elif line.endswith("-grams:"):
            order = int(line[1:].split("-")[0])
        else:
            fields = line.split("\t")
            words = tuple(fields[1].split())
            assert len(words) == order
            entries[words] = (float(fields[0]), float(fields[2]) if len(fields) > 2 else None)
            found[order] += 1
    assert dict(found) == declared
    return entries


def arpa_log10(entries, history: tuple[str, ...], word: str) -> float:
    """Standard ARPA back-off: P(w|h) = p(h w) if listed, else bo(h) * P(w|h[1:])."""
    if (*history, word) in entries:
        return entries[(*history, word)][0]
    if not history:
        return entries[("<unk>",)][0]
    backoff = entries.get(history, (0.0, None))[1] or 0.0
    return backoff + arpa_log10(entries, history[1:], word)


def witten_bell_log10(sentences, history: tuple[str, ...], word: str) -> float:
    """Interpolated Witten-Bell computed straight from the counts (independent of lm.py)."""
    padded = [["<s>", *s, "</s>"] for s in sentences]
    vocab = {w for s in padded for w in s[1:]} | {"<unk>"}
    word = word if word in vocab else "<unk>"

    def prob(h: tuple[str, ...]) -> float:
        followers = Counter()
        for s in padded:
            for i in range(1, len(s)):
                if tuple(s[max(0, i - len(h)):i]) == h and i >= len(h):
                    followers[s[i]] += 1
        seen, types = sum(followers.values()), len(followers)
        lower = 1.0 / len(vocab) if not h else prob(h[1:])
        if seen == 0:
            return lower
        return (followers[word] + types * lower) / (seen + types)

    return math.log10(prob(history))


@pytest.mark.parametrize("order", [1, 2, 3])
def test_every_distribution_sums_to_one(tmp_path, order):
    path = tmp_path / "lm.arpa"
    train_bigram_arpa(TRAIN, path, order=order)
    entries = read_arpa(path)
    vocab = [ngram[0] for ngram in entries if len(ngram) == 1 and ngram[0] != "<s>"]
    assert {"</s>", "<unk>"} <= set(vocab)
    assert entries[("<s>",)][0] == -99.0
    histories = [()] + [ngram for ngram in entries if len(ngram) < order and ngram != ("</s>",)]
    assert len(histories) > 1 or order == 1
    for history in histories:
        total = sum(10 ** arpa_log10(entries, history, w) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-4), history


def test_arpa_matches_witten_bell_from_counts(tmp_path):
    path = tmp_path / "lm.arpa"
    train_bigram_arpa(TRAIN, path)
    entries = read_arpa(path)
    for history, word in [((), "ae"), ((), "<unk>"), (("ae",), "t"), (("ae",), "dh"),
                          (("<s>",), "sil"), (("<s>",), "</s>"), (("g",), "r")]:
        assert arpa_log10(entries, history, word) == pytest.approx(
            witten_bell_log10(TRAIN, history, word), abs=1e-6)
    # a seen bigram is more likely than an unseen one, which keeps some mass
    assert arpa_log10(entries, ("ae",), "t") > arpa_log10(entries, ("ae",), "dh") > -3


def test_kenlm_loads_and_scores_like_our_computation(tmp_path):
    path = tmp_path / "lm.arpa"
    train_bigram_arpa(TRAIN, path)
    tokens = sorted({w for s in TRAIN for w in s} | {"zz"})
    dictionary = Dictionary(tokens)
    lm = KenLM(str(path), dictionary)
    state = lm.start(False)  # begin after <s>
    kenlm_total = 0.0
    for token in HELD_OUT:
        state, score = lm.score(state, dictionary.get_index(token))
        kenlm_total += score
    state, score = lm.finish(state)
    kenlm_total += score

    ours = 0.0
    history = "<s>"
    for token in [*HELD_OUT, "</s>"]:
        # bigram: OOV words score as <unk> and leave an empty context behind (as KenLM does)
        ours += witten_bell_log10(TRAIN, (history,) if history else (), token)
        history = token if token in {w for s in TRAIN for w in s} else ""
    assert -40 < ours < -5  # 12 scored tokens, none certain
    assert kenlm_total == pytest.approx(ours, abs=1e-4)


def test_bad_input_is_reported(tmp_path):
    with pytest.raises(DataError) as info:
        train_bigram_arpa([["a", "</s>"], ["ok"], ["b c"]], tmp_path / "lm.arpa")
    lines = str(info.value).splitlines()
    assert "2 problems; the first: sentence 0" in lines[0] and lines[1].startswith("sentence 2")
    with pytest.raises(DataError, match="no sentences"):
        train_bigram_arpa([], tmp_path / "lm.arpa")
    with pytest.raises(ConfigError, match="LM order 0"):
        train_bigram_arpa(TRAIN, tmp_path / "lm.arpa", order=0)
