"""Beam search (flashlight-text) with and without the phone LM; build_decoder; DecodeConfig."""
import math
from pathlib import Path

import numpy as np
import pytest

from conf_schemas.decode import DecodeConfig
from lstm_exp.decode import BeamDecoder, GreedyDecoder, build_decoder
from lstm_exp.decode.beam import DEFAULT_BEAM_SIZE_TOKEN, DEFAULT_BEAM_THRESHOLD
from lstm_exp.errors import ConfigError, DataError

UNITS = ["blank", "UNK", "aa", "b", "d"]

# log10 probabilities; "aa b" is far likelier than "aa d"
TINY_ARPA = """
\\data\\
ngram 1=6
ngram 2=5

\\1-grams:
-99\t<s>\t-0.3
-1.0\t</s>
-1.0\t<unk>
-0.5\taa\t-0.3
-0.7\tb\t-0.3
-0.7\td\t-0.3

\\2-grams:
-0.01\t<s> aa
-0.1\taa b
-2.0\taa d
-0.3\tb </s>
-0.3\td </s>

\\end\\
"""


@pytest.fixture
def arpa(tmp_path) -> Path:
    path = tmp_path / "lm_phone_bg.arpa"
    path.write_text(TINY_ARPA)
    return path


def one_utterance(rows):
    """Time-major [T, 1, C] log-probs from per-frame probability rows (zeros -> very unlikely)."""
    probs = np.maximum(np.array(rows, dtype=np.float64), 1e-30)
    return np.log(probs).astype(np.float32)[:, None, :], np.array([len(rows)])


def test_peaky_posteriors_beam_equals_greedy():
    x, lengths = one_utterance(
        [[0.02, 0.0, 0.96, 0.01, 0.01]] * 2
        + [[0.96, 0.0, 0.02, 0.01, 0.01]]
        + [[0.02, 0.0, 0.96, 0.01, 0.01]]
        + [[0.02, 0.0, 0.01, 0.01, 0.96]] * 3
    )
    expected = [["aa", "aa", "d"]]
    assert GreedyDecoder(UNITS).decode(x, lengths) == expected
    assert BeamDecoder(UNITS, beam_width=4).decode(x, lengths) == expected


def test_beam_sums_alignments_where_greedy_takes_best_path():
    # each frame: blank 0.6, aa 0.4.  Best path = 3 blanks (0.216) -> "", but P("aa") summed over
    # the 7 alignments that collapse to "aa" is 1 - 0.216 - (aa-blank-aa: 0.096) = 0.688.
    x, lengths = one_utterance([[0.6, 0.0, 0.4, 0.0, 0.0]] * 3)
    assert GreedyDecoder(UNITS).decode(x, lengths) == [[]]
    assert BeamDecoder(UNITS, beam_width=8).decode(x, lengths) == [["aa"]]
    assert BeamDecoder(UNITS, beam_width=8, log_add=False).decode(x, lengths) == [[]]


def test_unk_is_never_emitted():
    # UNK is the top class of the first two frames; aa and b are second
    x, lengths = one_utterance([[0.02, 0.9, 0.08, 0.0, 0.0], [0.02, 0.8, 0.0, 0.18, 0.0], [0.9, 0.1, 0.0, 0.0, 0.0]])
    assert BeamDecoder(UNITS, beam_width=10).decode(x, lengths) == [["aa", "b"]]


def test_lengths_and_batch_order():
    a, _ = one_utterance([[0.0, 0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]])
    b, _ = one_utterance([[0.0, 0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0]])
    x = np.concatenate([a, b, b], axis=1)
    assert BeamDecoder(UNITS).decode(x, np.array([3, 2, 0])) == [["aa", "d"], ["b"], []]


def test_lm_changes_the_decision(arpa):
    # acoustics slightly prefer d (0.48) over b (0.39) for the second phone
    x, lengths = one_utterance(
        [[0.05, 0.01, 0.9, 0.02, 0.02], [0.9, 0.01, 0.03, 0.03, 0.03], [0.1, 0.01, 0.02, 0.39, 0.48]]
    )
    assert GreedyDecoder(UNITS).decode(x, lengths) == [["aa", "d"]]
    assert BeamDecoder(UNITS, lm_path=arpa, lm_weight=0.0).decode(x, lengths) == [["aa", "d"]]
    assert BeamDecoder(UNITS, lm_path=arpa, lm_weight=0.5).decode(x, lengths) == [["aa", "b"]]


