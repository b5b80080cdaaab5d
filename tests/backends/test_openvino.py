"""backend=openvino: the same ONNX as onnxruntime, compiled per batch shape.

Unit level (a tiny dynamic-batch ONNX): equal to onnxruntime under every performance hint and
batch size (THROUGHPUT's slices and their zero-padded last slice included), one compile per
batch shape, the precision hint always explicit, the tags; the bf16 branch this CPU takes.
End to end (the smoke experiment through ``python -m lstm_exp``): PER equal to onnxruntime
fp32, parity against torch fp32, the variant and OpenVINO's tags on the run; bf16 run (PER within
0.3 points of fp32) or refused with one line, whichever this CPU calls for.  The missing package
and bad values through the CLI: tests/reliability/test_openvino_inputs.py.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lstm_exp.backends.threads import usable_cores

pytest.importorskip("openvino")

from lstm_exp.backends.openvino.plugin import BF16_CPU_FLAGS, cpu_flags  # noqa: E402
from lstm_exp.backends.registry import plugin_for  # noqa: E402
from lstm_exp.errors import ConfigError  # noqa: E402
from lstm_exp.experiment import preflight, validate  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "acl_sim"))
from helpers import make_tiny_onnx, onnxruntime_log_probs  # noqa: E402

#: does this machine's CPU have bf16 instructions OpenVINO uses? (decides which branch the bf16 tests expect)
CPU_HAS_BF16 = bool(cpu_flags() & set(BF16_CPU_FLAGS))
PER_BF16_TOLERANCE = 0.3


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    return make_tiny_onnx(tmp_path_factory.mktemp("ov") / "tiny.onnx", frames=390, classes=7)


def _backend(compose_config, *overrides: str):
    exp = validate(compose_config("backend=openvino", *overrides))
    return plugin_for("openvino").create(exp.backend)


def _batch(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, 390, 243), dtype=np.float32)


@pytest.mark.parametrize("hint", ["auto", "latency", "throughput"])
def test_openvino_equals_onnxruntime_under_every_hint_and_batch(compose_config, tiny_onnx, hint):
    with _backend(compose_config, f"backend.performance_hint={hint}") as backend:
        backend.load(tiny_onnx)
        for rows in (1, 5, 8, 13):  # 13 at THROUGHPUT: slices of 7, the last padded with a zero row
            x = _batch(rows, seed=rows)
            out = backend.run(x)
            expected = onnxruntime_log_probs(tiny_onnx, x)
            assert out.log_probs.shape == expected.shape == (195, rows, 7)
            np.testing.assert_allclose(out.log_probs, expected, atol=1e-5, rtol=1e-5)
            assert out.infer_ms > 0


def test_each_batch_shape_is_compiled_once_with_its_hint(compose_config, tiny_onnx):
    with _backend(compose_config, "backend.threads=2") as backend:
        backend.load(tiny_onnx)
        for rows in (16, 16, 3, 16, 3):
            backend.run(_batch(rows))
        assert backend.compiles == 2  # [8, 390, 243] (THROUGHPUT, two slices of 16) and [3, 390, 243] (LATENCY)
        assert backend.hints_compiled == {"LATENCY", "THROUGHPUT"}
        assert backend.hint_for(7) == "LATENCY" and backend.hint_for(8) == "THROUGHPUT"
        tags = backend.describe()
    assert tags["openvino.compiles"] == "2" and tags["openvino.hints_compiled"] == "LATENCY,THROUGHPUT"
    assert tags["openvino.streams"] == "2" and float(tags["openvino.compile_ms"]) > 0


def test_least_recently_used_shape_is_dropped_past_the_limit(compose_config, tiny_onnx):
    with _backend(compose_config, "backend.max_compiled_shapes=1", "backend.performance_hint=latency") as backend:
        backend.load(tiny_onnx)
        for rows in (2, 3, 2):
            backend.run(_batch(rows))
        assert backend.compiles == 3


def test_precision_hint_is_always_explicit(compose_config, tiny_onnx):
    with _backend(compose_config, "backend.threads=1", "backend.streams=3") as backend:
        latency, throughput = backend.properties("LATENCY"), backend.properties("THROUGHPUT")
        assert latency == {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1}
        assert throughput["NUM_STREAMS"] == 3 and throughput["INFERENCE_PRECISION_HINT"] == "f32"
        backend.load(tiny_onnx)
        backend.run(_batch(2))
        (entry,) = backend._shapes.values()
        assert entry.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"


def test_describe_records_version_device_and_capabilities(compose_config, tiny_onnx):
    import openvino

    core = openvino.Core()
    with _backend(compose_config) as backend:
        backend.load(tiny_onnx)
        backend.run(_batch(1))
        tags = backend.describe()
    assert tags["variant"] == "openvino-cpu-fp32" and tags["precision"] == "fp32" and tags["device"] == "cpu"
    assert tags["runtime"] == f"openvino {openvino.__version__}"
    assert tags["device_name"] == core.get_property("CPU", "FULL_DEVICE_NAME")
    assert tags["openvino.optimization_capabilities"] == ",".join(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    assert tags["openvino.inference_precision_hint"] == "f32"
    # backend.threads null: the cores of this process // 1 job (outside a sweep)
    assert tags["threads"] == str(usable_cores()) and tags["lstm_exp.threads_from"].startswith("auto: ")


@pytest.mark.parametrize("overrides,needle", [
    (["backend.precision=fp16"], "write one of fp32, bf16"),
    (["backend.precision=int8"], "write one of fp32, bf16"),
    (["backend.device=gpu"], "write cpu"),
    (["backend.performance_hint=fast"], "write one of auto, latency, throughput"),
    (["backend.threads=-1"], "backend.threads=-1 must be null (auto"),
    (["backend.streams=-2"], "backend.streams=-2 must be >= 0"),
    (["export.dynamic=false"], "remove export.dynamic=false"),
])
def test_bad_openvino_values_are_refused_at_validation(compose_config, overrides, needle):
    with pytest.raises(ConfigError) as err:
        validate(compose_config("backend=openvino", *overrides))
    assert needle in str(err.value)


def test_bf16_runs_or_is_refused_as_this_cpu_calls_for(compose_config, tiny_onnx):
    exp = validate(compose_config("backend=openvino", "backend.precision=bf16"))
    assert str(exp.backend.variant()) == "openvino-cpu-bf16"
    if not CPU_HAS_BF16:
        with pytest.raises(ConfigError) as err:
            preflight(exp)
        message = str(err.value)
        assert "backend.precision=bf16" in message and "avx512_bf16" in message and "write backend.precision=fp32" in message
        return
    preflight(exp)
    with plugin_for("openvino").create(exp.backend) as backend:
        backend.load(tiny_onnx)
        x = _batch(4)
        out = backend.run(x)
        (entry,) = backend._shapes.values()
        assert entry.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"
    np.testing.assert_allclose(out.log_probs, onnxruntime_log_probs(tiny_onnx, x), atol=0.15)


# -- end to end: the smoke experiment through the CLI ------------------------------------------------
def _cli(cwd: Path, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "lstm_exp", "experiment=smoke", "progress=false", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def _last_run(cwd: Path) -> tuple[str, dict, dict]:
    """The latest run's status, metrics and tags from the workspace's MLflow store."""
    with sqlite3.connect(cwd / "mlflow.db") as db:
        run_id, status = db.execute("SELECT run_uuid, status FROM runs ORDER BY start_time DESC LIMIT 1").fetchone()
        metrics = dict(db.execute("SELECT key, value FROM latest_metrics WHERE run_uuid = ?", (run_id,)))
        tags = dict(db.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)))
    return status, metrics, tags


@pytest.fixture(scope="module")
def smoke_space(tmp_path_factory) -> Path:
    """A workspace where the smoke experiment ran on onnxruntime fp32 (and trained the model)."""
    pytest.importorskip("espeakng_loader")
    cwd = tmp_path_factory.mktemp("ov_smoke")
    proc = _cli(cwd, "backend=onnxruntime")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd


def test_smoke_on_openvino_equals_onnxruntime_and_torch(smoke_space):
    _, ort_metrics, _ = _last_run(smoke_space)
    proc = _cli(smoke_space, "backend=openvino", "infer.parity=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    status, metrics, tags = _last_run(smoke_space)
    assert status == "FINISHED"
    assert metrics["per"] == pytest.approx(ort_metrics["per"], abs=1e-6)
    assert metrics["parity_max_abs_diff"] < 1e-4 and metrics["parity_per_delta"] == 0
    assert tags["variant"] == "openvino-cpu-fp32" and tags["runtime"].startswith("openvino ")
    assert tags["openvino.inference_precision_hint"] == "f32" and tags["device_name"]
    assert int(tags["openvino.compiles"]) >= 1 and "openvino-cpu-fp32" in proc.stdout


def test_smoke_bf16_within_a_third_of_a_point_or_refused(smoke_space):
    proc = _cli(smoke_space, "backend=openvino")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, fp32, _ = _last_run(smoke_space)
    proc = _cli(smoke_space, "backend=openvino", "backend.precision=bf16")
    status, metrics, tags = _last_run(smoke_space)
    if CPU_HAS_BF16:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert tags["variant"] == "openvino-cpu-bf16" and tags["openvino.inference_precision_hint"] == "bf16"
        assert abs(metrics["per"] - fp32["per"]) <= PER_BF16_TOLERANCE
    else:
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.startswith("lstm_exp: error: ")]
        assert len(lines) == 1 and "backend.precision=bf16" in lines[0] and "avx512_bf16" in lines[0]
        assert status == "FAILED" and "avx512_bf16" in tags["lstm_exp.error"]
