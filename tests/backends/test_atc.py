"""ONNX -> OM conversion: the atc command line, running it (fake_atc) and its absence."""
from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lstm_exp.backends.acl.config import AclBackendConfig, AtcConfig
from lstm_exp.backends.acl.atc import (
    AtcConversionError,
    build_atc_command,
    convert_onnx_to_om,
    resolve_batch_spec,
    run_atc,
)
from lstm_exp.errors import ConfigError, MissingDependencyError

_spec = importlib.util.spec_from_file_location("acl_sim_helpers", Path(__file__).parents[1] / "acl_sim" / "helpers.py")
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    return helpers.make_tiny_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture
def fake_atc_on_path(tmp_path, monkeypatch) -> Path:
    bin_dir = tmp_path / "bin"
    helpers.install_fake_atc(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    record = tmp_path / "argv.jsonl"
    monkeypatch.setenv("FAKE_ATC_RECORD", str(record))
    return record


def test_static_command_is_the_recipes():
    cmd = build_atc_command("m.onnx", "out/m", 16, AtcConfig())
    assert cmd == [
        "atc", "--framework=5", "--model=m.onnx", "--output=out/m", "--input_format=ND",
        "--input_shape=actual_input_1:16,390,243", "--soc_version=Ascend310", "--log=info",
    ]


def test_dynamic_command_lists_sorted_gears_and_extra_args():
    cfg = AtcConfig(soc_version="Ascend310P3", dynamic_batch=True, extra_args=["--op_select_implmode=high_precision"])
    cmd = build_atc_command(Path("m.onnx"), Path("m"), [32, 1, 8, 4, 16, 8], cfg)
    assert "--input_shape=actual_input_1:-1,390,243" in cmd
    assert "--dynamic_batch_size=1,4,8,16,32" in cmd
    assert "--soc_version=Ascend310P3" in cmd
    assert cmd[-1] == "--op_select_implmode=high_precision"
    assert shlex.join(cmd).count("'") == 0  # copy-pasteable as is


def test_one_gear_is_refused():
    with pytest.raises(ConfigError, match="2 to 100"):
        build_atc_command("m.onnx", "m", [16], AtcConfig(dynamic_batch=True))


def test_resolve_batch_spec():
    assert resolve_batch_spec(AtcConfig(), 8, [1, 16]) == 8
    assert resolve_batch_spec(AtcConfig(dynamic_batch=True), 8, [1, 4, 16]) == [1, 4, 8, 16]
    assert resolve_batch_spec(AtcConfig(dynamic_batch=True, batch_gears=[4, 1]), 1) == [1, 4]
    assert resolve_batch_spec(AtcConfig(dynamic_batch=True), 16) == [1, 4, 8, 16, 32]
    assert resolve_batch_spec(AtcConfig(dynamic_batch=True), 2) == [1, 2, 4, 8, 16, 32]
    with pytest.raises(ConfigError, match="larger than every gear"):
        resolve_batch_spec(AtcConfig(dynamic_batch=True, batch_gears=[1, 4]), 8)


def test_run_with_fake_atc_records_command_and_writes_om(tiny_onnx, tmp_path, fake_atc_on_path):
    cmd = build_atc_command(tiny_onnx, tmp_path / "om" / "tiny", [1, 2, 4], AtcConfig(dynamic_batch=True))
    om = run_atc(cmd, tmp_path / "om" / "atc.log")
    assert om == tmp_path / "om" / "tiny.om" and om.is_file()
    assert (tmp_path / "om" / "atc_command.txt").read_text().strip() == shlex.join(cmd)
    assert json.loads(fake_atc_on_path.read_text().splitlines()[-1]) == cmd
    log = (tmp_path / "om" / "atc.log").read_text()
    assert log.startswith(f"$ {shlex.join(cmd)}") and "ATC run success" in log


def test_convert_static(tiny_onnx, tmp_path, fake_atc_on_path):
    om = convert_onnx_to_om(tiny_onnx, tmp_path / "conv", 4, AtcConfig())
    assert om.name == "model.om" and om.is_file()
    argv = json.loads(fake_atc_on_path.read_text().splitlines()[-1])
    assert "--input_shape=actual_input_1:4,390,243" in argv and not any(a.startswith("--dynamic") for a in argv)


def test_atc_failure_names_the_log(tiny_onnx, tmp_path, fake_atc_on_path):
    cmd = build_atc_command(tiny_onnx, tmp_path / "bad", 4, AtcConfig(extra_args=["--no_such_option=1"]))
    with pytest.raises(AtcConversionError, match=r"exit code 1: read .*atc\.log"):
        run_atc(cmd, tmp_path / "atc.log")
    assert "no_such_option" in (tmp_path / "atc.log").read_text()


def test_fixed_batch_onnx_cannot_become_dynamic(tmp_path, fake_atc_on_path):
    onnx = helpers.make_tiny_onnx(tmp_path / "static.onnx", dynamic=False, batch=4)
    with pytest.raises(AtcConversionError):
        convert_onnx_to_om(onnx, tmp_path / "om", [1, 4], AtcConfig(dynamic_batch=True))


def test_missing_atc_shows_the_exact_command(tiny_onnx, tmp_path, monkeypatch):
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    cmd = build_atc_command(tiny_onnx, tmp_path / "tiny", 16, AtcConfig())
    with pytest.raises(MissingDependencyError) as info:
        run_atc(cmd, tmp_path / "atc.log")
    message = str(info.value)
    assert shlex.join(cmd) in message and "CANN" in message and "atc" in message
    assert "\n" not in message
    assert (tmp_path / "atc_command.txt").read_text().strip() == shlex.join(cmd)


def test_missing_onnx_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="stage=export"):
        convert_onnx_to_om(tmp_path / "nope.onnx", tmp_path, 16, AtcConfig())


