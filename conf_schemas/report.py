"""Schema of ``report``: how a sweep's answer is told (the table's conclusions); changes nothing a
job computes, so it is not part of a job's fingerprint (``lstm_exp/tracking/fingerprint.py``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class ReportConfig:
    #: the variant that speed-ups are measured against (e.g. torch-cpu-fp32); null: the sweep's
    #: first variant. A variant the sweep does not have is an error at the end of the sweep.
    baseline: Optional[str] = None
