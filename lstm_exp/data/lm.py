"""Phone n-gram language model (bigram by default) with interpolated Witten-Bell smoothing.

The recipe trains its phone bigram with IRSTLM, whose default smoothing is Witten-Bell.  This
module writes the textbook interpolated Witten-Bell model (Chen & Goodman 1998, eq. 11) as an
ARPA file; IRSTLM's own implementation differs in details (e.g. its OOV mass from a
10^7-word "dictionary upper bound"), so probabilities are close to, not equal to, its output.

For a history ``h`` with ``c(h)`` tokens seen after it and ``T(h) = N1+(h .)`` distinct
successors::

    P(w | h) = (c(h w) + T(h) * P(w | h')) / (c(h) + T(h))        h' = h without its first word
    P(w)     = (c(w) + T / |V|) / (N + T)                         interpolated with uniform

where the unigram level uses all ``N`` predicted tokens, ``T`` distinct types, and the
vocabulary ``V`` = training words + ``</s>`` + ``<unk>``.  Each sentence is ``<s> w1 .. wn
</s>``; ``<s>`` is never predicted (log10 prob -99 by ARPA convention).  In ARPA back-off
form the seen n-grams carry the interpolated probability and each history carries the
back-off weight ``T(h) / (c(h) + T(h))``, so every conditional distribution sums to one.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

from lstm_exp.errors import ConfigError, DataError, fault_message

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
LOG10_ZERO = -99.0

NGram = Tuple[str, ...]


def _count_ngrams(sentences: Iterable[Sequence[str]], order: int) -> List[Counter]:
    """``counts[k][ngram]`` for k = 1..order over ``<s> .. </s>`` padded sentences."""
    counts: List[Counter] = [Counter() for _ in range(order + 1)]
    faults: List[str] = []
    num_sentences = 0
    for index, sentence in enumerate(sentences):
        num_sentences += 1
        tokens = [str(token) for token in sentence]
        bad = [t for t in tokens if not t or t in (BOS, EOS) or any(c.isspace() for c in t)]
        if bad:
            faults.append(f"sentence {index}: tokens {bad!r} are empty, contain whitespace or are "
                          f"the reserved {BOS} / {EOS}; remove them from the transcripts")
            continue
        padded = [BOS, *tokens, EOS]
        for end in range(1, len(padded)):  # position 0 (<s>) is never predicted
            for k in range(1, min(order, end + 1) + 1):
                counts[k][tuple(padded[end - k + 1:end + 1])] += 1
    if faults:
        raise DataError(fault_message("LM training text", faults))
    if num_sentences == 0:
        raise DataError("no sentences to train the phone LM on: the train transcripts are empty")
    return counts


def _history_stats(counts: Counter) -> Dict[NGram, Tuple[int, int]]:
    """history -> (c(h), T(h)) for the n-grams of one order."""
    totals: Counter = Counter()
    types: Counter = Counter()
    for ngram, count in counts.items():
        totals[ngram[:-1]] += count
        types[ngram[:-1]] += 1
    return {history: (totals[history], types[history]) for history in totals}


def train_bigram_arpa(sentences: Iterable[Sequence[str]], path: Path, order: int = 2) -> None:
    """Train an interpolated Witten-Bell n-gram on token sequences and write it as ARPA."""
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ConfigError(f"LM order {order!r}: write a positive integer (2 for the recipe's bigram)")
    counts = _count_ngrams(sentences, order)
    history_stats = [{}] + [_history_stats(counts[k]) for k in range(1, order + 1)]
    vocabulary = sorted(set(ngram[0] for ngram in counts[1]) | {EOS, UNK})
    total_tokens, total_types = history_stats[1][()]

    probs: List[Dict[NGram, float]] = [{} for _ in range(order + 1)]
    probs[1] = {(word,): (counts[1][(word,)] + total_types / len(vocabulary))
                / (total_tokens + total_types) for word in vocabulary}
    for k in range(2, order + 1):
        for ngram, count in counts[k].items():
            seen, types = history_stats[k][ngram[:-1]]
            probs[k][ngram] = (count + types * probs[k - 1][ngram[1:]]) / (seen + types)

    def backoff(ngram: NGram) -> float | None:
        """log10 back-off weight of ``ngram`` as a history of the next order, if it is one."""
        if len(ngram) >= order or ngram not in history_stats[len(ngram) + 1]:
            return None
        seen, types = history_stats[len(ngram) + 1][ngram]
        return math.log10(types / (seen + types))

    sections: List[List[str]] = []
    unigram_lines = [_arpa_line(LOG10_ZERO, (BOS,), backoff((BOS,)))]
    unigram_lines += [_arpa_line(math.log10(probs[1][(w,)]), (w,), backoff((w,))) for w in vocabulary]
    sections.append(unigram_lines)
    for k in range(2, order + 1):
        sections.append([_arpa_line(math.log10(p), ngram, backoff(ngram))
                         for ngram, p in sorted(probs[k].items())])

    lines = ["", "\\data\\"]
    lines += [f"ngram {k}={len(section)}" for k, section in enumerate(sections, start=1)]
    for k, section in enumerate(sections, start=1):
        lines += ["", f"\\{k}-grams:", *section]
    lines += ["", "\\end\\", ""]
    Path(path).write_text("\n".join(lines), encoding="utf-8")


def _arpa_line(log10_prob: float, ngram: NGram, log10_backoff: float | None) -> str:
    line = f"{log10_prob:.7f}\t{' '.join(ngram)}"
    return line if log10_backoff is None else f"{line}\t{log10_backoff:.7f}"
