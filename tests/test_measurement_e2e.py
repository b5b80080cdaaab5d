"""Issue 19 end to end on the smoke preset: a ``backend.precision=fp32,int8`` sweep whose runs carry
the interval metrics (each containing its point estimate), the host / noise tags and the sclite
and timing artefacts; a paired comparison of its two runs read back from MLflow; ``ref.trn`` /
``hyp.trn`` that give back the run's PER; and a job timed while busy loops load the cores tagged
``lstm_exp.timing_noisy=true`` (an idle one, under high thresholds, is not)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("espeakng_loader")

from lstm_exp.experiment import load_config, run_experiment  # noqa: E402
from lstm_exp.metrics.errors import score_utterances  # noqa: E402
from lstm_exp.metrics.sclite import read_trn  # noqa: E402
from lstm_exp.report.compare import compare_jobs, load_job, load_run  # noqa: E402
from tests.reliability.catalogue import cli_env  # noqa: E402

SWEEP = ("experiment=smoke", "backend.precision=fp32,int8", "progress=false", "-m")
INTERVALS = ("per", "throughput_utt_s", "infer_ms_p50")
BUSY_LOOP = "import time\nend = time.time() + 120\nwhile time.time() < end: pass\n"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("measure")
    proc = subprocess.run([sys.executable, "-m", "lstm_exp", *SWEEP], cwd=root, env=cli_env(), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return root


@pytest.fixture(scope="module")
def runs(workspace):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workspace / 'mlflow.db'}")
    found = [r for r in mlflow.search_runs(experiment_names=["lstm_exp"], output_format="list")
             if r.data.tags.get("lstm_exp.role") == "job"]
    return {r.data.params["precision"]: r for r in found}


def test_sweep_runs_carry_intervals_containing_their_point_estimates(runs):
    assert set(runs) == {"fp32", "int8"}
    for precision, run in runs.items():
        m = run.data.metrics
        assert run.info.status == "FINISHED"
        for name in INTERVALS:
            assert m[f"{name}_ci95_low"] <= m[name] <= m[f"{name}_ci95_high"], (precision, name)
        assert m["per_speaker_ci95_low"] <= m["per"] <= m["per_speaker_ci95_high"]
        assert m["timed_batches"] >= 8 and m["timing_supported_percentile"] == 50  # the smoke preset's minimum
        tags = run.data.tags
        assert tags["lstm_exp.timing_noisy"] in ("true", "false")
        assert tags["lstm_exp.host"] and tags["lstm_exp.cpu_model"] and tags["lstm_exp.measured_at"]
        assert "lstm_exp.threads" in tags and "lstm_exp.timing_cv" in tags


def test_paired_comparison_of_the_sweep_from_its_mlflow_artefacts(workspace, runs):
    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    base, other = load_run(runs["fp32"].info.run_id, uri), load_run(runs["int8"].info.run_id, uri)
    found = compare_jobs(base, other)
    per = {p: r.data.metrics["per"] for p, r in runs.items()}
    assert found.per_delta == pytest.approx(per["int8"] - per["fp32"])
    assert found.per_delta_ci95[0] <= found.per_delta <= found.per_delta_ci95[1]
    assert 0.0 <= found.p_better <= 1.0 and found.utterances == 12
    assert found.speedup > 0 and found.speedup_ci95[0] <= found.speedup <= found.speedup_ci95[1]
    assert found.verdict.startswith(("PER equal within noise", "worse by", "better by"))
    same = compare_jobs(base, base)  # a job against itself: nothing to tell apart
    assert same.per_delta == 0.0 and same.p_better == 0.5 and same.verdict.startswith("PER equal within noise")



def test_the_sweeps_summary_has_the_paired_columns_and_conclusion(workspace, runs):
    """The sweep's own table (summary.csv/.md) and conclusions carry the int8 job's paired
    comparison with the fp32 baseline: the same figures compare_jobs gives from the artefacts."""
    import csv

    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    found = compare_jobs(load_run(runs["fp32"].info.run_id, uri), load_run(runs["int8"].info.run_id, uri))
    sweep_dir = next(workspace.glob("multirun/*/*/summary.csv")).parent
    rows = {row["variant"]: row for row in csv.DictReader(open(sweep_dir / "summary.csv"))}
    int8, fp32 = rows["onnxruntime-cpu-int8"], rows["onnxruntime-cpu-fp32"]
    low, high = found.per_delta_ci95
    assert f"[{low:+.2f}, {high:+.2f}]" in int8["PER vs baseline"]
    assert int8["PER vs baseline"].startswith(("=", "worse", "better", "!! worse"))
    assert int8["PER vs baseline"].startswith("!! ") == found.worse  # a narrower precision worse with 95 % confidence
    assert int8["speed-up vs baseline"] == f"x{found.speedup:.2f} [{found.speedup_ci95[0]:.2f}, {found.speedup_ci95[1]:.2f}]"
    assert fp32["PER vs baseline"] == "" and int8["timing"] in ("NOISY", "steady")
    markdown = (sweep_dir / "summary.md").read_text()
    assert "| PER vs baseline |" in markdown and f"vs {found.baseline} (same batch): " in markdown and found.verdict in markdown


def test_trn_files_round_trip_to_the_runs_per(runs):
    for run in runs.values():
        job_dir = Path(run.data.tags["hydra.job_dir"])
        refs, hyps = read_trn(job_dir / "ref.trn"), read_trn(job_dir / "hyp.trn")
        assert len(refs) == 12 and refs.keys() == hyps.keys()
        assert score_utterances(refs, hyps).per == pytest.approx(run.data.metrics["per"])
        first = (job_dir / "ref.trn").read_text().splitlines()[0]
        speaker, utt = first.rsplit("(", 1)[1].rstrip(")").split("-", 1)
        assert utt.startswith(speaker)  # (spk-utt), the synthetic corpus's ids start with the speaker
        table = (job_dir / "per_speaker.tsv").read_text().splitlines()
        assert table[0].split("\t") == ["speaker", "utterances", "phones", "errors", "per"]
        assert sum(int(line.split("\t")[1]) for line in table[1:]) == 12
        local = load_job(job_dir)  # the folder gives what the MLflow artefacts give
        assert len(local.timings) == run.data.metrics["timed_batches"]


def _job(workspace: Path, name: str, *overrides: str):
    config = load_config("experiment=smoke", "tracking=none", "progress=false", "infer.min_seconds=1.0",
                         "infer.max_seconds=10", *overrides, root=workspace)
    seen: dict = {}
    report = run_experiment(config, workspace / name, on_backend_ready=seen.update)
    return report, seen


def test_a_job_timed_while_other_processes_load_the_cores_is_tagged_noisy(workspace):
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.3)
        report, tags = _job(workspace, "loaded", "infer.noisy_cv=1000", "infer.noisy_other_cpu=0.05")
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    assert tags["lstm_exp.timing_noisy"] == "true"
    assert "other processes took" in tags["lstm_exp.timing_noisy_reason"]
    assert report.noise.noisy and report.noise.other_cpu_fraction > 0.05
    saved = json.loads((workspace / "loaded" / "report.json").read_text())
    assert saved["noise"]["noisy"] is True and saved["host"]["measured_at"] == tags["lstm_exp.measured_at"]
    assert any("NOISY" in line for line in report.summary_lines())


def test_an_idle_job_under_high_thresholds_is_not_tagged(workspace):
    report, tags = _job(workspace, "idle", "infer.noisy_cv=1000", "infer.noisy_other_cpu=2.0")
    assert tags["lstm_exp.timing_noisy"] == "false" and "lstm_exp.timing_noisy_reason" not in tags
    assert report.noise.noisy is False and report.noise.other_cpu_fraction is not None


def _sctk(*args: str, cwd: Path, stdin: bytes | None = None) -> str:
    proc = subprocess.run(["sctk", *args], cwd=cwd, input=stdin, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    return proc.stdout.decode(errors="replace")


def test_nist_sclite_and_sc_stats_read_the_trn_files_unchanged(runs, tmp_path):
    """sclite's Snt / Wrd / Err on a job's files are the run's; sc_stats runs its matched-pairs
    tests on the two jobs (Debian's sctk; .ci/run installs it)."""
    import shutil

    if shutil.which("sctk") is None:
        pytest.skip("NIST SCTK is not installed (apt-get install sctk)")
    sgml = []
    for precision, run in sorted(runs.items()):
        job_dir = Path(run.data.tags["hydra.job_dir"])
        shutil.copy(job_dir / "ref.trn", tmp_path / "ref.trn")
        shutil.copy(job_dir / "hyp.trn", tmp_path / f"{precision}.trn")
        out = _sctk("sclite", "-r", "ref.trn", "trn", "-h", f"{precision}.trn", "trn", "-i", "rm", "-o", "sum",
                    "stdout", cwd=tmp_path)
        (row,) = [line for line in out.splitlines() if "Sum/Avg" in line]
        counts, rates = row.split("|")[2].split(), row.split("|")[3].split()
        m = run.data.metrics
        assert (int(counts[0]), int(counts[1])) == (m["utterances"], m["ref_phones"])
        # Err, printed to one decimal: sclite aligns with weights (substitution 4, insertion and
        # deletion 3), so its error count is the minimum edit distance (PER's) or a little above
        assert m["per"] - 0.05 <= float(rates[4]) <= m["per"] + 0.5
        _sctk("sclite", "-r", "ref.trn", "trn", "-h", f"{precision}.trn", "trn", "-i", "rm", "-o", "sgml",
              "-O", ".", cwd=tmp_path)
        sgml.append((tmp_path / f"{precision}.trn.sgml").read_bytes())
    report = _sctk("sc_stats", "-p", "-t", "mapsswe", "-v", "-u", "-n", "result", cwd=tmp_path, stdin=b"".join(sgml))
    assert "Successful Completion" in report and (tmp_path / "result.stats.mapsswe").is_file()