def test_atc_config_collects_every_fault():
    with pytest.raises(ConfigError) as info:
        AtcConfig(soc_version="T4", log="loud", frames=391, batch_gears=[4, 4], extra_args=["--model=x.onnx", "oops"])
    lines = str(info.value).splitlines()
    assert "7 problems; the first: atc." in lines[0]
    assert len(lines) == 7 and all(line.startswith("atc.") for line in lines[1:])


def test_acl_backend_config_checks_and_omegaconf_roundtrip():
    with pytest.raises(ConfigError) as info:
        AclBackendConfig(name="npu", device_id=-1, malloc_policy=5)
    assert len(str(info.value).splitlines()) == 3
    node = OmegaConf.structured(AclBackendConfig)
    node.atc.dynamic_batch = True
    node.atc.batch_gears = [1, 16]
    cfg = OmegaConf.to_object(node)
    assert isinstance(cfg.atc, AtcConfig) and cfg.atc.batch_gears == [1, 16]


def test_precision_flags_are_written_and_spelled_out():
    assert AtcConfig().precision == "force_fp16 (atc default)"
    assert not any(a.startswith("--precision_mode") for a in build_atc_command("m.onnx", "m", 4, AtcConfig()))
    cmd = build_atc_command("m.onnx", "m", 4, AtcConfig(precision_mode="force_fp32"))
    assert "--precision_mode=force_fp32" in cmd and AtcConfig(precision_mode="force_fp32").precision == "force_fp32"
    cmd = build_atc_command("m.onnx", "m", 4, AtcConfig(precision_mode_v2="origin"))
    assert "--precision_mode_v2=origin" in cmd and not any(a.startswith("--precision_mode=") for a in cmd)


def test_both_precision_flags_and_bad_values_are_refused():
    with pytest.raises(ConfigError, match="both set; atc takes only one"):
        AtcConfig(precision_mode="force_fp16", precision_mode_v2="fp16")
    with pytest.raises(ConfigError, match="atc.precision_mode: 'fp16' is not an atc precision mode"):
        AtcConfig(precision_mode="fp16")
    with pytest.raises(ConfigError, match="sets --precision_mode, which is built from the config"):
        AtcConfig(extra_args=["--precision_mode=force_fp32"])


def test_gears_are_checked_like_atc():
    with pytest.raises(ConfigError, match="from 1 to 2048"):
        AtcConfig(dynamic_batch=True, batch_gears=[1, 4096])
    with pytest.raises(ConfigError, match="from 1 to 2048"):
        build_atc_command("m.onnx", "m", [1, 2049], AtcConfig(dynamic_batch=True))
    with pytest.raises(ConfigError, match="2 to 100"):
        build_atc_command("m.onnx", "m", list(range(1, 102)), AtcConfig(dynamic_batch=True))


def test_fake_atc_takes_the_real_flags_and_refuses_both_precisions(tiny_onnx, tmp_path, fake_atc_on_path):
    extra = ["--op_select_implmode=high_precision", "--out_nodes=output1:0", f"--keep_dtype={tmp_path / 'keep.cfg'}"]
    om = convert_onnx_to_om(tiny_onnx, tmp_path / "ok", 4, AtcConfig(precision_mode_v2="fp16", extra_args=extra))
    argv = json.loads(fake_atc_on_path.read_text().splitlines()[-1])
    assert "--precision_mode_v2=fp16" in argv and all(flag in argv for flag in extra)
    assert om.is_file()
    cmd = build_atc_command(tiny_onnx, tmp_path / "both" / "m", 4, AtcConfig(precision_mode="force_fp32"))
    with pytest.raises(AtcConversionError):
        run_atc([*cmd, "--precision_mode_v2=fp16"], tmp_path / "both" / "atc.log")
    assert "cannot be used together" in (tmp_path / "both" / "atc.log").read_text()


def test_atc_log_holds_the_cann_log_lines(tiny_onnx, tmp_path, fake_atc_on_path, monkeypatch):
    """atc runs with ASCEND_SLOG_PRINT_TO_STDOUT=1, whatever the caller's environment says."""
    monkeypatch.delenv("ASCEND_SLOG_PRINT_TO_STDOUT", raising=False)
    convert_onnx_to_om(tiny_onnx, tmp_path / "om", 4, AtcConfig())
    log = (tmp_path / "om" / "atc.log").read_text()
    assert "[INFO] ATC(fake_atc):parsing model" in log and "precision force_fp16" in log
    with pytest.raises(AtcConversionError):
        convert_onnx_to_om(tiny_onnx, tmp_path / "bad", 4, AtcConfig(extra_args=["--op_select_implmode=fastest"]))
    assert "[ERROR] ATC(fake_atc):Value [fastest] for parameter [--op_select_implmode]" in (tmp_path / "bad" / "atc.log").read_text()
