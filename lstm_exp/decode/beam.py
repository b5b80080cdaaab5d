"""CTC beam search through flashlight-text's ``LexiconFreeDecoder``, optionally with a phone LM.

* The search runs over the acoustic classes themselves (lexicon-free, CTC criterion).  The
  blank class doubles as flashlight's "silence" token: the decoder starts and ends every
  hypothesis on that token, and using blank makes those two boundary tokens vanish in the CTC
  collapse (using a phone such as ``sil`` would make a leading ``sil`` look like a repeat and
  skip its LM score).  ``sil_score`` is therefore 0.
* LM: an ARPA phone bigram (``<s>``, ``</s>``, ``<unk>`` and the phones) loaded by KenLM with a
  dictionary of the *acoustic* unit names, so class id ``i`` is looked up as the LM word
  ``units[i]``.  ``blank`` and ``UNK`` are never scored by the LM (blank frames take no LM
  step; UNK is masked), every phone must be in the ARPA vocabulary (checked at load time, since
  KenLM would silently score a missing phone as ``<unk>``).  Hypotheses start in the ``<s>``
  context and get ``</s>`` at the end, as in the recipe.
* ``lm_weight`` is the recipe's ``lm_alpha``: the weight of the LM log-probability in natural
  log units.  KenLM returns log10, so flashlight is given ``lm_weight * ln(10)``.
* ``word_score`` is a bonus added per emitted phone (negative = insertion penalty).  The
  lexicon-free decoder has no such option, so a non-zero value wraps the LM in a small Python
  LM that adds it; that costs Python calls per hypothesis extension (about 10x slower).
* UNK is masked to ``-inf`` before decoding (see :mod:`lstm_exp.decode.greedy`), so the
  decoder cannot extend any hypothesis with it.
* ``log_add=True`` (default) sums the scores of paths that reach the same hypothesis state
  (the CTC label-sequence probability, as a prefix beam search does); ``False`` keeps the max.
"""
from __future__ import annotations

import math
import os
import tempfile
from contextlib import contextmanager
from itertools import groupby
from pathlib import Path
from typing import List, Optional, Sequence, Set, Tuple, Union

import numpy as np

from lstm_exp.decode.greedy import UnitTable, check_batch, mask_unk
from lstm_exp.errors import ConfigError, DataError, MissingDependencyError

LN_10 = math.log(10.0)


