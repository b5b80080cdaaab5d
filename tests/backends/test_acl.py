"""AclBackend through the pyacl simulator (tests/acl_sim): same log-probs as onnxruntime,
correct resource handling, clear errors; and the simulator's own strictness."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conf_schemas.acl import AclBackendConfig, AtcConfig
from lstm_exp.backends.acl.atc import convert_onnx_to_om
from lstm_exp.backends.acl.backend import AclBackend, AclCallError
from lstm_exp.data.acl_inputs import infer_bin_batches, read_inference_outputs, write_bin_batches
from lstm_exp.errors import ConfigError, MissingDependencyError

_spec = importlib.util.spec_from_file_location("acl_sim_helpers", Path(__file__).parents[1] / "acl_sim" / "helpers.py")
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)

FRAMES = 390


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny ONNX and three OMs built from it with fake_atc: static batch 4, gears 1/2/4, FP16 output."""
    root = tmp_path_factory.mktemp("acl_models")
    onnx = helpers.make_tiny_onnx(root / "tiny.onnx")
    bin_dir = root / "bin"
    helpers.install_fake_atc(bin_dir)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
        static = convert_onnx_to_om(onnx, root / "static", 4, AtcConfig())
        dynamic = convert_onnx_to_om(onnx, root / "dynamic", [1, 2, 4], AtcConfig(dynamic_batch=True))
        fp16 = convert_onnx_to_om(onnx, root / "fp16", 4, AtcConfig(extra_args=["--output_type=FP16"]))
    return SimpleNamespace(onnx=onnx, static=static, dynamic=dynamic, fp16=fp16)


@pytest.fixture
def acl(monkeypatch):
    """The simulated ``acl`` module, importable as ``acl`` for this test only, in a fresh state."""
    monkeypatch.syspath_prepend(str(helpers.ACL_SIM_DIR))
    monkeypatch.setitem(sys.modules, "acl", None)  # undo removes it again
    del sys.modules["acl"]
    module = importlib.import_module("acl")
    module._sim_reset()
    return module


