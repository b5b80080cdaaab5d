"""JobReport's issue-19 parts: interval, noise and sentence-error metrics typed and back, the JSON
round trip of host and noise, the sclite summary line by hand, the summary's timing lines."""
from __future__ import annotations

from lstm_exp.report.job import JobReport

METRICS = {"per": 20.0, "utterances": 4, "ref_phones": 50, "substitutions": 5, "deletions": 3, "insertions": 2,
           "sentence_errors": 3, "per_ci95_low": 15.0, "per_ci95_high": 25.0, "per_speaker_ci95_low": 12.0,
           "per_speaker_ci95_high": 28.0, "throughput_utt_s": 100.0, "throughput_utt_s_ci95_low": 90.0,
           "throughput_utt_s_ci95_high": 110.0, "infer_ms_p50": 4.0, "infer_ms_p50_ci95_low": 3.5,
           "infer_ms_p50_ci95_high": 4.5, "timing_cv": 0.02, "other_cpu_fraction": 0.1, "load_avg_1m": 0.5,
           "timed_batches": 70, "timing_supported_percentile": 90, "timed_seconds": 3.0}


def test_issue19_metrics_are_typed_and_flatten_back_unchanged():
    report = JobReport.from_metrics(METRICS, variant="torch-cpu-fp32")
    assert report.extra == {}
    assert report.intervals.per_low == 15.0 and report.intervals.infer_ms_p50_high == 4.5
    assert report.noise.timing_cv == 0.02 and report.sclite.sentence_errors == 3.0
    assert report.metrics() == {k: float(v) for k, v in METRICS.items()}


def test_host_and_noise_survive_the_json_round_trip():
    report = JobReport.from_metrics(METRICS, variant="torch-cpu-fp32")
    report.noise.noisy, report.noise.reason = True, "timing_cv 0.300 > infer.noisy_cv=0.1"
    report.host.host, report.host.measured_at = "box", "2026-12-03T08:00:00+00:00"
    assert JobReport.from_json(report.to_json()) == report


def test_the_sclite_line_by_hand():
    report = JobReport.from_metrics(METRICS)
    # 50 phones: 5 sub, 3 del, 2 ins -> Corr (50 - 5 - 3) / 50 = 84 %, Err 20 %; 3 of 4 sentences wrong
    assert report.sclite_line() == "sclite: Snt 4 Wrd 50 | Corr 84.0 Sub 10.0 Del 6.0 Ins 4.0 Err 20.0 S.Err 75.0"


def test_the_summary_says_what_the_timing_supports_and_whether_it_was_noisy():
    report = JobReport.from_metrics(METRICS, variant="torch-cpu-fp32")
    report.noise.noisy = False
    text = "\n".join(report.summary_lines())
    assert "PER 20.00 [15.00, 25.00]" in text and "throughput 100.0 [90.0, 110.0] utt/s" in text
    assert "70 timed batches" in text and "up to p90" in text and "p99 rests on fewer samples" in text
    assert "timing steady" in text
    report.noise.noisy, report.noise.reason = True, "other processes took 60% of the CPUs"
    assert "timing NOISY: other processes took 60% of the CPUs" in "\n".join(report.summary_lines())


def test_measurement_tags_read_back_into_a_report():
    report = JobReport.from_metrics(METRICS)
    report.read_measurement_tags({"lstm_exp.host": "box", "lstm_exp.measured_at": "2026-12-01T10:00:00+00:00",
                                  "lstm_exp.timing_noisy": "true", "lstm_exp.timing_noisy_reason": "timing_cv 0.2",
                                  "lstm_exp.cpu_model": "some CPU"})
    assert (report.host.host, report.host.measured_at, report.host.cpu_model) == (
        "box", "2026-12-01T10:00:00+00:00", "some CPU")
    assert report.noise.noisy is True and report.noise.reason == "timing_cv 0.2"
    untouched = JobReport.from_metrics(METRICS)
    untouched.read_measurement_tags({})
    assert untouched.noise.noisy is None and untouched.host.host == ""
