"""eSpeak NG (en-us) phoneme events -> TIMIT-style .PHN / .WRD alignments.

eSpeak reports each phoneme with its exact start sample.  This module turns such a stream into
TIMIT's 61-label transcription:

* mnemonics map to TIMIT labels (:data:`MNEMONIC_TO_TIMIT`); a few diphthong-plus-r/schwa
  mnemonics become two labels that split the duration 60/40;
* stress marks (``'`` and ``,``) are dropped; ``;`` (a linking ``j``) merges into the phone
  before it;
* phones that eSpeak reports with zero length get an equal share of the segment before them;
* stop closures, which eSpeak reports inside the preceding phone, become their own segment
  (``pcl tcl kcl bcl dcl gcl``; ``tcl`` before ``ch``, ``dcl`` before ``jh``) covering the quiet
  stretch at the end of that phone;
* silence at both ends is ``h#``, pauses inside are ``pau``.

All sample positions here are in the synthesizer's own rate; the caller rescales them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

#: eSpeak en-us mnemonic (stress marks removed) -> one or two TIMIT labels.
MNEMONIC_TO_TIMIT: Dict[str, Tuple[str, ...]] = {
    "p": ("p",), "b": ("b",), "t": ("t",), "d": ("d",), "k": ("k",), "g": ("g",),
    "t2": ("t",), "t#": ("dx",), "tS": ("ch",), "dZ": ("jh",),
    "f": ("f",), "v": ("v",), "s": ("s",), "z": ("z",), "h": ("hh",),
    "T": ("th",), "D": ("dh",), "S": ("sh",), "Z": ("zh",),
    "m": ("m",), "n": ("n",), "N": ("ng",), "n-": ("en",), "@L": ("el",), "l": ("l",),
    "r": ("r",), "r-": ("r",), "j": ("y",), "w": ("w",),
    "i:": ("iy",), "i": ("iy",), "I": ("ih",), "I2": ("ih",), "I#": ("ix",), "E": ("eh",),
    "a": ("ae",), "aa": ("ae",), "V": ("ah",), "@": ("ax",), "@2": ("ax",), "@-": ("ax",),
    "a#": ("ax",),
    "3": ("axr",), "3:": ("er",), "U": ("uh",), "u:": ("uw",), "u": ("uw",),
    "eI": ("ey",), "aI": ("ay",), "OI": ("oy",), "aU": ("aw",), "oU": ("ow",),
    "0": ("aa",), "A:": ("aa",), "O:": ("ao",), "O2": ("ao",),
    "O@": ("ao", "r"), "o@": ("ao", "r"), "A@": ("aa", "r"), "e@": ("eh", "r"),
    "U@": ("uh", "r"), "i@3": ("ih", "r"), "i@": ("iy", "ax"), "aI@": ("ay", "ax"),
    "aI3": ("ay", "axr"), "aU@": ("aw", "axr"),
    "?": ("q",),
    "_:": ("pau",), "_": ("pau",), "_!": ("pau",), "_|": ("pau",),
}

#: Mnemonics that merge into the phone before them.
MERGE_INTO_PREVIOUS = frozenset({";"})

#: Stop (or affricate) -> the closure label TIMIT puts before it.
CLOSURE_OF: Dict[str, str] = {
    "p": "pcl", "t": "tcl", "k": "kcl", "b": "bcl", "d": "dcl", "g": "gcl",
    "ch": "tcl", "jh": "dcl",
}

SILENCE_LABELS = frozenset({"h#", "pau"})
_STRESS = re.compile(r"^[',]+")


class UnknownMnemonicError(ValueError):
    """eSpeak produced a phoneme this table does not map (a bug in the table, not the user)."""


@dataclass
class Segment:
    """A labelled span ``[start, end)`` in samples; ``source`` is the eSpeak phone index."""

    start: int
    end: int
    label: str
    source: int


def strip_stress(mnemonic: str) -> str:
    """Drop eSpeak's stress prefix (``'`` primary, ``,`` secondary)."""
    return _STRESS.sub("", mnemonic)


def map_mnemonic(mnemonic: str) -> Tuple[str, ...]:
    """TIMIT label(s) of one eSpeak mnemonic (stress marks allowed)."""
    bare = strip_stress(mnemonic)
    try:
        return MNEMONIC_TO_TIMIT[bare]
    except KeyError:
        raise UnknownMnemonicError(f"eSpeak phoneme {mnemonic!r} has no TIMIT label") from None


def _raw_segments(starts: Sequence[int], mnemonics: Sequence[str], end: int) -> List[Segment]:
    """One segment per eSpeak phone (before splitting/closures); ``;`` merged backwards."""
    segs: List[Segment] = []
    for i, (start, mnem) in enumerate(zip(starts, mnemonics)):
        bare = strip_stress(mnem)
        if bare in MERGE_INTO_PREVIOUS and segs:
            continue
        labels = map_mnemonic(mnem)
        segs.append(Segment(start, -1, "+".join(labels), i))
    for cur, nxt in zip(segs, segs[1:]):
        cur.end = nxt.start
    if segs:
        segs[-1].end = end
    return segs


def _share_zero_length(segs: List[Segment]) -> List[Segment]:
    """Give each run of zero-length segments an equal share of the segment before the run."""
    out: List[Segment] = []
    i = 0
    while i < len(segs):
        seg = segs[i]
        j = i + 1
        while j < len(segs) and segs[j].end - segs[j].start <= 0:
            j += 1
        group = segs[i:j]
        if len(group) > 1:
            length = seg.end - seg.start
            bounds = [seg.start + (length * k) // len(group) for k in range(len(group) + 1)]
            for k, g in enumerate(group):
                g.start, g.end = bounds[k], bounds[k + 1]
        out.extend(group)
        i = j
    return out


def _split_two_label(segs: List[Segment]) -> List[Segment]:
    """Expand ``a+b`` segments into two (60/40); drop a split-off ``r`` when an r follows."""
    out: List[Segment] = []
    for idx, seg in enumerate(segs):
        labels = seg.label.split("+")
        if len(labels) == 1:
            out.append(seg)
            continue
        following = segs[idx + 1].label.split("+")[0] if idx + 1 < len(segs) else None
        if labels[1] == "r" and following == "r":
            out.append(Segment(seg.start, seg.end, labels[0], seg.source))
            continue
        mid = seg.start + ((seg.end - seg.start) * 3) // 5
        out.append(Segment(seg.start, mid, labels[0], seg.source))
        out.append(Segment(mid, seg.end, labels[1], seg.source))
    return out


def _quiet_tail(frame_quiet: np.ndarray, hop: int, start: int, end: int) -> int:
    """Length in samples of the quiet run that ends ``[start, end)`` (whole frames)."""
    first_frame = -(-start // hop)  # frames fully inside the segment
    k = end // hop
    n = 0
    while k - 1 >= first_frame and frame_quiet[k - 1]:
        k -= 1
        n += 1
    if n == 0:
        return 0
    return end - k * hop


def _insert_closures(
    segs: List[Segment], samples: np.ndarray, sample_rate: int
) -> List[Segment]:
    """Cut a closure segment off the quiet end of the phone before each stop."""
    hop = max(1, sample_rate // 1000)  # 1 ms frames
    x = samples.astype(np.float64)
    n_frames = len(x) // hop
    rms = np.sqrt(np.mean(x[: n_frames * hop].reshape(n_frames, hop) ** 2, axis=1))
    loud = np.percentile(rms, 99) if n_frames else 0.0
    quiet = rms <= max(1.0, 0.02 * loud)
    min_closure = int(0.005 * sample_rate)
    max_closure = int(0.10 * sample_rate)
    max_after_pause = int(0.05 * sample_rate)
    min_keep = int(0.015 * sample_rate)
    out: List[Segment] = []
    for seg in segs:
        closure = CLOSURE_OF.get(seg.label)
        prev = out[-1] if out else None
        if closure is not None and prev is not None and prev.label not in CLOSURE_OF.values():
            prev_len = prev.end - prev.start
            run = _quiet_tail(quiet, hop, prev.start, min(prev.end, n_frames * hop))
            if prev.end > n_frames * hop:
                run = 0
            if prev.label in SILENCE_LABELS:
                length = min(run, max_after_pause, prev_len // 2)
            else:
                length = min(run, max_closure, prev_len - max(min_keep, (3 * prev_len) // 10))
            if length >= min_closure:
                prev.end -= length
                out.append(Segment(prev.end, prev.end + length, closure, seg.source))
        out.append(seg)
    return out


def _mark_edges(segs: List[Segment]) -> List[Segment]:
    """Silence at both ends becomes one ``h#`` each; pauses inside stay ``pau``."""
    out: List[Segment] = []
    for seg in segs:
        if out and seg.label in SILENCE_LABELS and out[-1].label in SILENCE_LABELS:
            out[-1].end = seg.end  # merge adjacent pauses
            continue
        out.append(seg)
    if out and out[0].label in SILENCE_LABELS:
        out[0].label = "h#"
    if out and out[-1].label in SILENCE_LABELS:
        out[-1].label = "h#"
    return out


