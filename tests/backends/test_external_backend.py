"""A backend added from a folder outside the package (issue 22: "a backend is one folder").

The folder holds a schema on the common base (``BackendConfig``), an implementation (onnxruntime
on one thread, written here from scratch), a plugin with its own cached stage (``seal``: the
export copied into its own cache entry with its digest) and its YAML option; a
``.dist-info`` beside it registers the plugin in the ``lstm_exp.backends`` entry-point group, as
``pip install`` of its package would.  With only that folder on ``PYTHONPATH`` (no file of the
package edited) the smoke experiment sweeps ``backend=onnxruntime,extbackend``: one training,
the new backend's own stage in the cache, its variant in the sweep's table, and the same PER as
the built-in onnxruntime on the same ONNX."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("espeakng_loader")

REPO_ROOT = Path(__file__).resolve().parents[2]
NAME = "extbackend"

FILES = {
    f"{NAME}/__init__.py": '"""A backend that lives outside lstm_exp."""\n',
    f"{NAME}/config.py": '''
        from dataclasses import dataclass
        from typing import ClassVar

        from lstm_exp.backends.base import BackendConfig
        from lstm_exp.errors import ConfigError


        @dataclass
        class ExtBackendConfig(BackendConfig):
            precisions: ClassVar[dict] = {"fp32": ("cpu",)}

            name: str = "extbackend"
            device: str = "cpu"
            precision: str = "fp32"

            def __post_init__(self) -> None:
                self.check_threads()  # backend.threads: the common base's field
                if self.precision not in self.precisions:
                    raise ConfigError(f"backend.precision={self.precision}: write fp32")
        ''',
    f"{NAME}/backend.py": '''
        import time

        import numpy as np
        import onnxruntime as ort

        from lstm_exp.backends.base import Backend, RunOutput
        from lstm_exp.backends.threads import resolve_threads


        class ExtBackend(Backend):
            name = "extbackend"

            def __init__(self, cfg):
                self.cfg, self.session = cfg, None

            def load(self, artifact):
                options = ort.SessionOptions()
                options.intra_op_num_threads = resolve_threads(self.cfg.threads).count
                self.session = ort.InferenceSession(str(artifact), options, providers=["CPUExecutionProvider"])
                self.input = self.session.get_inputs()[0].name

            def run(self, x):
                start = time.perf_counter()
                out = self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=np.float32)})[0]
                return RunOutput(out, (time.perf_counter() - start) * 1e3)

            def close(self):
                self.session = None
        ''',
    f"{NAME}/plugin.py": '''
        import hashlib
        from pathlib import Path

        from lstm_exp.backends.plugin import BackendPlugin, Stage

        from extbackend.config import ExtBackendConfig


        def build_seal(pipeline, stage):
            source = pipeline.onnx_path

            def build(tmp):
                data = source.read_bytes()
                (tmp / "model.onnx").write_bytes(data)
                return {"sha256": hashlib.sha256(data).hexdigest(), "source": str(source)}

            return pipeline.run_stage(stage, {"copy": True}, build) / "model.onnx"


        SEAL = Stage(name="seal", version="1", inputs=("export",), output=build_seal)


        class ExtPlugin(BackendPlugin):
            name = "extbackend"
            config_class = ExtBackendConfig
            backend_class = "extbackend.backend.ExtBackend"
            takes_onnx_file = True
            own_stages = (SEAL,)
            config_yaml = Path(__file__).with_name("extbackend.yaml")

            def stages(self, cfg):
                return ["train", "export", SEAL.name]


        PLUGIN = ExtPlugin()
        ''',
    f"{NAME}/extbackend.yaml": '''
        # onnxruntime on one thread, from outside the package
        defaults:
          - /schema/backend/extbackend@_here_
          - _self_

        threads: 1
        ''',
    f"{NAME}-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: extbackend\nVersion: 0.1\n",
    f"{NAME}-0.1.dist-info/entry_points.txt": "[lstm_exp.backends]\nextbackend = extbackend.plugin:PLUGIN\n",
}


def _write_backend_folder(site: Path) -> None:
    for relative, text in FILES.items():
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


def test_a_backend_from_a_folder_runs_the_smoke_sweep_with_no_edit_of_the_package(tmp_path):
    site = tmp_path / "site"
    _write_backend_folder(site)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO_ROOT)])
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "lstm_exp", "experiment=smoke", f"backend=onnxruntime,{NAME}", "batch=4",
         "progress=false", f"hydra.sweep.dir={sweep}", "-m"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"

    rows = {r["variant"]: r for r in csv.DictReader((sweep / "summary.csv").open())}
    assert set(rows) == {"onnxruntime-cpu-fp32", f"{NAME}-cpu-fp32"}
    assert {r["status"] for r in rows.values()} == {"FINISHED"}
    # the same ONNX on the same batches: the same hypotheses
    assert rows[f"{NAME}-cpu-fp32"]["PER %"] == rows["onnxruntime-cpu-fp32"]["PER %"]

    (report_path,) = [p for p in sweep.glob("*/report.json") if NAME in p.parent.name]
    report = json.loads(report_path.read_text())
    assert report["variant"] == f"{NAME}-cpu-fp32" and report["backend"] == NAME
    keys = report["stage_keys"]
    assert set(keys) >= {"train", "export", "seal"}
    sealed = tmp_path / "cache" / "seal" / keys["seal"] / "model.onnx"
    assert sealed.read_bytes() == (tmp_path / "cache" / "export" / keys["export"] / "model.onnx").read_bytes()
    assert len(report["stage_summaries"]["seal"]["sha256"]) == 64