def batch_of(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((size, FRAMES, 243)).astype(np.float32)


def assert_clean(acl) -> None:
    assert acl._sim_leaks() == []
    assert acl._sim_errors() == []


def test_load_without_pyacl_says_what_to_install(models, monkeypatch):
    monkeypatch.setitem(sys.modules, "acl", None)  # import acl -> ImportError
    backend = AclBackend(AclBackendConfig())
    with pytest.raises(MissingDependencyError) as info:
        backend.load(models.static)
    message = str(info.value)
    assert message.startswith("backend=acl needs pyacl (the `acl` module from the Ascend CANN toolkit: source <CANN>/set_env.sh")
    assert "\n" not in message
    backend.close()  # nothing to tear down, still fine


def test_static_om_matches_onnxruntime_and_pads_small_batches(models, acl):
    with AclBackend(AclBackendConfig()) as backend:
        backend.load(models.static)
        for size in (4, 3, 1):
            x = batch_of(size, seed=size)
            out = backend.run(x)
            expected = helpers.onnxruntime_log_probs(models.onnx, x)
            assert out.log_probs.shape == (FRAMES // 2, size, 7) and out.log_probs.dtype == np.float32
            np.testing.assert_allclose(out.log_probs, expected, rtol=1e-5, atol=1e-5)
            assert out.infer_ms > 0
        with pytest.raises(ConfigError, match="static batch 4"):
            backend.run(batch_of(5))
        assert backend.describe()["om_batch"] == "4"
    assert "acl.mdl.set_dynamic_batch_size" not in acl._sim_calls()
    assert_clean(acl)


def test_dynamic_om_runs_the_smallest_fitting_gear(models, acl):
    backend = AclBackend(AclBackendConfig())
    backend.load(models.dynamic)
    for size in (1, 2, 3, 4):
        x = batch_of(size, seed=10 + size)
        out = backend.run(x)
        np.testing.assert_allclose(out.log_probs, helpers.onnxruntime_log_probs(models.onnx, x), rtol=1e-5, atol=1e-5)
        dims, ret = acl.mdl.get_cur_output_dims(backend._desc, 0)
        assert ret == 0 and dims["dims"][1] == {1: 1, 2: 2, 3: 4, 4: 4}[size]
    assert acl._sim_calls().count("acl.mdl.set_dynamic_batch_size") == 4
    with pytest.raises(ConfigError, match="larger than every gear"):
        backend.run(batch_of(5))
    assert backend.describe()["om_batch"] == "1,2,4"
    backend.close()
    assert_clean(acl)


def test_float16_output_comes_back_as_float32(models, acl):
    with AclBackend(AclBackendConfig()) as backend:
        backend.load(models.fp16)
        x = batch_of(2)
        out = backend.run(x)
    assert out.log_probs.dtype == np.float32
    np.testing.assert_allclose(out.log_probs, helpers.onnxruntime_log_probs(models.onnx, x), atol=2e-2)
    assert_clean(acl)


def test_missing_close_is_a_leak_and_close_is_idempotent(models, acl):
    backend = AclBackend(AclBackendConfig(device_id=1))
    backend.load(models.dynamic)
    backend.run(batch_of(2))
    leaks = acl._sim_leaks()
    assert any("device memory" in leak for leak in leaks) and any("model" in leak for leak in leaks)
    assert "device 1 not reset" in leaks
    backend.close()
    backend.close()
    assert_clean(acl)
    calls = acl._sim_calls()
    order = ["acl.destroy_data_buffer", "acl.mdl.destroy_dataset", "acl.mdl.unload", "acl.mdl.destroy_desc",
             "acl.rt.free", "acl.rt.free_host", "acl.rt.destroy_stream", "acl.rt.destroy_context",
             "acl.rt.reset_device", "acl.finalize"]
    last_positions = [max(i for i, c in enumerate(calls) if c == name) for name in order]
    assert last_positions == sorted(last_positions)


def test_failed_execute_names_the_call_and_code(models, acl):
    with AclBackend(AclBackendConfig()) as backend:
        backend.load(models.static)
        acl._sim_fail_next("acl.mdl.execute", 507011)
        with pytest.raises(AclCallError, match=r"acl\.mdl\.execute failed with error code 507011"):
            backend.run(batch_of(4))
    assert acl._sim_leaks() == []


def test_failed_load_releases_what_it_took(models, acl):
    backend = AclBackend(AclBackendConfig())
    acl._sim_fail_next("acl.rt.malloc", 200000)
    with pytest.raises(AclCallError, match=r"acl\.rt\.malloc failed with error code 200000 \(ACL_ERROR_BAD_ALLOC\)"):
        backend.load(models.static)
    assert acl._sim_leaks() == []


def test_wrong_frames_and_missing_om_are_config_errors(models, acl, tmp_path):
    backend = AclBackend(AclBackendConfig())
    with pytest.raises(ConfigError, match="does not exist"):
        backend.load(tmp_path / "none.om")
    backend.load(models.static)
    with pytest.raises(ConfigError, match="infer.pad_to=390"):
        backend.run(np.zeros((4, 200, 243), dtype=np.float32))
    backend.close()
    assert_clean(acl)


def test_bin_files_through_the_backend_give_per_utterance_log_probs(models, acl, tmp_path):
    rng = np.random.default_rng(3)
    batches, expected = [], {}
    for n, size in enumerate((4, 3)):
        lengths = rng.integers(20, FRAMES // 2, size=size) * 2
        x = batch_of(size, seed=20 + n)
        for row, length in enumerate(lengths):
            x[row, length:] = 0.0
        ids = [f"utt{n}_{row}" for row in range(size)]
        batches.append(SimpleNamespace(ids=ids, x=x, lengths=lengths))
        reference = helpers.onnxruntime_log_probs(models.onnx, x)
        for row, (utt, length) in enumerate(zip(ids, lengths)):
            expected[utt] = reference[: length // 2, row]
    info = write_bin_batches(batches, tmp_path / "bins")
    with AclBackend(AclBackendConfig()) as backend:
        backend.load(models.static)
        timings = infer_bin_batches(backend, info, tmp_path / "out")
    assert len(timings) == 2 and all(t > 0 for t in timings)
    got = read_inference_outputs(tmp_path / "out", info)
    assert sorted(got) == sorted(expected)
    for utt, log_probs in expected.items():
        np.testing.assert_allclose(got[utt], log_probs, rtol=1e-5, atol=1e-5)
    assert_clean(acl)


# ----------------------------------------------------------------- the simulator itself
def test_simulator_rejects_wrong_sizes_and_freed_memory(acl):
    assert acl.init() == 0 and acl.rt.set_device(0) == 0
    ctx, ret = acl.rt.create_context(0)
    assert ret == 0
    dev, ret = acl.rt.malloc(16, 0)
    data = np.arange(8, dtype=np.float32).tobytes()  # 32 bytes
    src = acl.util.bytes_to_ptr(data)
    assert acl.rt.memcpy(dev, 16, src, 32, 1) != 0  # count > dst_size
    assert acl.rt.memcpy(dev, 64, src, 16, 1) != 0  # dst_size > allocation
    assert acl.rt.memcpy(dev, 16, src, 16, 2) != 0  # wrong direction
    assert acl.rt.memcpy(dev, 16, src, 16, 1) == 0
    with pytest.raises(acl.SimulatedCrash):
        acl.util.ptr_to_bytes(dev, 16)  # host read of device memory
    host, ret = acl.rt.malloc_host(16)
    assert acl.rt.memcpy(host, 16, dev, 16, 2) == 0
    assert acl.util.ptr_to_bytes(host, 16) == data[:16]
    assert acl.rt.free(dev) == 0
    assert acl.rt.memcpy(host, 16, dev, 16, 2) != 0  # use after free
    assert acl.rt.free(dev) != 0  # double free
    assert acl.rt.reset_device(0) != 0  # context and host memory still there
    assert len(acl._sim_errors()) == 7
    assert acl.rt.free_host(host) == 0 and acl.rt.destroy_context(ctx) == 0
    assert acl.rt.reset_device(0) == 0 and acl.finalize() == 0
    assert acl._sim_leaks() == []


def test_simulator_needs_dynamic_batch_set_before_execute(models, acl):
    assert acl.init() == 0 and acl.rt.set_device(0) == 0
    acl.rt.create_context(0)
    model_id, ret = acl.mdl.load_from_file(str(models.dynamic))
    assert ret == 0
    desc = acl.mdl.create_desc()
    assert acl.mdl.get_desc(desc, model_id) == 0
    assert acl.mdl.get_num_inputs(desc) == 2
    datasets = []
    for count, size_of in ((2, acl.mdl.get_input_size_by_index), (1, acl.mdl.get_output_size_by_index)):
        ds = acl.mdl.create_dataset()
        for i in range(count):
            ptr, _ = acl.rt.malloc(size_of(desc, i), 0)
            acl.mdl.add_dataset_buffer(ds, acl.create_data_buffer(ptr, size_of(desc, i)))
        datasets.append(ds)
    assert acl.mdl.execute(model_id, *datasets) != 0
    assert acl.mdl.set_dynamic_batch_size(model_id, datasets[0], 1, 3) != 0  # not a gear
    assert acl.mdl.set_dynamic_batch_size(model_id, datasets[0], 1, 2) == 0
    assert acl.mdl.execute(model_id, *datasets) == 0
    assert acl.rt.destroy_context(next(iter(acl._S.contexts))) != 0  # model still loaded
    assert acl._sim_leaks() != []


def test_project_ctc_model_export_through_atc_and_acl_matches_torch(acl, tmp_path, monkeypatch):
    """The project's own chain: CTCModel -> export_onnx -> (fake) atc with gears -> AclBackend."""
    import torch

    from lstm_exp.model.ctc import CTCModel, ModelArch
    from lstm_exp.model.export import export_onnx

    torch.manual_seed(0)
    model = CTCModel(ModelArch(conv_channels=[4, 4], lstm_layers=2, hidden=16)).eval()
    onnx = export_onnx(model, tmp_path / "ctc.onnx", opset=11, batch=2, frames=FRAMES, dynamic=True)
    bin_dir = tmp_path / "bin"
    helpers.install_fake_atc(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    om = convert_onnx_to_om(onnx, tmp_path / "om", [1, 2, 4], AtcConfig(dynamic_batch=True))
    x = batch_of(3, seed=7)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    with AclBackend(AclBackendConfig()) as backend:
        backend.load(om)
        got = backend.run(x).log_probs
    assert got.shape == want.shape == (FRAMES // 2, 3, 41)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert_clean(acl)
