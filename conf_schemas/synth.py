"""Config schema of the embedded synthetic TIMIT-format corpus (eSpeak NG)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional

from lstm_exp.errors import ConfigError
from lstm_exp.data.synth.voices import (
    CURATED_VOICES,
    DEFAULT_DEV_SPEAKERS,
    DEFAULT_TEST_SPEAKERS,
    VOICES_BY_ID,
)


@dataclass
class SynthCorpusConfig:
    """What to synthesize.

    ``dev_speakers`` / ``test_speakers`` are speaker ids of ``lstm_exp.data.synth.voices``
    (5 characters, e.g. ``mmal1``; case does not matter).  The train speakers are the first
    ``train_speakers`` curated voices that are in neither list, in the table's order.
    ``snr_db`` adds white noise at that signal-to-noise ratio (over the whole clean utterance);
    ``None`` keeps the audio clean.  Utterances longer than ``max_seconds`` are replaced by
    another sentence.  The output does not depend on ``workers``.
    """

    seed: int = 0
    train_speakers: int = 30
    utts_per_train_speaker: int = 33
    dev_speakers: List[str] = field(default_factory=lambda: list(DEFAULT_DEV_SPEAKERS))
    test_speakers: List[str] = field(default_factory=lambda: list(DEFAULT_TEST_SPEAKERS))
    utts_per_eval_speaker: int = 34
    snr_db: Optional[float] = None
    workers: int = 2
    max_seconds: float = 7.6

    def __post_init__(self) -> None:
        faults: List[str] = []
        for name in ("train_speakers", "utts_per_train_speaker", "utts_per_eval_speaker",
                     "workers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                faults.append(f"{name}: {value!r} must be a positive integer")
        for name in ("dev_speakers", "test_speakers"):
            ids = [str(s) for s in getattr(self, name)]
            if not ids:
                faults.append(f"{name}: empty; name at least one speaker id such as "
                              f"{DEFAULT_DEV_SPEAKERS[0]!r}")
            unknown = [s for s in ids if s.lower() not in VOICES_BY_ID]
            if unknown:
                faults.append(f"{name}: unknown speaker id(s) {unknown}; choose from "
                              f"lstm_exp.data.synth.voices.CURATED_VOICES (e.g. "
                              f"{sorted(VOICES_BY_ID)[:4]} ...)")
            if len({s.lower() for s in ids}) != len(ids):
                faults.append(f"{name}: a speaker id appears twice in {ids}")
        dev = {str(s).lower() for s in self.dev_speakers}
        test = {str(s).lower() for s in self.test_speakers}
        if dev & test:
            faults.append(f"dev_speakers/test_speakers: {sorted(dev & test)} in both; "
                          "dev and test voices must be disjoint")
        available = len(CURATED_VOICES) - len(dev | test)
        if isinstance(self.train_speakers, int) and self.train_speakers > available:
            faults.append(f"train_speakers: {self.train_speakers} but only {available} curated "
                          "voices are left after dev and test; write at most that")
        if self.snr_db is not None and not math.isfinite(float(self.snr_db)):
            faults.append(f"snr_db: {self.snr_db!r} must be a finite number of dB or null")
        if not (isinstance(self.max_seconds, (int, float)) and 2.0 <= self.max_seconds <= 60.0):
            faults.append(f"max_seconds: {self.max_seconds!r} must be between 2 and 60 "
                          "(7.6 fits the recipe's 390 frames after frame skipping)")
        if faults:
            raise ConfigError(
                f"invalid synthetic corpus config ({len(faults)} fault(s))\n" + "\n".join(faults)
            )
