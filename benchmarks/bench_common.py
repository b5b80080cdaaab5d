"""Shared by bench_overhead.py, bench_batching.py and bench_precision.py: the default
experiment composed through Hydra (as ``python -m lstm_exp`` would), its cached stages built or
reused in the working directory, one job's evaluation in-process, the command and the hardware.
"""
from __future__ import annotations

import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def compose_experiment(overrides: Sequence[str], workdir: Path) -> Any:
    """The validated ExperimentConfig for ``overrides`` (stage cache under ``workdir/cache``)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from conf_schemas import register_configs
    from lstm_exp.experiment import validate
    from lstm_exp.config_path import config_dir

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        cfg = compose("config", overrides=[f"paths.root={workdir}", "tracking=none", "progress=false", *overrides])
    GlobalHydra.instance().clear()
    return validate(cfg)


def pipeline_for(exp: Any):
    """The job's Pipeline with every stage before infer built (or found in the cache)."""
    from lstm_exp.experiment import preflight
    from lstm_exp.pipeline import Pipeline

    preflight(exp)
    pipeline = Pipeline(exp)
    pipeline.run_until("all")
    return pipeline


def hardware() -> str:
    """CPU model, core count, load average, runtime versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime
    import torch

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (f"{cpu}; {os.cpu_count()} logical cores; load average {load}; python {platform.python_version()}; "
            f"onnxruntime {onnxruntime.__version__}; torch {torch.__version__}")


def header(title: str) -> None:
    print(f"== {title}")
    print(f"command: python {shlex.join(sys.argv)}  (cwd {Path.cwd()})")
    print(f"hardware: {hardware()}")


def table(rows: list[dict], columns: Sequence[str]) -> None:
    """A plain aligned table."""
    cells = [[str(c) for c in columns]] + [[_fmt(r[c]) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for n, row in enumerate(cells):
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)
