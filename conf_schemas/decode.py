"""Schema of the ``decode`` config group: how log-probs become phone sequences.

``type`` picks the decoder:

* ``greedy``  - best path (argmax per frame, merge repeats, drop blanks);
* ``beam``    - CTC beam search without a language model (flashlight-text);
* ``beam_lm`` - the same beam search with the phone bigram ARPA LM through KenLM.

``lm_weight`` is the recipe's ``lm_alpha``: it multiplies the LM log-probability in natural-log
units (the recipe converts ARPA log10 values to ln before weighting; the decoder does the same).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional

from lstm_exp.errors import ConfigError

DECODER_TYPES = ("greedy", "beam", "beam_lm")


@dataclass
class DecodeConfig:
    """Decoder choice and beam-search settings (see the module docstring)."""

    type: str = "greedy"
    beam_width: int = 10
    lm_weight: float = 0.1
    word_score: float = 0.0
    #: pruning margin of the beam search (lstm_exp.decode.beam.DEFAULT_BEAM_THRESHOLD)
    beam_threshold: float = 10.0
    #: classes tried per frame by the beam search (flashlight's beam_size_token); None = all
    #: (about 11x slower, same PER on dev and test); 5 = lstm_exp.decode.beam.DEFAULT_BEAM_SIZE_TOKEN
    beam_size_token: Optional[int] = 5
    #: ARPA phone LM for ``beam_lm``; None = ``<prepared>/lm_phone_bg.arpa``; ignored otherwise
    lm_path: Optional[str] = None

    def __post_init__(self) -> None:
        faults: List[str] = []
        if self.type not in DECODER_TYPES:
            faults.append(
                f"decode.type: {self.type!r} is not a decoder; write one of {', '.join(DECODER_TYPES)}"
            )
        if isinstance(self.beam_width, bool) or not isinstance(self.beam_width, int) or self.beam_width < 1:
            faults.append(
                f"decode.beam_width: {self.beam_width!r} must be a whole number >= 1 (the recipe uses 10)"
            )
        if not _is_finite_number(self.lm_weight) or self.lm_weight < 0:
            faults.append(
                f"decode.lm_weight: {self.lm_weight!r} must be a finite number >= 0 (0 turns the LM off; the recipe's lm_alpha)"
            )
        if not _is_finite_number(self.word_score):
            faults.append(f"decode.word_score: {self.word_score!r} must be a finite number (0.0 = no bonus)")
        if not _is_finite_number(self.beam_threshold) or self.beam_threshold <= 0:
            faults.append(
                f"decode.beam_threshold: {self.beam_threshold!r} must be a finite number > 0 (e.g. 25.0)"
            )
        if self.beam_size_token is not None and (
            isinstance(self.beam_size_token, bool) or not isinstance(self.beam_size_token, int) or self.beam_size_token < 1
        ):
            faults.append(
                f"decode.beam_size_token: {self.beam_size_token!r} must be null (all classes) or a whole number >= 1"
            )
        if self.lm_path is not None and (not isinstance(self.lm_path, str) or not self.lm_path.strip()):
            faults.append(
                f"decode.lm_path: {self.lm_path!r} must be a path to an ARPA file, or null for the prepared data's lm_phone_bg.arpa"
            )
        if faults:
            raise ConfigError(
                f"DecodeConfig has {len(faults)} invalid value{'s' if len(faults) > 1 else ''}:\n"
                + "\n".join(faults)
            )


def _is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
