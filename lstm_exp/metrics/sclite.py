"""Outputs NIST sclite / sc_stats read unchanged, and the per-speaker table.

* trn format (sclite's ``-r ref.trn trn -h hyp.trn trn -i rm``): one line per utterance,
  ``<tokens separated by spaces> (<speaker>-<utterance id>)``; an empty hypothesis is just the
  id.  :func:`write_trn` writes the ``ref`` or ``hyp`` column of a job's per-utterance rows in the
  split's order; :func:`read_trn` reads one back (utterance id -> tokens), so that PER can be
  recomputed from the files alone.
* :func:`per_speaker_rows`: speaker, utterances, phones, errors, PER (percent), speakers sorted;
  ``per_speaker.tsv`` in the job folder.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

from lstm_exp.errors import DataError

#: ``tokens (spk-utt)``: the id is the last parenthesised field of the line
_TRN_LINE = re.compile(r"^(?P<text>.*?)\s*\((?P<id>[^()\s]+)\)\s*$")


def trn_id(speaker: str, utt_id: str) -> str:
    return f"{speaker}-{utt_id}"


def write_trn(path: Path, rows: Sequence[Mapping], speakers: Mapping[str, str], column: str) -> Path:
    """``column`` ("ref" or "hyp", space-joined phones) of every row as a trn file."""
    lines = [f"{row[column]} ({trn_id(speakers[row['utt_id']], row['utt_id'])})".lstrip() for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_trn(path: Path) -> dict[str, list[str]]:
    """Utterance id -> tokens; the speaker prefix of the id (up to the first ``-``) is dropped."""
    found: dict[str, list[str]] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        match = _TRN_LINE.match(line)
        if match is None or "-" not in match["id"]:
            raise DataError(f"{path}:{number}: not a trn line ('phones ... (speaker-utterance)'): {line[:80]!r}")
        found[match["id"].split("-", 1)[1]] = match["text"].split()
    return found


def per_speaker_rows(rows: Sequence[Mapping], speakers: Mapping[str, str]) -> list[dict]:
    """One row per speaker of the per-utterance rows (``errors``, ``ref_phones`` columns)."""
    totals: dict[str, list[int]] = {}
    for row in rows:
        entry = totals.setdefault(speakers[row["utt_id"]], [0, 0, 0])
        entry[0] += 1
        entry[1] += int(row["ref_phones"])
        entry[2] += int(row["errors"])
    return [{"speaker": spk, "utterances": n, "phones": phones, "errors": errors,
             "per": round(100.0 * errors / phones, 4) if phones else float("nan")}
            for spk, (n, phones, errors) in sorted(totals.items())]
