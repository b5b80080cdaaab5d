"""CTC decoders: log-probs ``[T, B, C]`` + lengths -> phone sequences.

``GreedyDecoder`` (best path, NumPy) and ``BeamDecoder`` (flashlight-text beam search, with an
optional ARPA phone LM); ``build_decoder`` makes the one a ``DecodeConfig`` asks for.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

from conf_schemas.decode import DecodeConfig
from lstm_exp.decode.beam import BeamDecoder
from lstm_exp.decode.greedy import GreedyDecoder
from lstm_exp.errors import ConfigError

Decoder = Union[GreedyDecoder, BeamDecoder]

__all__ = ["BeamDecoder", "Decoder", "GreedyDecoder", "build_decoder"]


def build_decoder(cfg: DecodeConfig, units: Sequence[str], lm_path: Optional[Path] = None) -> Decoder:
    """The decoder ``cfg.type`` names.

    ``lm_path`` is the default LM (the prepared data's ``lm_phone_bg.arpa``); ``cfg.lm_path``,
    when set, overrides it.  Only ``beam_lm`` uses an LM.
    """
    if cfg.type == "greedy":
        return GreedyDecoder(units)
    common = dict(
        beam_width=cfg.beam_width,
        word_score=cfg.word_score,
        beam_threshold=cfg.beam_threshold,
        beam_size_token=cfg.beam_size_token,
    )
    if cfg.type == "beam":
        return BeamDecoder(units, lm_path=None, lm_weight=0.0, **common)
    if cfg.type == "beam_lm":
        chosen = Path(cfg.lm_path) if cfg.lm_path is not None else lm_path
        if chosen is None:
            raise ConfigError(
                "decode.type=beam_lm needs an LM: set decode.lm_path to an ARPA file or decode prepared data that has lm_phone_bg.arpa"
            )
        return BeamDecoder(units, lm_path=chosen, lm_weight=cfg.lm_weight, **common)
    raise ConfigError(f"decode.type: {cfg.type!r} is not a decoder; write greedy, beam or beam_lm")
