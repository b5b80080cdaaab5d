"""lstm_exp as an installed package: ``python -m build`` makes an sdist and a wheel that carry the
configs, the resources and the licences; the wheel, installed into a fresh virtual environment
with this checkout hidden, runs the smoke experiment from an empty directory outside the checkout
(``python -m lstm_exp`` and the ``lstm-exp`` script), and takes the user's own config groups and
presets from ``--config-dir`` / ``hydra.searchpath`` without editing the package.

The fresh environment borrows the dependencies (torch, hydra, mlflow, ...) from this interpreter's
site-packages through a folder of symlinks that leaves out lstm_exp itself, conf_schemas and the
editable install's finder, so nothing but the wheel can provide lstm_exp.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from lstm_exp import config_path

CHECKOUT = Path(__file__).resolve().parent.parent
CONFIGS = sorted(p.relative_to(CHECKOUT / "configs").as_posix() for p in (CHECKOUT / "configs").rglob("*.yaml"))
#: the app's config groups (configs/hydra holds presets for Hydra's own groups, e.g. hydra/launcher)
GROUPS = sorted(p.name for p in (CHECKOUT / "configs").iterdir() if p.is_dir() and p.name != "hydra")
#: names in site-packages that would let the checkout's lstm_exp leak into the fresh environment
PROJECT_ENTRIES = ("lstm_exp", "conf_schemas", "__editable__")
#: what a build must not copy from the checkout (run outputs, environments, earlier builds)
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv*", "build", "dist", "cache", "outputs", "multirun", "mlruns", "mlartifacts", "mlflow.db",
    "__pycache__", "*.egg-info", ".pytest_cache",
)


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{cmd} exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}")
    return proc


def _dependencies_without_the_project(dest: Path) -> Path:
    """A folder of symlinks to every entry of this interpreter's site-packages except the project."""
    dest.mkdir()
    for site_dir in dict.fromkeys((sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])):
        for entry in Path(site_dir).iterdir():
            if entry.name.startswith(PROJECT_ENTRIES) or entry.suffix == ".pth" or (dest / entry.name).exists():
                continue
            (dest / entry.name).symlink_to(entry)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(dist folder, venv, env for subprocesses) with the wheel installed into a fresh venv."""
    pytest.importorskip("espeakng_loader")  # the smoke experiment synthesises its corpus
    pytest.importorskip("build")  # the `test` extra
    root = tmp_path_factory.mktemp("package")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "MLFLOW_TRACKING_URI")}

    src = root / "src"
    shutil.copytree(CHECKOUT, src, ignore=NOT_SOURCE, symlinks=True)
    dist = root / "dist"
    # sdist first, then the wheel built from the unpacked sdist (what `python -m build` does)
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(src)], cwd=root, env=env)

    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root, env=env)
    python = venv / "bin" / "python"
    venv_site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          cwd=root, env=env).stdout.strip())
    deps = _dependencies_without_the_project(root / "deps")
    (venv_site / "_borrowed_dependencies.pth").write_text(f"{deps}\n")
    wheel = next(dist.glob("lstm_exp-*.whl"))
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], cwd=root, env=env)

    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return dist, venv, env


def _empty_dir(tmp_path: Path) -> Path:
    work = tmp_path / "elsewhere"
    work.mkdir()
    assert CHECKOUT not in work.parents and work != CHECKOUT
    return work


def test_config_dir_is_the_checkouts_or_says_where_it_looked(tmp_path, monkeypatch):
    assert config_path.config_dir() == CHECKOUT / "configs"  # this checkout (no lstm_exp/configs in it)
    package = tmp_path / "site-packages" / "lstm_exp"
    (package / "configs").mkdir(parents=True)
    monkeypatch.setattr(config_path, "PACKAGE_DIR", package)
    with pytest.raises(RuntimeError, match="lstm_exp's configs are missing") as err:
        config_path.config_dir()
    assert str(package / "configs") in str(err.value) and str(tmp_path / "site-packages" / "configs") in str(err.value)
    (package / "configs" / "config.yaml").write_text("batch: 1\n")
    assert config_path.config_dir() == package / "configs"  # an installed wheel's


def test_sdist_and_wheel_carry_configs_resources_and_licences(installed):
    dist, _, _ = installed
    sdist = tarfile.open(next(dist.glob("lstm_exp-*.tar.gz")))
    in_sdist = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"LICENSE", "lstm_exp/data/synth/SENTENCES-LICENSE.txt", "setup.py", "MANIFEST.in"} <= in_sdist
    assert {f"configs/{c}" for c in CONFIGS} <= in_sdist

    in_wheel = set(zipfile.ZipFile(next(dist.glob("lstm_exp-*.whl"))).namelist())
    licences = {n.split("/licenses/", 1)[1] for n in in_wheel if ".dist-info/licenses/" in n}
    assert licences == {"LICENSE", "lstm_exp/data/synth/SENTENCES-LICENSE.txt"}
    assert {f"lstm_exp/configs/{c}" for c in CONFIGS} <= in_wheel
    resources = {p.relative_to(CHECKOUT).as_posix() for p in (CHECKOUT / "lstm_exp" / "resources").rglob("*") if p.is_file()}
    assert resources and resources <= in_wheel
    assert {"lstm_exp/data/synth/sentences.txt", "lstm_exp/data/synth/SENTENCES-LICENSE.txt",
            "conf_schemas/__init__.py", "lstm_exp/app.py"} <= in_wheel


def test_installed_package_is_the_wheel_and_help_lists_the_groups(installed, tmp_path):
    _, venv, env = installed
    work = _empty_dir(tmp_path)
    where = _run(["python", "-c", "import lstm_exp, conf_schemas, lstm_exp.app as app; "
                  "print(lstm_exp.__file__); print(conf_schemas.__file__); print(app.CONFIG_DIR)"], cwd=work, env=env)
    files = [Path(line) for line in where.stdout.split()]
    for path in files:
        assert venv in path.parents, (path, venv)
    assert files[2].name == "configs" and files[2].parent == files[0].parent

    helped = _run(["lstm-exp", "--help"], cwd=work, env=env).stdout
    for group in GROUPS:
        assert f"\n{group}: " in helped, (group, helped)
    assert "smoke" in helped


def test_installed_app_runs_the_smoke_experiment_from_an_empty_directory(installed, tmp_path):
    import mlflow

    _, _, env = installed
    work = _empty_dir(tmp_path)
    _run(["python", "-m", "lstm_exp", "experiment=smoke", "progress=false"], cwd=work, env=env)
    _run(["lstm-exp", "experiment=smoke", "backend=torch", "progress=false"], cwd=work, env=env)
    assert (work / "cache" / "train").is_dir() and (work / "outputs").is_dir() and (work / "mlflow.db").is_file()

    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["lstm_exp"], output_format="list")
    assert sorted((r.data.params["backend"], r.info.status) for r in runs) == [
        ("onnxruntime", "FINISHED"), ("torch", "FINISHED")
    ]
    assert all("per" in r.data.metrics for r in runs)


def test_users_own_config_groups_and_presets_without_editing_the_package(installed, tmp_path):
    _, _, env = installed
    work = _empty_dir(tmp_path)
    mine = work / "my_configs"
    (mine / "model").mkdir(parents=True)
    (mine / "experiment").mkdir()
    (mine / "model" / "tiny.yaml").write_text("defaults:\n  - ctc_small\n  - _self_\n\nname: tiny\nhidden: 8\n")
    (mine / "experiment" / "my_preset.yaml").write_text("# @package _global_\ndefaults:\n  - smoke\n\nbatch: 3\n")

    # --config-dir: a new option of an existing group
    job = _run(["lstm-exp", "--config-dir", "my_configs", "model=tiny", "--cfg", "job"], cwd=work, env=env).stdout
    assert "name: tiny" in job and "hidden: 8" in job
    # hydra.searchpath: a preset built on a shipped one
    job = _run(["lstm-exp", f"hydra.searchpath=[file://{mine}]", "experiment=my_preset", "--cfg", "job"],
               cwd=work, env=env).stdout
    assert "batch: 3" in job and "utts_per_train_speaker: 8" in job  # ours, then smoke's
    helped = _run(["lstm-exp", "--config-dir", str(mine), "--help"], cwd=work, env=env).stdout
    assert "tiny" in helped and "my_preset" in helped