def align_phones(
    starts: Sequence[int],
    mnemonics: Sequence[str],
    samples: np.ndarray,
    sample_rate: int,
) -> List[Segment]:
    """TIMIT segments covering ``samples`` from eSpeak phoneme events.

    ``starts`` must begin at 0 with a silence (the caller pads leading silence and puts a
    ``_`` event at 0) and the audio must end in silence, so the result starts and ends with
    ``h#``.  Segments are contiguous, cover ``[0, len(samples))`` and none is empty.
    """
    segs = _raw_segments(starts, mnemonics, len(samples))
    segs = _share_zero_length(segs)
    segs = _split_two_label(segs)
    segs = [s for s in segs if s.end > s.start]
    segs = _insert_closures(segs, samples, sample_rate)
    segs = _mark_edges(segs)
    if not segs or segs[0].label != "h#" or segs[-1].label != "h#":
        raise ValueError("utterance does not start and end with silence")
    return segs


def rescale(segs: List[Segment], ratio_num: int, ratio_den: int, total: int) -> List[Segment]:
    """Move boundaries to another sample rate (x num/den), keep contiguity, end at ``total``.

    Segments that would become empty are merged into their left neighbour.
    """
    out: List[Segment] = []
    for seg in segs:
        start = (seg.start * ratio_num + ratio_den // 2) // ratio_den
        if out and start <= out[-1].start:
            continue  # collapsed to nothing: the neighbour keeps the span
        if out:
            out[-1].end = start
        out.append(Segment(start, -1, seg.label, seg.source))
    out[0].start = 0
    out[-1].end = total
    return out


def word_spans(
    text: str,
    word_positions: Sequence[Tuple[int, int]],
    phone_sources: Sequence[Tuple[int, str]],
    segs: Sequence[Segment],
    phoneme_counts: "WordPhonemeCounter",
) -> List[Tuple[int, int, str]]:
    """Word boundaries ``(start, end, word)`` from WORD events, on the final segments.

    ``word_positions`` are the WORD events as ``(1-based char position, start sample)``;
    ``phone_sources`` the eSpeak phones as ``(start sample, bare mnemonic)`` indexed like
    ``Segment.source``.  A WORD event that covers several written words ("of the") is split
    at phone boundaries in proportion to each word's own phoneme count.
    """
    events = sorted(word_positions)
    speech = [i for i, (_, m) in enumerate(phone_sources) if not m.startswith("_") and m != ";"]
    if not events or not speech:
        return []
    # first speech phone of each WORD event: the first not before the event (20 ms slack)
    firsts: List[int] = []
    cursor = 0
    for _, sample in events:
        while cursor < len(speech) and phone_sources[speech[cursor]][0] < sample - 441:
            cursor += 1
        firsts.append(cursor)
    groups: List[Tuple[List[str], List[int]]] = []
    for k, (pos, _) in enumerate(events):
        end_pos = events[k + 1][0] - 1 if k + 1 < len(events) else len(text)
        words = [w.lower() for w in re.findall(r"[A-Za-z']+", text[pos - 1:end_pos])]
        words = [w.strip("'") for w in words if w.strip("'")]
        hi = firsts[k + 1] if k + 1 < len(firsts) else len(speech)
        phones = speech[firsts[k]:hi]
        if words and phones:
            groups.append((words, phones))
    seg_start: Dict[int, int] = {}
    seg_end: Dict[int, int] = {}
    for s in segs:
        seg_start.setdefault(s.source, s.start)
        seg_end[s.source] = s.end
    result: List[Tuple[int, int, str]] = []
    for words, phones in groups:
        phones = [p for p in phones if p in seg_start]
        if not phones:
            continue
        for word, (lo, hi) in zip(words, _split_counts(phones, words, phoneme_counts)):
            result.append((seg_start[phones[lo]], seg_end[phones[hi - 1]], word))
    return result


def _split_counts(
    phones: List[int], words: List[str], counter: "WordPhonemeCounter"
) -> List[Tuple[int, int]]:
    """Index ranges into ``phones`` for each word (at least one phone each when possible)."""
    n = len(phones)
    if len(words) == 1:
        return [(0, n)]
    counts = [max(1, counter(w)) for w in words]
    total = sum(counts)
    cuts = [0]
    acc = 0
    for c in counts[:-1]:
        acc += c
        cuts.append(round(acc * n / total))
    cuts.append(n)
    # keep ranges non-empty where there are enough phones, else let words share the last phone
    for i in range(1, len(cuts) - 1):
        cuts[i] = min(max(cuts[i], cuts[i - 1] + 1), n - (len(cuts) - 1 - i))
    ranges = []
    for lo, hi in zip(cuts, cuts[1:]):
        lo = min(max(lo, 0), n - 1)
        ranges.append((lo, max(hi, lo + 1)))
    return ranges


class WordPhonemeCounter:
    """Callable: number of phonemes eSpeak gives a word on its own (memoised)."""

    def __init__(self, phonemize) -> None:
        self._phonemize = phonemize
        self._cache: Dict[str, int] = {}

    def __call__(self, word: str) -> int:
        if word not in self._cache:
            phones = self._phonemize(word)
            self._cache[word] = sum(1 for p in phones if p not in MERGE_INTO_PREVIOUS)
        return self._cache[word]
