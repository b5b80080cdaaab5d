"""What each tracking sink costs a job: the calls ``lstm_exp.app.run_job`` makes on it, timed.

For each sink (``mlflow`` into a fresh SQLite store, ``jsonl`` into a fresh file, ``none``), in
alternating rounds, ``--jobs`` jobs each: ``start`` (name, the params and tags of a real smoke
job's config), ``set_tags`` (the backend's), ``record`` (a report with the metrics of a finished
job and its ``report.json`` as the only artefact), ``end("FINISHED")``.  The first ``--warmup``
jobs of each sink are not timed (store creation, imports).  Prints per sink the median, p90 and
max milliseconds per job over every timed job and the sample count; also the import time of
``mlflow`` that ``tracking=none`` never pays (a fresh interpreter, median of 3).

    python benchmarks/bench_sinks.py [--jobs 20] [--rounds 3] [--warmup 2]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lstm_exp.report.job import JobReport
from lstm_exp.tracking.jsonl_sink import JsonLinesSink
from lstm_exp.tracking.mlflow_sink import MlflowSink
from lstm_exp.tracking.params import job_params
from lstm_exp.tracking.sink import JobRun, Sink

#: a finished job's metrics, as a smoke job reports them (values do not change the cost)
METRICS = {"per": 80.1, "cer": 70.2, "infer_ms_p50": 3.1, "infer_ms_p90": 3.5, "infer_ms_p99": 4.0,
           "infer_ms_mean": 3.2, "e2e_ms_p50": 3.6, "throughput_utt_s": 1200.0, "utterances": 40}
PLAIN = {"batch": 4, "seed": 0, "data": {"kind": "synth"}, "split": {"name": "dev"}, "decode": {"type": "greedy"},
         "model": {"name": "ctc_small", "hidden": 64}, "backend": {"name": "onnxruntime", "providers": ["cpu"]},
         "train": {"epochs": 2, "lr": 0.001}, "infer": {"batching": "longest", "repeats": 3}}
IDENTITY = {"variant": "onnxruntime-cpu-fp32", "backend": "onnxruntime", "batch": 4, "split": "dev",
            "decode": "greedy", "model": "ctc_small", "data": "synth", "batching": "longest", "precision": "fp32"}


def one_job(sink: Sink, folder: Path, number: int) -> float:
    """Milliseconds of one job's sink calls."""
    job_dir = folder / f"job{number}"
    job_dir.mkdir(parents=True)
    report = JobReport.from_metrics(METRICS, **IDENTITY)
    report.write(job_dir / "report.json")
    run = JobRun(f"job-{number}", job_params(PLAIN, IDENTITY), {"lstm_exp.role": "job"}, job_dir, "f" * 64, "",
                 number, None, IDENTITY)
    started = time.perf_counter()
    sink.start(run)
    sink.set_tags({"backend.device": "cpu", "backend.threads": "2"})
    sink.record(report, job_dir)
    sink.end("FINISHED")
    return (time.perf_counter() - started) * 1000.0


def make(name: str, folder: Path) -> Sink:
    if name == "mlflow":
        return MlflowSink(f"sqlite:///{folder / 'mlflow.db'}", "bench", log_artifacts=True)
    if name == "jsonl":
        return JsonLinesSink(str(folder / "results.jsonl"))
    return Sink()


def mlflow_import_ms() -> float:
    code = "import time; t = time.perf_counter(); import mlflow; print((time.perf_counter() - t) * 1000)"
    times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
             for _ in range(3)]
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    print("command: python benchmarks/bench_sinks.py " + " ".join(sys.argv[1:]))
    names = ("mlflow", "jsonl", "none")
    timed: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for name in (names if round_ % 2 == 0 else tuple(reversed(names))):
                folder = Path(tmp) / f"{name}-{round_}"
                folder.mkdir()
                sink = make(name, folder)
                times = [one_job(sink, folder, number) for number in range(args.jobs)]
                timed[name].extend(times[args.warmup:])
    for name in names:
        values = sorted(timed[name])
        p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
        print(f"{name:7s} ms/job: median {statistics.median(values):8.2f}  p90 {p90:8.2f}  max {values[-1]:8.2f}  "
              f"(n={len(values)})")
    print(f"import mlflow (tracking=none never pays it): {mlflow_import_ms():.0f} ms (median of 3)")


if __name__ == "__main__":
    main()
