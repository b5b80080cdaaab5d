"""Build hook: ship the top-level ``configs/`` inside the package as ``lstm_exp/configs``.

``configs/`` at the top of the checkout stays the one source of the YAML; setuptools maps it into
the wheel as the data-only package ``lstm_exp.configs`` (each config group a subpackage), so an
installed ``lstm-exp`` composes its configs from any directory (see lstm_exp/config_path.py).
Everything else is declared in setup.cfg.
"""
from setuptools import find_namespace_packages, setup

NOT_PACKAGES = ["*__pycache__", "*.egg-info"]
CODE = find_namespace_packages(include=["lstm_exp", "lstm_exp.*", "conf_schemas", "conf_schemas.*"], exclude=NOT_PACKAGES)
CONFIGS = ["lstm_exp.configs"] + [f"lstm_exp.configs.{group}" for group in find_namespace_packages("configs", exclude=NOT_PACKAGES)]

setup(
    packages=CODE + CONFIGS,
    package_dir={"lstm_exp.configs": "configs"},
    package_data={package: ["*.yaml"] for package in CONFIGS},
)
