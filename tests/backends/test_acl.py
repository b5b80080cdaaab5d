"""AclBackend through the pyacl simulator (tests/acl_sim): same log-probs as onnxruntime,
correct resource handling, one ACL lifetime per process, both pointer APIs, both run modes, the
chip check, fp16 precision, clear errors; and the simulator's own strictness."""
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
from lstm_exp.backends.acl.backend import AclBackend, AclCallError
from lstm_exp.backends.acl.inputs import infer_bin_batches, read_inference_outputs, write_bin_batches
from lstm_exp.errors import ConfigError, MissingDependencyError

_spec = importlib.util.spec_from_file_location("acl_sim_helpers", Path(__file__).parents[1] / "acl_sim" / "helpers.py")
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)

FRAMES = 390
#: float16's unit roundoff; the simulator rounds an fp16 OM's weights, input and output to float16
FP16_UNIT_ROUNDOFF = float(np.finfo(np.float16).eps) / 2
FP32 = AtcConfig(precision_mode="force_fp32")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny ONNX and OMs built from it with fake_atc: fp32 static batch 4 and gears 1/2/4, FP16
    output, ATC's default precision (force_fp16), and one for an Ascend310P3."""
    root = tmp_path_factory.mktemp("acl_models")
    onnx = helpers.make_tiny_onnx(root / "tiny.onnx")
    bin_dir = root / "bin"
    helpers.install_fake_atc(bin_dir)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
        static = convert_onnx_to_om(onnx, root / "static", 4, FP32)
        dynamic = convert_onnx_to_om(onnx, root / "dynamic", [1, 2, 4], AtcConfig(dynamic_batch=True, precision_mode="force_fp32"))
        fp16 = convert_onnx_to_om(onnx, root / "fp16", 4, AtcConfig(extra_args=["--output_type=FP16"]))
        default = convert_onnx_to_om(onnx, root / "default", 4, AtcConfig())
        p3 = convert_onnx_to_om(onnx, root / "p3", 4, AtcConfig(soc_version="Ascend310P3", precision_mode="force_fp32"))
    return SimpleNamespace(onnx=onnx, static=static, dynamic=dynamic, fp16=fp16, default=default, p3=p3)


@pytest.fixture
def acl(monkeypatch):
    """The simulated ``acl`` module, importable as ``acl`` for this test only, in a fresh state."""
    yield from helpers.simulated_acl(monkeypatch)


