"""Latency statistics over per-batch timings.

Figures say what they cover:

* ``infer_ms_*``: the model execute only, per batch, as the backend measured it (after device
  synchronisation; host-device copies excluded where the runtime allows it).
* ``e2e_ms_*``: numpy batch in, numpy log-probs out on the host, per batch, measured around
  ``Backend.run`` (copies and output conversion included; decoding excluded).
* ``throughput_utt_s``: utterances per second of model execute time (the recipe's
  ``1000 / ms * batch``, over the real, possibly partial, batches).
* ``rtf``: model execute seconds per second of audio.

* ``recipe_ms_per_batch`` / ``recipe_utt_s``: the guide's own figure under its own name: the
  mean model-execute ms per batch, and ``1000 / ms * batch`` with the nominal batch size (the
  guide's formula, which counts a partial last batch as full).
* ``cold_start_ms`` (lstm_exp.evaluate): loading the artefact plus the first batch, apart.

Warm-up batches are run before timing starts and never enter these numbers; with several timed
passes (``infer.repeats``, ``infer.min_seconds``) every batch of every pass does.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def latency_stats(prefix: str, values_ms: Sequence[float]) -> dict[str, float]:
    """``{prefix}_mean``, ``_p50``, ``_p90``, ``_p99``, ``_min``, ``_max``, ``_std`` in ms."""
    if len(values_ms) == 0:
        raise ValueError(f"no timings to summarise for {prefix}")
    arr = np.asarray(values_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {
        f"{prefix}_mean": float(arr.mean()),
        f"{prefix}_p50": float(p50),
        f"{prefix}_p90": float(p90),
        f"{prefix}_p99": float(p99),
        f"{prefix}_min": float(arr.min()),
        f"{prefix}_max": float(arr.max()),
        f"{prefix}_std": float(arr.std()),
    }


def throughput_stats(infer_ms: Sequence[float], batch_sizes: Sequence[int], audio_seconds: float) -> dict[str, float]:
    """Utterances per second and real-time factor over the model execute time."""
    total_s = float(np.sum(infer_ms)) / 1e3
    utts = int(np.sum(batch_sizes))
    return {
        "throughput_utt_s": utts / total_s if total_s > 0 else float("inf"),
        "rtf": total_s / audio_seconds if audio_seconds > 0 else float("nan"),
        "infer_total_s": total_s,
    }


def recipe_figures(infer_ms: Sequence[float], batch_size: int) -> dict[str, float]:
    """The guide's figures: mean model-execute ms per batch and ``1000 / ms * batch`` utt/s."""
    if len(infer_ms) == 0:
        raise ValueError("no timings for the recipe's figures")
    mean_ms = float(np.mean(infer_ms))
    return {"recipe_ms_per_batch": mean_ms,
            "recipe_utt_s": 1000.0 / mean_ms * batch_size if mean_ms > 0 else float("inf")}
