"""export.onnx_file (an ONNX made elsewhere): validation against the backend, the import's
checks (lstm_exp.model.onnx_file) and onnxruntime on a static batch.  The CLI cases are in
tests/reliability/test_bad_models.py."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from lstm_exp.errors import ConfigError, DataError
from lstm_exp.experiment import load_config, validate
from lstm_exp.model.onnx_file import check_onnx_fits, halved, inspect_onnx

ACL_SIM = Path(__file__).resolve().parents[1] / "acl_sim"
sys.path.insert(0, str(ACL_SIM))
from helpers import make_tiny_onnx  # noqa: E402

sys.path.remove(str(ACL_SIM))


@pytest.mark.parametrize("overrides, says", [
    (["backend=torch"], "backend=torch runs the checkpoint, not an ONNX"),
    (["backend=onnxruntime", "infer.parity=true"], "write infer.parity=false"),
    (["backend=onnxruntime", "model=pretrained", "model.checkpoint=/x/ctc.pth"], "remove one of them"),
])
def test_onnx_file_is_refused_at_validation_where_it_cannot_be_used(tmp_path, overrides, says):
    cfg = load_config("experiment=smoke", "export.onnx_file=/x/lstm.onnx", *overrides, root=tmp_path)
    with pytest.raises(ConfigError, match=says) as caught:
        validate(cfg)
    assert "export.onnx_file=/x/lstm.onnx" in str(caught.value) and "\n" not in str(caught.value)


def test_units_file_needs_a_checkpoint_or_an_onnx_file(tmp_path):
    with pytest.raises(ConfigError, match="model.units_file=/x/units: only used with model.checkpoint or export.onnx_file"):
        validate(load_config("experiment=smoke", "model.units_file=/x/units", root=tmp_path))
    exp = validate(load_config("experiment=smoke", "export.onnx_file=/x/lstm.onnx", "model.units_file=/x/units",
                               root=tmp_path))
    assert exp.export.onnx_file == "/x/lstm.onnx"


def test_inspect_reads_the_static_axes_classes_and_time_halvings(tmp_path):
    onnx = make_tiny_onnx(tmp_path / "static.onnx", frames=390, classes=7, dynamic=False, batch=4)
    facts = inspect_onnx(onnx, 243)
    assert (facts["batch"], facts["frames"], facts["classes"], facts["time_halvings"]) == (4, 390, 7, 1)
    assert halved(np.array([390, 7, 1]), 1).tolist() == [195, 4, 1]
    with pytest.raises(DataError, match="takes 243 features per frame, the prepared features have 80"):
        inspect_onnx(onnx, 80)


def test_static_axes_say_what_to_write():
    facts = {"source": "/m/lstm.onnx", "batch": 16, "frames": 390, "classes": 3}
    units = ["blank", "UNK", "a"]
    check_onnx_fits(facts, batch=16, batching="fixed", pad_to=390, units=units)
    with pytest.raises(ConfigError, match="write batch=16"):
        check_onnx_fits(facts, batch=8, batching="fixed", pad_to=390, units=units)
    with pytest.raises(ConfigError, match="write backend.atc.frames=390"):
        check_onnx_fits(facts, batch=16, batching="fixed", pad_to=300, om_frames=300, units=units)
    with pytest.raises(ConfigError, match="write backend.atc.dynamic_batch=false batch=16"):
        check_onnx_fits(facts, batch=16, batching="fixed", pad_to=390, om_frames=390, om_gears=True,
                        units=units)
    with pytest.raises(DataError, match="3 output classes, but units.txt lists 2 units"):
        check_onnx_fits(facts, batch=16, batching="fixed", pad_to=390, units=units[:2],
                        units_source="units.txt")


def test_onnxruntime_pads_a_smaller_batch_for_a_static_batch_onnx(tmp_path):
    from lstm_exp.backends.onnxruntime.backend import OnnxRuntimeBackend
    from lstm_exp.backends.onnxruntime.config import OnnxRuntimeBackendConfig

    onnx = make_tiny_onnx(tmp_path / "static.onnx", frames=20, classes=5, dynamic=False, batch=4)
    x = np.random.default_rng(0).standard_normal((4, 20, 243)).astype(np.float32)
    with OnnxRuntimeBackend(OnnxRuntimeBackendConfig()) as backend:
        backend.load(onnx)
        full = backend.run(x).log_probs
        last = backend.run(x[:3]).log_probs
    assert full.shape == (10, 4, 5) and last.shape == (10, 3, 5)
    np.testing.assert_allclose(last, full[:, :3], rtol=1e-6, atol=1e-6)
