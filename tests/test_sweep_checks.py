"""A sweep's start asks each swept backend's plugin for its config-free checks
(``BackendPlugin.sweep_preflight``) when its jobs run a runtime, and names no backend itself."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from lstm_exp import sweep_checks
from lstm_exp.backends import registry
from lstm_exp.backends.plugin import BackendPlugin
from lstm_exp.errors import MissingDependencyError


class Absent(BackendPlugin):
    name = "absent"

    def sweep_preflight(self) -> None:
        raise MissingDependencyError("backend=absent needs its runtime: pip install absent-runtime")


def _config(*overrides: str):
    return OmegaConf.create({"backend": {"name": "torch"}, "stage": "all",
                             "hydra": {"overrides": {"task": list(overrides)}}})


@pytest.fixture
def absent(monkeypatch):
    monkeypatch.setitem(registry.PLUGINS, "absent", Absent())


def test_a_swept_backend_without_its_runtime_stops_the_sweep(absent, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        sweep_checks.check_sweep_start(_config("backend=torch,absent", "batch=1,4"), tmp_path / "new")
    assert stop.value.code == 1
    assert capsys.readouterr().err.strip() == "lstm_exp: error: backend=absent needs its runtime: pip install absent-runtime"


@pytest.mark.parametrize("overrides", [("backend=torch,onnxruntime",), ("backend=torch,absent", "stage=export"),
                                       ("backend=nosuch,torch",)])
def test_runtimes_not_run_or_not_known_are_not_checked_here(absent, tmp_path, overrides):
    sweep_checks.check_sweep_start(_config(*overrides), tmp_path / "new")  # no refusal


def _ray_config(address):
    config = _config()
    config.hydra.launcher = {"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher",
                             "ray": {"init": {"address": address}}}
    return config


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("form", ["{}", "ray://{}"])
def test_a_ray_head_that_does_not_answer_is_one_line(tmp_path, capsys, form):
    address = f"127.0.0.1:{_closed_port()}"
    with pytest.raises(SystemExit) as stop:
        sweep_checks.check_sweep_start(_ray_config(form.format(address)), tmp_path / "new")
    assert stop.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lstm_exp: error: hydra.launcher.ray.init.address={address}: no Ray head answers there")
    assert "ray start --head --port=" in err and "\n" not in err


def test_a_listening_ray_head_address_passes_and_ray_address_is_read(tmp_path, monkeypatch):
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        sweep_checks.check_sweep_start(_ray_config(f"127.0.0.1:{port}"), tmp_path / "a")
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
        assert sweep_checks.ray_head_address(_ray_config("auto")) == f"127.0.0.1:{port}"
        sweep_checks.check_sweep_start(_ray_config("auto"), tmp_path / "b")
    monkeypatch.delenv("RAY_ADDRESS")
    assert sweep_checks.ray_head_address(_ray_config("auto")) is None  # Ray's own local lookup
    assert sweep_checks.ray_head_address(_ray_config(None)) is None  # local mode: the launcher starts Ray
    assert sweep_checks.ray_head_address(_config()) is None  # no Ray launcher