def read_arpa_vocabulary(path: Path) -> Set[str]:
    """The words of an ARPA file's ``\\1-grams:`` section."""
    words: Set[str] = set()
    in_unigrams = False
    try:
        with open(path, "r", encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if line == "\\1-grams:":
                    in_unigrams = True
                    continue
                if in_unigrams:
                    if not line or line.startswith("\\"):
                        break
                    fields = line.split()
                    if len(fields) >= 2:
                        words.add(fields[1])
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the ARPA LM ({exc}); point decode.lm_path at a text ARPA file") from exc
    if not words:
        raise DataError(f"{path}: no \\1-grams: section; decode.lm_path must be an ARPA language model")
    return words


@contextmanager
def _captured_stderr_fd():
    """Send C-level stderr (KenLM's loading progress bar) to a temp file; yield a reader."""
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield lambda: (sink.seek(0), sink.read().decode("utf-8", "replace"))[1]
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _flashlight():
    try:
        from flashlight.lib.text import decoder as fl_decoder
        from flashlight.lib.text.dictionary import Dictionary
    except ImportError as exc:  # pragma: no cover - the package is a hard dependency
        raise MissingDependencyError(
            "beam decoding needs flashlight-text; install it with `pip install flashlight-text`"
        ) from exc
    return fl_decoder, Dictionary


def _token_bonus_lm(inner, inner_weight: float, bonus: float):
    """An flashlight LM returning ``inner_weight * inner score + bonus`` per emitted token."""
    fl_decoder, _ = _flashlight()

    class TokenBonusLM(fl_decoder.LM):
        def __init__(self) -> None:
            fl_decoder.LM.__init__(self)
            self.inner = inner

        def start(self, start_with_nothing: bool):
            return self.inner.start(start_with_nothing)

        def score(self, state, token_index: int):
            next_state, value = self.inner.score(state, token_index)
            return next_state, inner_weight * value + bonus

        def finish(self, state):
            next_state, value = self.inner.finish(state)
            return next_state, inner_weight * value

    return TokenBonusLM()


#: classes tried per frame (flashlight's beam_size_token) and the score margin below the best
#: hypothesis that survives (beam_threshold): the decode=beam / beam_lm presets' pruning. With the
#: default model, 5 / 10 give the PER of 41 classes / 25 on dev and test, 70x faster than the
#: NumPy prefix beam search (41 / 25: 6x; 10 / 25: 25x), see README "Measured"
DEFAULT_BEAM_SIZE_TOKEN = 5
DEFAULT_BEAM_THRESHOLD = 10.0


class BeamDecoder:
    """CTC beam search (flashlight-text), optionally with an ARPA phone LM (see module doc)."""

    def __init__(
        self,
        units: Sequence[str],
        beam_width: int = 10,
        lm_path: Optional[Union[str, Path]] = None,
        lm_weight: float = 0.0,
        word_score: float = 0.0,
        beam_threshold: float = DEFAULT_BEAM_THRESHOLD,
        beam_size_token: Optional[int] = DEFAULT_BEAM_SIZE_TOKEN,
        log_add: bool = True,
    ) -> None:
        self.units = UnitTable.from_units(units)
        faults: List[str] = []
        if isinstance(beam_width, bool) or not isinstance(beam_width, int) or beam_width < 1:
            faults.append(f"beam_width: {beam_width!r} must be a whole number >= 1")
        if not math.isfinite(lm_weight) or lm_weight < 0:
            faults.append(f"lm_weight: {lm_weight!r} must be a finite number >= 0")
        if lm_path is None and lm_weight != 0:
            faults.append(f"lm_weight: {lm_weight!r} needs an LM; give lm_path or set lm_weight to 0")
        if not math.isfinite(word_score):
            faults.append(f"word_score: {word_score!r} must be a finite number")
        if not math.isfinite(beam_threshold) or beam_threshold <= 0:
            faults.append(f"beam_threshold: {beam_threshold!r} must be a finite number > 0")
        if beam_size_token is not None and (not isinstance(beam_size_token, int) or beam_size_token < 1):
            faults.append(f"beam_size_token: {beam_size_token!r} must be None (all classes) or an int >= 1")
        if faults:
            raise ConfigError("invalid beam decoder settings:\n" + "\n".join(faults))

        fl_decoder, Dictionary = _flashlight()
        self.beam_width = beam_width
        self.beam_size_token = min(beam_size_token or self.units.num_classes, self.units.num_classes)
        self.lm_weight = float(lm_weight)
        self.word_score = float(word_score)
        self.lm_path = Path(lm_path) if lm_path is not None else None

        if self.lm_path is not None:
            lm = self._load_kenlm(self.lm_path, Dictionary)
            lm_scale = self.lm_weight * LN_10  # recipe weight on ln-probs; KenLM gives log10
        else:
            lm = fl_decoder.ZeroLM()
            lm_scale = 0.0
        if self.word_score != 0.0:
            lm = _token_bonus_lm(lm, lm_scale, self.word_score)
            lm_scale = 1.0
        self._lm = lm  # keep the LM alive as long as the decoder that points at it

        options = fl_decoder.LexiconFreeDecoderOptions(
            beam_size=beam_width,
            beam_size_token=self.beam_size_token,
            beam_threshold=float(beam_threshold),
            lm_weight=lm_scale,
            sil_score=0.0,
            log_add=bool(log_add),
            criterion_type=fl_decoder.CriterionType.CTC,
        )
        blank = self.units.blank_id
        self._decoder = fl_decoder.LexiconFreeDecoder(options, lm, blank, blank, [])

    def _load_kenlm(self, path: Path, Dictionary):
        if not path.is_file():
            raise DataError(f"{path}: LM file not found; run the prepare stage or set decode.lm_path to an ARPA file")
        vocabulary = read_arpa_vocabulary(path)
        special = {self.units.names[self.units.blank_id]}
        if self.units.unk_id is not None:
            special.add(self.units.names[self.units.unk_id])
        missing = [name for name in self.units.names if name not in special and name not in vocabulary]
        missing += [tag for tag in ("<s>", "</s>") if tag not in vocabulary]
        if missing:
            raise DataError(
                f"{path}: the LM lacks {', '.join(missing)}; use the phone LM trained with this unit list"
            )
        from flashlight.lib.text.decoder.kenlm import KenLM

        with _captured_stderr_fd() as kenlm_output:
            try:
                return KenLM(str(path), Dictionary(list(self.units.names)))
            except RuntimeError as exc:
                detail = " ".join(str(exc).split() + kenlm_output().split()[-30:])
                raise DataError(f"{path}: KenLM cannot load it ({detail}); give a valid ARPA file") from exc

    def decode(self, log_probs: np.ndarray, lengths: np.ndarray) -> List[List[str]]:
        """Best hypothesis per utterance of a time-major ``[T, B, C]`` batch."""
        return [tokens for tokens, _ in self.decode_with_scores(log_probs, lengths)]

    def decode_with_scores(self, log_probs: np.ndarray, lengths: np.ndarray) -> List[Tuple[List[str], float]]:
        """Like :meth:`decode`, also returning flashlight's total score of each best hypothesis."""
        log_probs, lengths = check_batch(log_probs, lengths, self.units.num_classes)
        frames, batch, classes = log_probs.shape
        # batch-major, float32, contiguous: utterance b starts at b * frames * classes floats
        emissions = np.ascontiguousarray(mask_unk(log_probs, self.units.unk_id).transpose(1, 0, 2))
        base = emissions.ctypes.data
        stride = emissions.strides[0]
        names = self.units.names
        blank = self.units.blank_id
        out: List[Tuple[List[str], float]] = []
        for b in range(batch):
            length = int(lengths[b])
            if length == 0:
                out.append(([], 0.0))
                continue
            results = self._decoder.decode(base + b * stride, length, classes)
            best = results[0]
            # the frame path starts and ends on the boundary token (= blank): CTC-collapse it
            ids = [k for k, _ in groupby(best.tokens) if k != blank]
            out.append(([names[k] for k in ids], float(best.score)))
        return out
