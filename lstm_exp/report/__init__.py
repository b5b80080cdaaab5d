"""Job and sweep reports: :class:`JobReport` (one job, typed, JSON round-trip, the printed
summary) and :class:`SweepSummary` (a table and plots per sweep).

``python -m lstm_exp.report`` rebuilds a sweep's table and plots from the MLflow store alone
(see ``lstm_exp/report/__main__.py``)."""
from lstm_exp.report.job import (Accuracy, Dataset, ErrorCounts, JobReport, Latency, Memory, Throughput,
                                 Timing)
from lstm_exp.report.sweep import SweepSummary

__all__ = ["Accuracy", "Dataset", "ErrorCounts", "JobReport", "Latency", "Memory", "SweepSummary", "Throughput",
           "Timing"]
