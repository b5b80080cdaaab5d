"""Issue 22's layout rules, checked on the code: the core names no backend, one precision
spelling composes across every backend, and the registry is the one list of backends."""
from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

from lstm_exp.backends.registry import BUILT_IN, PLUGINS
from lstm_exp.errors import MissingDependencyError
from lstm_exp.experiment import preflight, validate

PACKAGE = Path(__file__).resolve().parents[2] / "lstm_exp"
#: the modules that run whatever backend they are given (issue 22: "grep finds no backend name")
CORE = [PACKAGE / "pipeline.py", PACKAGE / "evaluate.py", PACKAGE / "experiment.py", PACKAGE / "sweep_checks.py",
        *sorted((PACKAGE / "report").glob("*.py"))]
#: every backend this project has
BACKEND_NAMES = ("torch", "onnxruntime", "acl", "openvino")
_NAMES = "|".join(BACKEND_NAMES)
#: a string that selects or names a backend: ``"acl"``, ``"torch-cpu-fp32"``, ``backend=acl``, ``backends.acl``
NAMING = re.compile(rf"(^|backend=|backends\.)({_NAMES})(-|$|\.)")
#: an identifier or a word that only a backend's code needs (a class, a runtime, a chip)
BACKEND_WORDS = re.compile(r"\bacl\b|\bom_path\b|openvino|ascend|\batc\b|TorchBackend|OnnxRuntimeBackend|AclBackend",
                           re.IGNORECASE)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants (prose may cite a backend as an example)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def backend_names_in(path: Path) -> list[str]:
    """``<file>:<line>: <what>`` for each place the code names a backend: an import of a backend
    folder, a string that names or selects one, an identifier or word of one backend's own."""
    text = path.read_text()
    tree = ast.parse(text)
    docstrings = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            hits += [(node.lineno, m) for m in modules if re.match(rf"lstm_exp\.backends\.({_NAMES})\b", m)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if NAMING.search(node.value) or BACKEND_WORDS.search(node.value):
                hits.append((node.lineno, repr(node.value)))
        elif isinstance(node, ast.Name) and BACKEND_WORDS.search(node.id):
            hits.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute) and BACKEND_WORDS.search(node.attr):
            hits.append((node.lineno, node.attr))
    for number, line in enumerate(text.splitlines(), 1):  # comments too
        comment = line.split("#", 1)[1] if "#" in line else ""
        if comment and (BACKEND_WORDS.search(comment) or re.search(rf"\b({_NAMES})\b", comment)):
            hits.append((number, "# " + comment.strip()))
    return [f"{path.name}:{n}: {what}" for n, what in sorted(set(hits))]


@pytest.mark.parametrize("path", CORE, ids=[str(p.relative_to(PACKAGE)) for p in CORE])
def test_the_core_names_no_backend(path):
    assert backend_names_in(path) == []


def test_the_grep_finds_what_it_looks_for(tmp_path):
    """The check above can fail: each way of naming a backend in code is found."""
    sample = tmp_path / "sample.py"
    sample.write_text('"""Docstrings may say torch-cpu-fp32."""\n'
                      "from lstm_exp.backends.acl.atc import run_atc\n"
                      "import torch  # the model's library, not a backend\n"
                      "if cfg.name == 'onnxruntime':\n"
                      "    x = f'backend=openvino {1}'\n"
                      "    y = pipeline.om_path  # built by ATC\n"
                      "z = TorchBackend()\n")
    found = backend_names_in(sample)
    assert [line.split(":")[1] for line in found] == ["2", "4", "5", "6", "6", "7"], found


def test_the_registry_is_the_one_list(compose_config):
    """conf_schemas stores a schema for every registered backend, and repeats none of them."""
    from hydra.core.config_store import ConfigStore

    from conf_schemas import register_configs

    register_configs()
    stored = {name.removesuffix(".yaml") for name in ConfigStore.instance().list("schema/backend")}
    assert stored == set(PLUGINS)
    source = (PACKAGE.parent / "conf_schemas" / "__init__.py").read_text() + \
        (PACKAGE.parent / "conf_schemas" / "backend.py").read_text()
    assert not [p.name for p in BUILT_IN if re.search(rf"\b{p.name}\b", source)]


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino", "acl"])
def test_one_precision_sweep_composes_across_backends(compose_config, backend):
    """``backend=torch,onnxruntime,openvino,acl backend.precision=fp32 -m``: every job composes and
    validates with the same override, named <backend>-<device>-fp32; only acl's preflight (no
    Ascend runtime on this machine) refuses, with one line."""
    exp = validate(compose_config(f"backend={backend}", "backend.precision=fp32"))
    assert exp.backend.precision == "fp32" and exp.backend.variant().precision == "fp32"
    assert str(exp.backend.variant()).startswith(f"{backend}-") and str(exp.backend.variant()).endswith("-fp32")
    if backend != "acl":
        preflight(exp)
        return
    if importlib.util.find_spec("acl") is not None:
        pytest.skip("this machine has pyacl")
    with pytest.raises(MissingDependencyError) as err:
        preflight(exp)
    assert "backend=acl needs pyacl" in str(err.value) and "\n" not in str(err.value)


def test_a_plugin_that_does_not_load_is_named_and_leaves_the_others_working(tmp_path):
    """Another package's broken entry point: one warning line naming it, the built-in backends
    still there, and ``backend=<its name>`` refused with the same line."""
    import os
    import subprocess
    import sys

    info = tmp_path / "brokenbackend-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenbackend\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[lstm_exp.backends]\nbroken = no_such_module.plugin:PLUGIN\n")
    probe = ("from lstm_exp.backends.registry import PLUGINS, plugin_for\n"
             "from lstm_exp.errors import ConfigError\n"
             "print(sorted(PLUGINS))\n"
             "try:\n    plugin_for('broken')\nexcept ConfigError as err:\n    print(err)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(PACKAGE.parent)])}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120, check=True)
    warnings = [line for line in out.stderr.splitlines() if line.startswith("lstm_exp: warning: backend plugin broken")]
    assert len(warnings) == 1 and "no_such_module" in warnings[0], out.stderr
    names, refusal = out.stdout.splitlines()
    assert names == "['acl', 'onnxruntime', 'openvino', 'torch']"
    assert refusal.startswith("backend plugin broken = no_such_module.plugin:PLUGIN") and "uninstall" in refusal


def test_every_backend_spells_precision_the_shared_way():
    from lstm_exp.backends.base import PRECISIONS, BackendConfig

    for plugin in PLUGINS.values():
        assert issubclass(plugin.config_class, BackendConfig), plugin.name
        assert set(plugin.config_class.precisions) <= set(PRECISIONS), plugin.name
