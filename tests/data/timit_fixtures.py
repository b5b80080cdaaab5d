"""Small TIMIT-layout trees for tests: NIST SPHERE audio (sine + noise) and hand-written .PHN/.WRD/.TXT.

:func:`build_timit_tree` writes ``<root>/TRAIN/DR1/FCJF0/SI1027.WAV`` ... (or the lower-case
layout) from a layout mapping ``part -> region -> speaker -> {utterance: phones or None}``;
every speaker also gets SA1/SA2 files, which readers must skip.  Segments split the audio evenly
(with an h# at both ends), so frame counts and labels are known to the test.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import kaldiio
import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000

# 61-set transcripts exercising the fold: q dropped, closures/pau/epi/h# -> sil, doubles kept
PHONE_SEQUENCES: Tuple[Tuple[str, ...], ...] = (
    ("sh", "iy", "hv", "ae", "dcl", "d", "y", "er"),
    ("bcl", "b", "ao", "q", "ae", "pau", "epi", "n", "ix"),
    ("dh", "ax", "kcl", "k", "ae", "tcl", "t", "s", "ux"),
    ("w", "ix", "tcl", "ch", "axr", "ah", "m", "eng", "el"),
)

# part -> region -> speaker -> utterance -> 61-set phones (None: next of PHONE_SEQUENCES)
Layout = Mapping[str, Mapping[str, Mapping[str, Mapping[str, Optional[Sequence[str]]]]]]

DEFAULT_LAYOUT: Layout = {
    "TRAIN": {
        "DR1": {"FCJF0": {"SI1027": None, "SX37": None}, "MDEF0": {"SI648": None, "SX18": None}},
        "DR2": {"FAEM0": {"SI1392": None, "SX42": None}},
    },
    "TEST": {
        "DR1": {"FAKS0": {"SI943": None, "SX43": None}, "MDAB0": {"SI1039": None, "SX139": None}},
        "DR2": {"FDAC1": {"SI844": None}, "MWBT0": {"SI1553": None}},
        "DR3": {"MKXL0": {"SI1185": None}},  # in neither list: unused
    },
}
DEV_SPEAKERS = ["faks0", "fdac1"]
TEST_SPEAKERS = ["mdab0", "mwbt0"]


@dataclass
class TreeInfo:
    """What :func:`build_timit_tree` wrote."""

    root: Path
    #: split -> sorted utterance ids expected from read_timit
    expected_ids: Dict[str, List[str]] = field(default_factory=dict)
    #: utterance id -> (audio path, 61-set labels, number of samples)
    utterances: Dict[str, Tuple[Path, List[str], int]] = field(default_factory=dict)
    dev_speakers: List[str] = field(default_factory=lambda: list(DEV_SPEAKERS))
    test_speakers: List[str] = field(default_factory=lambda: list(TEST_SPEAKERS))


def make_waveform(num_samples: int, seed: int, amplitude: float = 3000.0, offset: float = 0.0) -> np.ndarray:
    """int16 sine (pitch from ``seed``) plus white noise, shifted by ``offset``."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / SAMPLE_RATE
    frequency = 150.0 + 40.0 * (seed % 7)
    signal = amplitude * np.sin(2 * np.pi * frequency * t) + rng.normal(0.0, amplitude / 10, num_samples) + offset
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)