def batch_of(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((size, FRAMES, 243)).astype(np.float32)


def assert_clean(acl) -> None:
    """End the simulated process's ACL use (what atexit does) and check nothing leaked or failed."""
    assert acl_lifetime.shutdown() == []
    assert acl._sim_leaks() == []
    assert acl._sim_errors() == []
    assert acl._sim_counts() == {"init": 1, "finalize": 1}


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
        dims, ret = acl.mdl.get_cur_output_dims(backend.runtime._desc, 0)
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
    # what the job took is back; ACL, the device and its context stay with the process
    assert [leak.split(" 0x")[0] for leak in acl._sim_leaks()] == ["context", "device 1 not reset", "acl.init without acl.finalize"]
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
    assert acl_lifetime.shutdown() == [] and acl._sim_leaks() == []


def test_failed_load_releases_what_it_took(models, acl):
    backend = AclBackend(AclBackendConfig())
    acl._sim_fail_next("acl.rt.malloc", 200000)
    with pytest.raises(AclCallError, match=r"acl\.rt\.malloc failed with error code 200000 \(ACL_ERROR_BAD_ALLOC\)"):
        backend.load(models.static)
    assert acl_lifetime.shutdown() == [] and acl._sim_leaks() == []


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


# ----------------------------------------------------------------- one ACL lifetime per process
def test_five_jobs_in_one_process_initialise_acl_once(models, acl):
    """A -m sweep's jobs: load/run/close five times; init, set_device and create_context once."""
    for job, (om, size) in enumerate([(models.static, 1), (models.dynamic, 2), (models.static, 3), (models.dynamic, 4), (models.static, 4)]):
        with AclBackend(AclBackendConfig()) as backend:
            backend.load(om)
            x = batch_of(size, seed=job)
            np.testing.assert_allclose(backend.run(x).log_probs, helpers.onnxruntime_log_probs(models.onnx, x), rtol=1e-5, atol=1e-5)
    calls = acl._sim_calls()
    assert acl._sim_counts() == {"init": 1, "finalize": 0}
    assert calls.count("acl.rt.set_device") == 1 and calls.count("acl.rt.create_context") == 1
    assert calls.count("acl.rt.set_context") == 4  # later jobs make the kept context current
    assert calls.count("acl.mdl.load_from_file") == 5 and calls.count("acl.mdl.unload") == 5
    assert_clean(acl)  # the atexit shutdown: one finalize


def test_no_acl_init_after_finalize(models, acl):
    with AclBackend(AclBackendConfig()) as backend:
        backend.load(models.static)
    assert acl_lifetime.shutdown() == []
    with pytest.raises(AclLifetimeError, match="already finalised in this process") as info:
        AclBackend(AclBackendConfig()).load(models.static)
    assert "\n" not in str(info.value)
    assert acl.init() != 0  # the simulator refuses it too, as nothing documents it
    assert acl._sim_counts() == {"init": 2, "finalize": 1}


def test_acl_initialised_by_someone_else_is_left_to_them(models, acl):
    assert acl.init() == 0  # e.g. another library in this process
    with AclBackend(AclBackendConfig()) as backend:
        backend.load(models.static)
        backend.run(batch_of(4))
    assert acl_lifetime.shutdown() == []
    assert acl._sim_counts() == {"init": 2, "finalize": 0}  # REPEAT_INITIALIZE taken as success; no finalize of theirs
    assert acl.finalize() == 0 and acl._sim_leaks() == []


# ----------------------------------------------------------------- older CANN, run mode, chip
def test_cann5_pointer_api(models, acl):
    """CANN 5.x (the recipe's) has numpy_to_ptr / ptr_to_numpy, not bytes_to_ptr / ptr_to_bytes."""
    acl._sim_configure(pointer_api="cann5")
    assert not hasattr(acl.util, "bytes_to_ptr")
    with AclBackend(AclBackendConfig()) as backend:
        backend.load(models.dynamic)
        for size in (3, 1):
            x = batch_of(size, seed=size)
            np.testing.assert_allclose(backend.run(x).log_probs, helpers.onnxruntime_log_probs(models.onnx, x), rtol=1e-5, atol=1e-5)
        assert backend.describe()["acl.pointer_api"] == "numpy_to_ptr"
    calls = acl._sim_calls()
    assert calls.count("acl.util.numpy_to_ptr") == 2 and calls.count("acl.util.ptr_to_numpy") == 2
    assert_clean(acl)


def test_on_the_device_every_copy_is_device_to_device(models, acl):
    acl._sim_configure(run_mode=acl.ACL_DEVICE)
    with AclBackend(AclBackendConfig()) as backend:
        backend.load(models.static)
        x = batch_of(4)
        np.testing.assert_allclose(backend.run(x).log_probs, helpers.onnxruntime_log_probs(models.onnx, x), rtol=1e-5, atol=1e-5)
        assert backend.describe()["acl.run_mode"] == "ACL_DEVICE"
    assert_clean(acl)  # the simulator refuses kinds 1 and 2 on ACL_DEVICE: no errors means kind 3 throughout


def test_simulator_run_mode_constants_follow_the_docs(acl):
    assert (acl.ACL_DEVICE, acl.ACL_HOST) == (0, 1)
    assert acl.rt.get_run_mode() == (acl.ACL_HOST, 0)  # the default: a PCIe card in a server


def test_om_for_another_chip_is_refused_before_loading(models, acl):
    acl._sim_configure(soc_name="Ascend310P3")
    with pytest.raises(ConfigError) as info:
        AclBackend(AclBackendConfig()).load(models.static)
    message = str(info.value)
    assert "\n" not in message
    assert "built for Ascend310 " in message and "this device is Ascend310P3" in message
    assert "backend.atc.soc_version=Ascend310P3" in message
    assert "acl.mdl.load_from_file" not in acl._sim_calls()
    with AclBackend(AclBackendConfig()) as backend:  # the OM built for the chip runs
        backend.load(models.p3)
        assert backend.describe()["soc"] == "Ascend310P3" == backend.describe()["om.soc_version"]
    assert_clean(acl)


# ----------------------------------------------------------------- precision
def test_atc_default_precision_is_fp16_and_on_record(models, acl):
    """The guide's OM is built without --precision_mode, i.e. force_fp16: its accuracy is an fp16
    accuracy.  fp32 matches onnxruntime to float32 noise; fp16 does not, within fp16's error."""
    x = batch_of(4, seed=11)
    reference = helpers.onnxruntime_log_probs(models.onnx, x)
    outputs, tags = {}, {}
    for name in ("static", "default"):
        with AclBackend(AclBackendConfig()) as backend:
            backend.load(getattr(models, name))
            outputs[name] = backend.run(x).log_probs
            tags[name] = backend.describe()["om.precision"]
    assert tags == {"static": "force_fp32", "default": "force_fp16 (atc default)"}
    np.testing.assert_allclose(outputs["static"], reference, rtol=1e-5, atol=1e-5)
    fp16_error = np.abs(outputs["default"] - reference)
    # float16 rounds weights, input and output: errors 100x above float32's, and within a few
    # units of float16 roundoff of the log-probs' magnitude (1.1 units with this model and seed)
    assert fp16_error.max() > 100 * 1e-5
    assert fp16_error.max() < 8 * FP16_UNIT_ROUNDOFF * float(np.abs(reference).max())
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
    om = convert_onnx_to_om(onnx, tmp_path / "om", [1, 2, 4], AtcConfig(dynamic_batch=True, precision_mode="force_fp32"))
    x = batch_of(3, seed=7)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    with AclBackend(AclBackendConfig()) as backend:
        backend.load(om)
        got = backend.run(x).log_probs
    assert got.shape == want.shape == (FRAMES // 2, 3, 41)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert_clean(acl)
