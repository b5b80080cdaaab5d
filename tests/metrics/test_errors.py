"""PER/CER (honest and recipe-compatible) on cases worked out by hand."""
import pytest

from lstm_exp.errors import ConfigError, DataError
from lstm_exp.metrics.errors import recipe_scores, score_utterances


def test_identical_sequences_score_zero():
    refs = {"u1": ["sil", "aa", "b"], "u2": ["d"]}
    report = score_utterances(refs, dict(refs))
    assert (report.per, report.cer, report.errors) == (0.0, 0.0, 0)
    assert report.ref_phones == 4 and report.ref_chars == len("sil aa b") + len("d")


def test_substitution_insertion_counts_and_cer():
    # tokens: b->x substituted, e inserted: 2 errors / 4 phones = 50 %
    # chars: "a b c d" -> "a x c d e": 1 substitution + 2 insertions (" e") = 3 / 7 chars
    report = score_utterances({"u": ["a", "b", "c", "d"]}, {"u": ["a", "x", "c", "d", "e"]})
    assert (report.substitutions, report.deletions, report.insertions) == (1, 0, 1)
    assert report.per == pytest.approx(50.0)
    assert report.cer == pytest.approx(300.0 / 7)
    assert report.top_confusions(5) == [(("b", "x"), 1)]
    [row] = report.rows()
    assert row == {
        "utt_id": "u", "ref": "a b c d", "hyp": "a x c d e", "errors": 2, "substitutions": 1,
        "deletions": 0, "insertions": 1, "ref_phones": 4, "unk_ref_phones": 0, "char_errors": 3,
        "ref_chars": 7,
    }


def test_unk_reference_phones_are_counted_and_always_errors():
    # dev phone 'zh' unseen in train became UNK in the reference; the model never outputs UNK,
    # so its best guess there is a substitution and the UNK stays in the denominator
    report = score_utterances({"u1": ["sil", "UNK", "iy"], "u2": ["UNK"]}, {"u1": ["sil", "sh", "iy"], "u2": []})
    assert report.unk_ref_phones == 2 and report.ref_phones == 4
    assert (report.substitutions, report.deletions) == (1, 1)
    assert report.per == pytest.approx(50.0)
    assert [row["unk_ref_phones"] for row in report.rows()] == [1, 1]


def test_empty_hypothesis_is_all_deletions():
    report = score_utterances({"u": ["sil", "aa"]}, {"u": []})
    assert (report.deletions, report.per, report.cer) == (2, 100.0, 100.0)


def test_empty_reference_adds_insertions_but_no_denominator():
    # u1 perfect (2 phones), u2 empty ref with one inserted phone: 1 error / 2 ref phones
    report = score_utterances({"u1": ["aa", "b"], "u2": []}, {"u1": ["aa", "b"], "u2": ["d"]})
    assert (report.insertions, report.ref_phones) == (1, 2)
    assert report.per == pytest.approx(50.0)
    assert report.cer == pytest.approx(100.0 * 1 / len("aa b"))
    with pytest.raises(DataError, match="references are empty"):
        score_utterances({"u": []}, {"u": ["aa"]})


def test_top_confusions_rank_by_count_then_name():
    refs = {"u1": ["aa", "b", "d"], "u2": ["aa", "b", "b"]}
    hyps = {"u1": ["ae", "p", "t"], "u2": ["ae", "p", "p"]}
    report = score_utterances(refs, hyps)
    assert report.top_confusions(2) == [(("b", "p"), 3), (("aa", "ae"), 2)]
    assert report.top_confusions(0) == []


def test_utterance_sets_must_agree():
    with pytest.raises(DataError) as info:
        score_utterances({"u1": ["aa"], "u2": ["b"]}, {"u1": ["aa"], "u3": ["b"]})
    assert "u2" in str(info.value) and "u3" in str(info.value)


REFS = [("u1", ["aa", "b"]), ("u2", ["sil", "d"]), ("u3", ["k"]), ("u4", ["aa"]), ("u5", ["x"])]
HYPS = [("u1", ["aa", "b"]), ("u2", ["sil"]), ("u3", []), ("u4", ["b"]), ("u5", ["y", "z"])]


def test_recipe_scores_worked_by_hand():
    # batch 2 with a budget of 5 utterances: 5 // 2 = 2 batches -> u1..u4 scored, u5 ignored.
    # greedy hypotheses carry ' ' + phone per token:
    #   u1 " aa b"  vs "aa b"  : tokens 0, chars 1 (leading space); ref 2 phones, 4 chars
    #   u2 " sil"   vs "sil d" : tokens 1, chars 1 + 2 (" d")      ; ref 2 phones, 5 chars
    #   u3 ""       vs "k"     : tokens 1, chars 1                  ; ref 1 phone,  1 char
    #   u4 " b"     vs "aa"    : tokens 1, chars 2                  ; ref 1 phone,  2 chars
    # PER = 3 / 6 = 50 %, CER = 7 / 12 = 58.33 %
    per, cer = recipe_scores(REFS, HYPS, batch=2, scored_utterances=5)
    assert per == pytest.approx(50.0)
    assert cer == pytest.approx(700.0 / 12)
    # the recipe's beam decoder joins with ' ': chars 0 + 2 + 1 + 2 = 5 -> 41.67 %
    per_beam, cer_beam = recipe_scores(REFS, HYPS, batch=2, hyp_leading_space=False, scored_utterances=5)
    assert per_beam == pytest.approx(50.0)
    assert cer_beam == pytest.approx(500.0 / 12)


def test_recipe_scores_only_the_first_399_over_batch_batches():
    refs = [(f"u{i:03d}", ["aa", "b"]) for i in range(400)]
    # utterances 384..399 are all wrong (2 errors each), the rest right
    hyps = [(utt, ["d", "d"] if i >= 384 else ["aa", "b"]) for i, (utt, _) in enumerate(refs)]
    per16, _ = recipe_scores(refs, hyps, batch=16, hyp_leading_space=False)
    assert per16 == 0.0  # 399 // 16 = 24 batches = 384 utterances
    per1, _ = recipe_scores(refs, hyps, batch=1, hyp_leading_space=False)
    assert per1 == pytest.approx(100.0 * 2 * 15 / (2 * 399))  # u384..u398 scored, u399 not
    honest = score_utterances(dict(refs), dict(hyps))
    assert honest.per == pytest.approx(100.0 * 2 * 16 / 800)


def test_recipe_scores_checks_order_and_batch():
    with pytest.raises(DataError, match="not in reference order"):
        recipe_scores(REFS, list(reversed(HYPS)), batch=1)
    with pytest.raises(DataError, match="u5"):
        recipe_scores(REFS, HYPS[:4], batch=1)
    with pytest.raises(ConfigError, match="batch"):
        recipe_scores(REFS, HYPS, batch=0)