def test_lm_weight_is_on_natural_log_probabilities(arpa):
    # one path only: score = 0 (emissions) + w * ln(10) * (log10 P(aa|<s>) + P(b|aa) + P(</s>|b))
    x = np.full((2, 1, len(UNITS)), -50.0, np.float32)
    x[0, 0, 2] = 0.0
    x[1, 0, 3] = 0.0
    decoder = BeamDecoder(UNITS, lm_path=arpa, lm_weight=0.5, log_add=False)
    [(tokens, score)] = decoder.decode_with_scores(x, np.array([2]))
    assert tokens == ["aa", "b"]
    assert score == pytest.approx(0.5 * math.log(10) * (-0.01 - 0.1 - 0.3), abs=1e-5)
    bonus = BeamDecoder(UNITS, lm_path=arpa, lm_weight=0.5, word_score=1.5, log_add=False)
    [(_, bonus_score)] = bonus.decode_with_scores(x, np.array([2]))
    assert bonus_score == pytest.approx(score + 2 * 1.5, abs=1e-5)


def test_word_score_penalty_removes_weak_phones():
    x, lengths = one_utterance([[0.45, 0.0, 0.55, 0.0, 0.0]])
    assert BeamDecoder(UNITS).decode(x, lengths) == [["aa"]]
    assert BeamDecoder(UNITS, word_score=-1.0).decode(x, lengths) == [[]]


def test_lm_missing_a_phone_or_file_is_a_data_error(tmp_path, arpa):
    with pytest.raises(DataError, match="lacks zz"):
        BeamDecoder(UNITS + ["zz"], lm_path=arpa, lm_weight=0.1)
    with pytest.raises(DataError, match="not found"):
        BeamDecoder(UNITS, lm_path=tmp_path / "absent.arpa", lm_weight=0.1)
    broken = tmp_path / "broken.arpa"
    broken.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\taa\n-1.0\tb\n-1.0\td\n-1.0\t<s>\n-1.0\t</s>\n")
    with pytest.raises(DataError, match="broken.arpa"):
        BeamDecoder(UNITS, lm_path=broken, lm_weight=0.1)


def test_bad_settings_are_reported_together():
    with pytest.raises(ConfigError) as info:
        BeamDecoder(UNITS, beam_width=0, lm_weight=0.3, beam_threshold=-1.0)
    text = str(info.value)
    assert "beam_width" in text and "needs an LM" in text and "beam_threshold" in text


def test_build_decoder_picks_type_and_lm(tmp_path, arpa):
    assert isinstance(build_decoder(DecodeConfig(type="greedy"), UNITS, None), GreedyDecoder)
    beam = build_decoder(DecodeConfig(type="beam", beam_width=3, beam_size_token=2), UNITS, arpa)
    assert isinstance(beam, BeamDecoder) and beam.lm_path is None and beam.beam_width == 3
    assert beam.beam_size_token == 2
    default_lm = build_decoder(DecodeConfig(type="beam_lm", lm_weight=0.2), UNITS, arpa)
    assert default_lm.lm_path == arpa and default_lm.lm_weight == 0.2
    with pytest.raises(DataError, match="elsewhere.arpa"):
        build_decoder(DecodeConfig(type="beam_lm", lm_path=str(tmp_path / "elsewhere.arpa")), UNITS, arpa)
    with pytest.raises(ConfigError, match="needs an LM"):
        build_decoder(DecodeConfig(type="beam_lm"), UNITS, None)


def test_decode_config_collects_every_fault():
    with pytest.raises(ConfigError) as info:
        DecodeConfig(type="viterbi", beam_width=0, lm_weight=-1.0, beam_threshold=0.0, beam_size_token=0, lm_path="")
    lines = str(info.value).splitlines()
    assert lines[0] == "DecodeConfig has 6 invalid values:"
    assert [line.split(":")[0] for line in lines[1:]] == [
        "decode.type", "decode.beam_width", "decode.lm_weight", "decode.beam_threshold",
        "decode.beam_size_token", "decode.lm_path",
    ]
    assert DecodeConfig().type == "greedy"


def test_library_default_pre_beam_is_the_presets():
    import yaml

    root = Path(__file__).resolve().parents[2]
    for preset in ("beam", "beam_lm"):
        configured = yaml.safe_load((root / "configs" / "decode" / f"{preset}.yaml").read_text())
        assert configured["beam_size_token"] == DEFAULT_BEAM_SIZE_TOKEN == DecodeConfig().beam_size_token
        assert configured["beam_threshold"] == DEFAULT_BEAM_THRESHOLD == DecodeConfig().beam_threshold
    units = ["blank", "UNK"] + [f"p{i}" for i in range(39)]
    assert BeamDecoder(units).beam_size_token == DEFAULT_BEAM_SIZE_TOKEN < len(units)
    assert BeamDecoder(units, beam_size_token=None).beam_size_token == len(units)  # None: all classes
