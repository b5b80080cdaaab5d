"""Phone and character error rates: the honest figures and the recipe-compatible ones.

Honest (:func:`score_utterances`), over every utterance:

* PER = sum of token edit distances (hypothesis vs reference phone lists) / total reference
  phones x 100, with the substitutions, deletions and insertions of one optimal alignment.
* CER = sum of character edit distances between the phones joined by single spaces / total
  reference characters (joined the same way) x 100.
* Reference phones that never occurred in training were mapped to ``UNK`` by the prepare stage
  (as the recipe's Vocab does).  They stay in the references and the denominators: the model
  cannot output them (the decoders never emit UNK), so each is an error, and
  ``unk_ref_phones`` says how many there were.
* An utterance with an empty reference adds its hypothesis length as insertions (and its
  joined length as character errors) and nothing to the denominators; if *every* reference is
  empty the rates are undefined and a :class:`DataError` is raised.

Recipe-compatible (:func:`recipe_scores`), reproducing the recipe's postprocess script
(``LSTM_postprocess_data.py`` of Ascend ModelZoo, read from its public source): it loops over
``zip(range(399 // batch), test_loader)``, so it scores the first ``399 // batch`` batches of
the dev loader in order (all batches when the loader is shorter), i.e. the first
``min(N, (399 // batch) * batch)`` utterances.  Its "WER" is the token edit distance over
``str.split()`` tokens; its "CER" is the character edit distance between the hypothesis string
and the reference phones joined by single spaces, and its greedy decoder builds hypotheses as
``' ' + phone`` per token, so each non-empty greedy hypothesis carries one leading space (its
beam decoder joins with ``' '`` and has none).  Denominators: ``len(ref.split())`` and
``len(ref)`` summed over the scored utterances.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Sequence, Tuple

from rapidfuzz.distance import Levenshtein

from lstm_exp.errors import ConfigError, DataError

#: the unit that stands for phones unseen in training (lstm_exp.data.prepare.UNK)
UNK = "UNK"
#: the recipe's hard-coded utterance budget: ``test_num = 399 // batchsize``
RECIPE_SCORED_UTTERANCES = 399


@dataclass(frozen=True)
class UtteranceErrors:
    """Alignment counts of one utterance."""

    utt_id: str
    ref: Tuple[str, ...]
    hyp: Tuple[str, ...]
    substitutions: int
    deletions: int
    insertions: int
    char_errors: int
    ref_chars: int

    @property
    def errors(self) -> int:
        """Token edit distance (substitutions + deletions + insertions)."""
        return self.substitutions + self.deletions + self.insertions


@dataclass
class ErrorReport:
    """Error rates over a set of utterances, with counts and per-utterance rows."""

    per: float
    cer: float
    substitutions: int
    deletions: int
    insertions: int
    ref_phones: int
    char_errors: int
    ref_chars: int
    utterances: List[UtteranceErrors]
    confusions: Counter = field(default_factory=Counter)  # (ref phone, hyp phone) -> count
    #: reference phones that are ``UNK`` (unseen in training; always errors, counted in ref_phones)
    unk_ref_phones: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    def top_confusions(self, n: int = 10) -> List[Tuple[Tuple[str, str], int]]:
        """The ``n`` most frequent substitutions ``((ref, hyp), count)``, ties by name."""
        ranked = sorted(self.confusions.items(), key=lambda item: (-item[1], item[0]))
        return ranked[: max(n, 0)]

    def rows(self) -> List[Dict[str, object]]:
        """One dict per utterance: id, ref, hyp (space-joined) and error counts."""
        return [
            {
                "utt_id": u.utt_id,
                "ref": " ".join(u.ref),
                "hyp": " ".join(u.hyp),
                "errors": u.errors,
                "substitutions": u.substitutions,
                "deletions": u.deletions,
                "insertions": u.insertions,
                "ref_phones": len(u.ref),
                "unk_ref_phones": sum(1 for p in u.ref if p == UNK),
                "char_errors": u.char_errors,
                "ref_chars": u.ref_chars,
            }
            for u in self.utterances
        ]


def _check_same_ids(ref_ids: Sequence[str], hyp_ids: Sequence[str]) -> None:
    ref_set, hyp_set = set(ref_ids), set(hyp_ids)
    if ref_set == hyp_set:
        return
    lines = []
    only_ref = sorted(ref_set - hyp_set)
    only_hyp = sorted(hyp_set - ref_set)
    if only_ref:
        lines.append(f"no hypothesis for {len(only_ref)} reference utterance(s): {', '.join(only_ref[:10])}"
                     + (" ..." if len(only_ref) > 10 else ""))
    if only_hyp:
        lines.append(f"{len(only_hyp)} hypothesis utterance(s) not in the references: {', '.join(only_hyp[:10])}"
                     + (" ..." if len(only_hyp) > 10 else ""))
    raise DataError("hypotheses and references cover different utterances; decode the same split:\n" + "\n".join(lines))


def align_counts(ref: Sequence[str], hyp: Sequence[str]) -> Tuple[int, int, int, List[Tuple[str, str]]]:
    """(substitutions, deletions, insertions, substituted pairs) of one optimal token alignment."""
    subs = dels = ins = 0
    pairs: List[Tuple[str, str]] = []
    for op in Levenshtein.editops(list(ref), list(hyp)):
        if op.tag == "replace":
            subs += 1
            pairs.append((ref[op.src_pos], hyp[op.dest_pos]))
        elif op.tag == "delete":
            dels += 1
        else:
            ins += 1
    return subs, dels, ins, pairs


def score_utterances(refs: Mapping[str, Sequence[str]], hyps: Mapping[str, Sequence[str]]) -> ErrorReport:
    """PER/CER over every utterance of ``refs`` (phone lists by utterance id); see module doc."""
    if not refs:
        raise DataError("no reference utterances to score; check the split's text file")
    _check_same_ids(list(refs), list(hyps))
    rows: List[UtteranceErrors] = []
    confusions: Counter = Counter()
    for utt_id, ref_tokens in refs.items():
        ref = tuple(ref_tokens)
        hyp = tuple(hyps[utt_id])
        subs, dels, ins, pairs = align_counts(ref, hyp)
        confusions.update(pairs)
        ref_text, hyp_text = " ".join(ref), " ".join(hyp)
        rows.append(
            UtteranceErrors(
                utt_id=utt_id, ref=ref, hyp=hyp, substitutions=subs, deletions=dels, insertions=ins,
                char_errors=Levenshtein.distance(ref_text, hyp_text), ref_chars=len(ref_text),
            )
        )
    ref_phones = sum(len(u.ref) for u in rows)
    ref_chars = sum(u.ref_chars for u in rows)
    if ref_phones == 0:
        raise DataError(f"all {len(rows)} references are empty; PER/CER are undefined - check the split's text file")
    substitutions = sum(u.substitutions for u in rows)
    deletions = sum(u.deletions for u in rows)
    insertions = sum(u.insertions for u in rows)
    char_errors = sum(u.char_errors for u in rows)
    return ErrorReport(
        per=100.0 * (substitutions + deletions + insertions) / ref_phones,
        cer=100.0 * char_errors / ref_chars,
        substitutions=substitutions, deletions=deletions, insertions=insertions,
        ref_phones=ref_phones, char_errors=char_errors, ref_chars=ref_chars,
        utterances=rows, confusions=confusions,
        unk_ref_phones=sum(1 for u in rows for phone in u.ref if phone == UNK),
    )


def recipe_scores(
    refs_in_order: Sequence[Tuple[str, Sequence[str]]],
    hyps_in_order: Sequence[Tuple[str, Sequence[str]]],
    batch: int,
    hyp_leading_space: bool = True,
    scored_utterances: int = RECIPE_SCORED_UTTERANCES,
) -> Tuple[float, float]:
    """``(per_recipe, cer_recipe)`` computed the way the recipe's postprocess script does.

    ``refs_in_order`` / ``hyps_in_order``: ``(utt_id, phones)`` in the dev loader's order.
    ``hyp_leading_space``: True for the recipe's greedy decoder (``' ' + phone`` per token),
    False for its beam decoder.  Only the first ``(scored_utterances // batch) * batch``
    utterances count (see module doc).
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch: {batch!r} must be a whole number >= 1 (the batch size the recipe ran with)")
    ref_ids = [utt_id for utt_id, _ in refs_in_order]
    hyp_ids = [utt_id for utt_id, _ in hyps_in_order]
    if ref_ids != hyp_ids:
        _check_same_ids(ref_ids, hyp_ids)
        first = next(i for i, (r, h) in enumerate(zip(ref_ids, hyp_ids)) if r != h)
        raise DataError(
            f"hypotheses are not in reference order: position {first} holds {hyp_ids[first]!r}, "
            f"expected {ref_ids[first]!r}; pass both in the dev loader's order"
        )
    scored = min(len(ref_ids), (scored_utterances // batch) * batch)
    token_errors = char_errors = num_words = num_chars = 0
    for (_, ref_tokens), (_, hyp_tokens) in zip(refs_in_order[:scored], hyps_in_order[:scored]):
        label = " ".join(ref_tokens)
        if hyp_leading_space:
            decoded = "".join(" " + phone for phone in hyp_tokens)
        else:
            decoded = " ".join(hyp_tokens)
        token_errors += Levenshtein.distance(decoded.split(), label.split())
        char_errors += Levenshtein.distance(decoded, label)
        num_words += len(label.split())
        num_chars += len(label)
    if num_words == 0:
        raise DataError(f"the {scored} scored references are empty; the recipe's rates are undefined")
    return 100.0 * token_errors / num_words, 100.0 * char_errors / num_chars