def write_sphere(path: Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """NIST SPHERE, PCM16 (TIMIT's .WAV format)."""
    sf.write(str(path), samples, sample_rate, format="NIST", subtype="PCM_16")


def even_segments(labels61: Sequence[str], num_samples: int) -> List[Tuple[int, int, str]]:
    """h# + labels + h#, splitting ``num_samples`` evenly."""
    labels = ["h#", *labels61, "h#"]
    bounds = np.linspace(0, num_samples, len(labels) + 1).astype(int)
    return [(int(bounds[i]), int(bounds[i + 1]), label) for i, label in enumerate(labels)]


def write_phn(path: Path, segments: Sequence[Tuple[int, int, str]]) -> None:
    path.write_text("".join(f"{s} {e} {label}\n" for s, e, label in segments), encoding="ascii")


def write_utterance(
    speaker_dir: Path,
    name: str,
    labels61: Sequence[str],
    num_samples: int,
    seed: int,
    upper: bool = True,
    amplitude: float = 3000.0,
    offset: float = 0.0,
) -> Tuple[Path, List[Tuple[int, int, str]]]:
    """Write ``<name>.WAV/.PHN/.WRD/.TXT`` (case per ``upper``); returns the audio path and segments."""
    stem = name.upper() if upper else name.lower()

    def ext(e: str) -> str:
        return e.upper() if upper else e.lower()

    wav = speaker_dir / f"{stem}.{ext('wav')}"
    write_sphere(wav, make_waveform(num_samples, seed, amplitude, offset))
    segments = even_segments(labels61, num_samples)
    write_phn(speaker_dir / f"{stem}.{ext('phn')}", segments)
    (speaker_dir / f"{stem}.{ext('wrd')}").write_text(f"0 {num_samples} word\n", encoding="ascii")
    (speaker_dir / f"{stem}.{ext('txt')}").write_text(f"0 {num_samples} A test sentence.\n", encoding="ascii")
    return wav, segments


def build_timit_tree(
    root: Path,
    upper: bool = True,
    layout: Layout = DEFAULT_LAYOUT,
    dev_speakers: Sequence[str] = DEV_SPEAKERS,
    test_speakers: Sequence[str] = TEST_SPEAKERS,
    amplitude_by_part: Optional[Mapping[str, Tuple[float, float]]] = None,
) -> TreeInfo:
    """Write a TIMIT tree under ``root``; lengths vary per utterance (7,000 + 131 k samples).

    ``amplitude_by_part`` maps ``TRAIN``/``TEST`` to ``(amplitude, offset)`` of the waveforms.
    """
    root = Path(root)
    info = TreeInfo(root=root, dev_speakers=list(dev_speakers), test_speakers=list(test_speakers))
    ids: Dict[str, List[str]] = {"train": [], "dev": [], "test": []}
    dev, test = {s.lower() for s in dev_speakers}, {s.lower() for s in test_speakers}
    counter = 0
    for part, regions in layout.items():
        amplitude, offset = (amplitude_by_part or {}).get(part, (3000.0, 0.0))
        for region, speakers in regions.items():
            for speaker, utterances in speakers.items():
                speaker_dir = root / (part if upper else part.lower()) / (region if upper else region.lower())
                speaker_dir = speaker_dir / (speaker if upper else speaker.lower())
                speaker_dir.mkdir(parents=True, exist_ok=True)
                for sa in ("SA1", "SA2"):  # present in every TIMIT speaker folder, excluded by the reader
                    write_utterance(speaker_dir, sa, ["s", "iy"], 6000, 99, upper)
                for name, labels in utterances.items():
                    labels61 = list(labels) if labels is not None else list(PHONE_SEQUENCES[counter % len(PHONE_SEQUENCES)])
                    num_samples = 7000 + 131 * counter
                    wav, _ = write_utterance(
                        speaker_dir, name, labels61, num_samples, seed=counter, upper=upper,
                        amplitude=amplitude, offset=offset,
                    )
                    utt_id = f"{speaker.lower()}_{name.lower()}"
                    info.utterances[utt_id] = (wav, ["h#", *labels61, "h#"], num_samples)
                    if part.upper() == "TRAIN":
                        ids["train"].append(utt_id)
                    elif speaker.lower() in dev:
                        ids["dev"].append(utt_id)
                    elif speaker.lower() in test:
                        ids["test"].append(utt_id)
                    counter += 1
    info.expected_ids = {split: sorted(v) for split, v in ids.items()}
    return info


def write_speaker_list(path: Path, speakers: Sequence[str]) -> Path:
    path.write_text("".join(f"{s}\n" for s in speakers), encoding="ascii")
    return path


def write_kaldi_user_dir(
    dir: Path,
    ids: Sequence[str],
    scp_name: str = "feats.scp",
    text_name: str = "text",
    relative: bool = False,
    labels: str = "sil s iy sil",
    offset: float = 0.0,
) -> Dict[str, np.ndarray]:
    """A user's Kaldi dir with an ark of random features; returns the written matrices."""
    dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    mats = {utt: (rng.normal(size=(20 + i, 81)) + offset).astype(np.float32) for i, utt in enumerate(ids)}
    ark = dir / "raw.ark"
    with kaldiio.WriteHelper(f"ark,scp:{ark},{dir / scp_name}") as writer:
        for utt, mat in mats.items():
            writer(utt, mat)
    if relative:  # relative to the recipe folder, two levels above data/<split>
        recipe = dir.parent.parent
        text = (dir / scp_name).read_text().replace(str(recipe) + "/", "")
        (dir / scp_name).write_text(text)
    (dir / text_name).write_text("".join(f"{utt} {labels}\n" for utt in ids))
    return mats
