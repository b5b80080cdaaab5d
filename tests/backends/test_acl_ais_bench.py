"""backend.runtime=ais_bench through the ais_bench simulator (tests/acl_sim/ais_bench, built on the
pyacl simulator): the same log-probs as pyacl, model time from summary().exec_time_list, one
ACL owner per process, and a one-line error without ais_bench."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lstm_exp.backends.acl.config import AclBackendConfig, AtcConfig
from lstm_exp.backends.acl import acl_lifetime
from lstm_exp.backends.acl.acl_lifetime import AclLifetimeError
from lstm_exp.backends.acl.atc import convert_onnx_to_om
from lstm_exp.backends.acl.backend import AclBackend
from lstm_exp.errors import ConfigError, MissingDependencyError

_spec = importlib.util.spec_from_file_location("acl_sim_helpers", Path(__file__).parents[1] / "acl_sim" / "helpers.py")
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)

FRAMES = 390
AIS = AclBackendConfig(runtime="ais_bench")
PYACL = AclBackendConfig()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("ais_models")
    onnx = helpers.make_tiny_onnx(root / "tiny.onnx")
    helpers.install_fake_atc(root / "bin")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{root / 'bin'}:/usr/bin:/bin")
        static = convert_onnx_to_om(onnx, root / "static", 4, AtcConfig())
        dynamic = convert_onnx_to_om(onnx, root / "dynamic", [1, 2, 4], AtcConfig(dynamic_batch=True))
    return SimpleNamespace(onnx=onnx, static=static, dynamic=dynamic)


@pytest.fixture
def sim(monkeypatch):
    """Fresh pyacl and ais_bench simulators (a fresh process), importable for this test only."""
    monkeypatch.syspath_prepend(str(helpers.ACL_SIM_DIR))
    for name in [m for m in sys.modules if m == "acl" or m == "ais_bench" or m.startswith("ais_bench.")]:
        monkeypatch.delitem(sys.modules, name)
    acl = importlib.import_module("acl")
    acl._sim_reset()
    interface = importlib.import_module("ais_bench.infer.interface")
    acl_lifetime._new_process_for_tests()
    yield SimpleNamespace(acl=acl, interface=interface)
    acl_lifetime.shutdown()
    acl_lifetime._new_process_for_tests()
    for name in [m for m in sys.modules if m == "acl" or m == "ais_bench" or m.startswith("ais_bench.")]:
        del sys.modules[name]


def batch_of(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((size, FRAMES, 243)).astype(np.float32)


def run_all(cfg: AclBackendConfig, om: Path, sizes) -> list:
    with AclBackend(cfg) as backend:
        backend.load(om)
        return [backend.run(batch_of(size, seed=size)) for size in sizes]


@pytest.mark.parametrize("which", ["static", "dynamic"])
def test_ais_bench_gives_the_pyacl_log_probs(models, sim, monkeypatch, which):
    om = getattr(models, which)
    sizes = (1, 3, 4)
    ais = run_all(AIS, om, sizes)
    calls = sim.acl._sim_calls()
    assert calls.count("acl.init") == 1 and "acl.mdl.execute" not in calls  # ais_bench's own session
    assert acl_lifetime.shutdown() == []  # the atexit hook: InferSession.finalize()
    assert sim.acl._sim_counts() == {"init": 1, "finalize": 1} and sim.acl._sim_leaks() == []
    # pyacl in a fresh (simulated) process: ais_bench and pyacl never share one
    sim.acl._sim_reset()
    acl_lifetime._new_process_for_tests()
    pyacl = run_all(PYACL, om, sizes)
    for size, a, p in zip(sizes, ais, pyacl):
        assert a.log_probs.shape == p.log_probs.shape == (FRAMES // 2, size, 7)
        np.testing.assert_array_equal(a.log_probs, p.log_probs)  # the same fp16 OM, the same numbers
        assert a.infer_ms > 0


def test_model_time_is_the_newest_exec_time_entry(models, sim):
    with AclBackend(AIS) as backend:
        backend.load(models.dynamic)
        for size in (1, 2, 4):
            out = backend.run(batch_of(size))
            start, end = backend.runtime.session.summary().exec_time_list[-1]
            assert out.infer_ms == pytest.approx(end - start)
        assert len(backend.runtime.session.summary().exec_time_list) == 3
        assert backend.describe()["acl.runtime"] == "ais_bench" and backend.describe()["om_batch"] == "1,2,4"
        with pytest.raises(ConfigError, match="larger than every gear"):
            backend.run(batch_of(5))
    assert sim.acl._sim_leaks() == ["acl.init without acl.finalize"]  # until the process ends


def test_pyacl_and_ais_bench_never_share_a_process(models, sim):
    run_all(AIS, models.static, (4,))
    with pytest.raises(AclLifetimeError) as info:
        AclBackend(PYACL).load(models.static)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("backend.runtime=pyacl cannot run in this process: backend.runtime=ais_bench already owns ACL")
    acl_lifetime.shutdown()
    sim.acl._sim_reset()
    acl_lifetime._new_process_for_tests()
    run_all(PYACL, models.static, (4,))
    with pytest.raises(AclLifetimeError, match="^backend.runtime=ais_bench cannot run in this process: backend.runtime=pyacl already owns ACL"):
        AclBackend(AIS).load(models.static)
    assert sim.acl._sim_counts()["init"] == 1  # refused before ais_bench touched ACL


def test_without_ais_bench_one_line_says_where_it_comes_from(models, monkeypatch):
    monkeypatch.setitem(sys.modules, "ais_bench", None)
    monkeypatch.setitem(sys.modules, "ais_bench.infer", None)
    monkeypatch.setitem(sys.modules, "ais_bench.infer.interface", None)
    with pytest.raises(MissingDependencyError) as info:
        AclBackend(AIS).load(models.static)
    message = str(info.value)
    assert "\n" not in message
    assert "not on PyPI" in message and "gitee.com/ascend/msit" in message and "backend.runtime=pyacl" in message


@pytest.mark.parametrize("cfg,runtime_class", [(PYACL, "PyaclRuntime"), (AIS, "AisBenchRuntime")])
def test_each_runtime_is_its_own_class_behind_one_interface(models, sim, cfg, runtime_class):
    from lstm_exp.backends.acl.backend import RUNTIMES
    from lstm_exp.backends.acl.config import ACL_RUNTIMES
    from lstm_exp.backends.acl.om_runtime import OmRuntime

    assert set(RUNTIMES) == set(ACL_RUNTIMES)  # the schema's choices are the classes there are
    backend = AclBackend(cfg)
    backend.load(models.static)
    runtime = backend.runtime
    assert isinstance(runtime, OmRuntime) and type(runtime).__name__ == runtime_class
    assert (runtime.gears, runtime.om_batch, runtime.sample_dims) == ([], 4, (FRAMES, 243))
    log_probs, ms = runtime.execute(batch_of(4))  # a batch the OM takes, as the backend pads it
    assert log_probs.shape == (FRAMES // 2, 4, 7) and ms > 0
    backend.close()
    assert backend.runtime is None
    backend.close()  # twice is fine
    with pytest.raises(RuntimeError, match="after close"):
        runtime.execute(batch_of(4))
