"""lstm_exp.report.compare on hand-made jobs: identical jobs, a strictly better job, a worse one,
jobs that scored different utterances, and a job folder read back."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from lstm_exp.errors import DataError
from lstm_exp.report.compare import Comparison, compare, load_job
from lstm_exp.report.job import JobReport


def _rows(errors, refs=None):
    refs = refs or [20] * len(errors)
    return [{"utt_id": f"spk{i % 3}_u{i:02d}", "errors": e, "ref_phones": r} for i, (e, r) in enumerate(zip(errors, refs))]


def _timings(ms, size=4):
    return [{"pass": 0, "batch": i, "utterances": size, "infer_ms": t} for i, t in enumerate(ms)]


BASE = JobReport(variant="onnxruntime-cpu-fp32", batch=4)
INT8 = JobReport(variant="onnxruntime-cpu-int8", batch=4)
ERRORS = [3, 5, 2, 0, 7, 4, 1, 6, 2, 3] * 3


def test_a_job_against_itself_is_equal_within_noise():
    found = compare(BASE, BASE, _rows(ERRORS), _rows(ERRORS), _timings([5.0] * 10), _timings([5.0] * 10))
    assert found.per_delta == 0.0 and found.per_delta_ci95 == (0.0, 0.0) and found.p_better == 0.5
    assert found.speedup == 1.0 and found.speedup_ci95 == (1.0, 1.0)
    assert found.verdict == "PER equal within noise (delta +0.00 [+0.00, +0.00])" and not found.worse


def test_a_variant_with_fewer_errors_everywhere_is_better_with_probability_one():
    fewer = [max(e - 1, 0) for e in ERRORS]
    found = compare(BASE, INT8, _rows(ERRORS), _rows(fewer))
    removed = sum(ERRORS) - sum(fewer)
    assert found.per_delta == pytest.approx(-100.0 * removed / (20 * 30))
    assert found.p_better == pytest.approx(1.0, abs=1e-3)  # utterances with 0 errors tie: ~never all drawn
    assert found.better and found.verdict.startswith(f"better by {100.0 * removed / 600:.2f} [")
    assert found.speedup is None and found.speed_text() == "speed-up n/a (no timings)"


def test_a_variant_worse_with_95_percent_confidence_is_flagged_worse():
    found = compare(BASE, INT8, _rows(ERRORS), _rows([e + 2 for e in ERRORS]), _timings([10.0] * 8),
                    _timings([5.0] * 8))
    assert found.worse and found.p_better == 0.0
    assert found.verdict == f"worse by {found.per_delta:.2f} [{found.per_delta_ci95[0]:+.2f}, {found.per_delta_ci95[1]:+.2f}]"
    assert found.speedup == 2.0 and found.speed_text() == "speed-up x2.00 [2.00, 2.00]"
    assert (found.baseline, found.other) == ("onnxruntime-cpu-fp32 b4", "onnxruntime-cpu-int8 b4")


def test_jobs_of_different_utterances_are_refused_naming_them():
    other = _rows(ERRORS)
    other[0]["utt_id"] = "elsewhere_u99"
    with pytest.raises(DataError) as caught:
        compare(BASE, INT8, _rows(ERRORS), other)
    assert "elsewhere_u99" in str(caught.value) and "spk0_u00" in str(caught.value)


def _write_tsv(path: Path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)


def test_load_job_reads_a_job_folder_and_names_what_is_missing(tmp_path):
    BASE.write(tmp_path / "report.json")
    _write_tsv(tmp_path / "utterances.tsv", _rows(ERRORS))
    _write_tsv(tmp_path / "timings.tsv", _timings([4.0, 6.0]))
    job = load_job(tmp_path)
    assert job.report.variant == BASE.variant and len(job.rows) == 30 and len(job.timings) == 2
    found = compare(job.report, job.report, job.rows, job.rows, job.timings, job.timings)
    assert isinstance(found, Comparison) and found.p_better == 0.5
    (tmp_path / "utterances.tsv").unlink()
    with pytest.raises(DataError, match="utterances.tsv"):
        load_job(tmp_path)
