"""Every config group option composes and validates; impossible values are refused with a
message that says what to write instead."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from lstm_exp.app import validate
from lstm_exp.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
# configs/hydra holds Hydra's own groups (launcher presets), tested in tests/tracking/test_launcher_presets.py
GROUPS = sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir() and p.name != "hydra")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _required_extras(group: str, option: str, tmp_path: Path) -> list[str]:
    """Values an option marks ``???`` (a user must give them)."""
    if group == "data" and option in ("timit", "kaldi_dir"):
        root = tmp_path / "corpus"
        root.mkdir(exist_ok=True)
        return [f"data.root={root}"]
    if group == "model" and option == "pretrained":
        ckpt = tmp_path / "ctc_best_model.pth"
        ckpt.write_bytes(b"not used by validation")
        return [f"model.checkpoint={ckpt}"]
    return []


def test_every_group_has_options():
    assert {"data", "split", "model", "train", "backend", "decode", "tracking", "infer", "export"} <= set(GROUPS)
    for group in GROUPS:
        assert _options(group), group


@pytest.mark.parametrize(
    "group,option", [(g, o) for g in GROUPS for o in _options(g)], ids=lambda v: str(v)
)
def test_every_option_composes_and_validates(compose_config, tmp_path, group, option):
    overrides = [f"{group}={option}", *_required_extras(group, option, tmp_path)]
    if group == "experiment":
        overrides = [f"experiment={option}"]
    cfg = compose_config(*overrides)
    exp = validate(cfg)
    if group == "backend":
        assert exp.backend.name == option
    if group == "data":
        assert exp.data.kind == option


def test_default_config_is_the_embedded_experiment(compose_config):
    exp = validate(compose_config())
    assert exp.data.kind == "synth"
    assert exp.backend.name == "onnxruntime"
    assert exp.model.name == "ctc_small"
    assert exp.batch == 16 and exp.split.name == "dev" and exp.decode.type == "greedy"


@pytest.mark.parametrize(
    "override,needle",
    [
        ("batch=0", "batch=0"),
        ("batch=-3", "batch=-3"),
        ("stage=trian", "stage='trian'"),
        ("infer.pad_to=391", "even"),
        ("backend.providers=[CUDAProvider]", "CUDAProvider"),
        ("decode.type=viterbi", "viterbi"),
        ("model.hidden=0", "model.hidden"),
        ("train.lr=-1", "train.lr"),
        ("split.name=train", "split=dev"),
        ("backend=acl infer.pad_to=400", "backend.atc.frames=390"),
        ("model.hidden=null", "model.hidden: null is only allowed with model.checkpoint"),
        ("infer.batching=bucket", "write one of fixed, longest, sorted"),
        ("infer.batching=sorted infer.pad_to=390", "only used by infer.batching=fixed"),
        ("infer.repeats=0", "infer.repeats=0"),
        ("backend=acl infer.batching=longest", "write infer.batching=fixed"),
        ("backend.precision=fp16", "onnxruntime variants: "),
    ],
)
def test_impossible_values_are_refused_with_a_clear_message(compose_config, override, needle):
    cfg = compose_config(*override.split())
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert needle in str(err.value)


@pytest.mark.parametrize("override", ["backend=tensorflow", "batchh=4", "data.fbank.num_mel_binz=40"])
def test_unknown_groups_and_keys_fail_at_composition(compose_config, override):
    with pytest.raises((ConfigCompositionException, ConfigKeyError)):
        compose_config(override)


def test_wrong_type_fails_at_composition(compose_config):
    with pytest.raises((ConfigCompositionException, ValidationError)) as err:
        compose_config("batch=sixteen")
    assert "batch" in str(err.value)


def test_timit_without_root_says_what_to_write(compose_config):
    cfg = compose_config("data=timit")
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert "data.root" in str(err.value)


@pytest.mark.parametrize("overrides,batching,pad_to", [
    ([], "longest", None),
    (["infer.pad_to=390"], "fixed", 390),
    (["infer.batching=fixed"], "fixed", 390),
    (["infer.batching=fixed", "infer.pad_to=400"], "fixed", 400),
    (["infer.batching=sorted"], "sorted", None),
    (["backend=acl"], "fixed", 390),
])
def test_batching_resolves_to_one_mode(compose_config, overrides, batching, pad_to):
    exp = validate(compose_config(*overrides))
    assert (exp.infer.batching, exp.infer.pad_to) == (batching, pad_to)


def test_composing_and_validating_a_config_imports_no_heavy_library(tmp_path):
    """Issue 22: building a config imported scipy and soundfile (~1 s) through the synthetic
    corpus package; it now imports no signal, audio, model or tracking library."""
    import subprocess
    import sys

    probe = ("import sys\n"
             "from lstm_exp.experiment import load_config, validate\n"
             f"validate(load_config('tracking=none', root={str(tmp_path)!r}))\n"
             "print(sorted(m for m in ('scipy', 'soundfile', 'torch', 'onnxruntime', 'mlflow', 'matplotlib') "
             "if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]


def test_validation_derives_null_batching_explicitly_and_keeps_given_values(compose_config):
    """Issue 22: ExperimentConfig.__post_init__ no longer rewrites infer.batching / infer.pad_to;
    validate() derives what was left null (derived_batching says why), and given values stay."""
    from conf_schemas.experiment import InferConfig, derived_batching
    from lstm_exp.experiment import validate

    assert derived_batching(InferConfig(), None, "x") == ("longest", None, "the model takes any length")
    assert derived_batching(InferConfig(batching="fixed"), None, "x")[:2] == ("fixed", 390)
    assert derived_batching(InferConfig(batching="fixed", pad_to=400), None, "x") == ("fixed", 400, "")
    assert derived_batching(InferConfig(), None, "x", "graphs need it") == (
        "fixed", 390, "graphs need it; the recipe pads to 390 frames")  # a plugin's fixed_batching reason
    assert derived_batching(InferConfig(pad_to=200), None, "x", "graphs need it") == ("fixed", 200, "graphs need it")
    mode, pad_to, why = derived_batching(InferConfig(), 390, "x")
    assert (mode, pad_to) == ("fixed", 390) and "static input of 390 frames" in why
    assert (validate(compose_config()).infer.batching, validate(compose_config()).infer.pad_to) == ("longest", None)
    acl = validate(compose_config("backend=acl")).infer
    assert (acl.batching, acl.pad_to) == ("fixed", 390)
