"""The run's params, defined once: which config keys a job's run records, and how a
:class:`~lstm_exp.report.JobReport`'s identity maps onto params and back.

Params are a whitelist of flattened config keys (MLflow limits params; the whole tree goes in as
the ``config.yaml`` artefact), plus the job's identity under short names that users filter on
(``variant``, ``backend``, ``batch``, ...).  :func:`job_params` writes them (a job's run, a pending
upload); :func:`identity_from_params` reads a report's identity back from them (the store alone,
``lstm_exp.tracking.store.report_from_run``).  No MLflow import here.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

#: flattened config keys logged as params (prefix match on dotted keys ending with ".")
PARAM_WHITELIST = (
    "data.kind", "data.root", "split.name", "batch", "backend.", "decode.", "model.", "train.",
    "export.opset", "infer.pad_to", "infer.max_utterances", "infer.batching", "infer.repeats", "infer.min_seconds",
    "infer.warmup", "infer.parity", "data.synth.snr_db", "data.synth.seed", "seed", "scenario.",
)
#: flattened keys never logged (Hydra's instantiation targets)
_SKIP_SUFFIXES = ("._target_",)
#: JobReport identity field -> the param that holds it
IDENTITY_PARAMS = {
    "variant": "variant", "backend": "backend", "batch": "batch", "split": "split", "decode": "decode",
    "model": "model", "data": "data.kind", "batching": "batching", "precision": "precision",
}
#: short param -> the config key it repeats (filters in the UI use the short name)
_ALIASES = {"backend": "backend.name", "decode": "decode.type", "split": "split.name", "model": "model.name",
            "scenario": "scenario.name"}
#: identity fields that the validated experiment decides (not a config key of their own)
_FROM_IDENTITY = ("variant", "batching", "precision")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _whitelisted(key: str) -> bool:
    if key.endswith(_SKIP_SUFFIXES):
        return False
    return any(key == w or (w.endswith(".") and key.startswith(w)) for w in PARAM_WHITELIST)


def select_params(tree: Mapping[str, Any]) -> dict[str, str]:
    """The whitelisted params of a resolved config tree, as strings, plus the short aliases."""
    flat = flatten(tree)
    params = {key: "null" if value is None else str(value) for key, value in flat.items() if _whitelisted(key)}
    params.update({alias: str(flat.get(key)) for alias, key in _ALIASES.items()})
    return params


def job_params(tree: Mapping[str, Any], identity: Mapping[str, Any]) -> dict[str, str]:
    """Every param of a job's run: the config's (:func:`select_params`) and the identity the
    validated experiment decides (variant, batching, precision; "" when the config did not validate)."""
    return {**select_params(tree), **{name: str(identity.get(name, "")) for name in _FROM_IDENTITY}}


def _int(value: Any) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def identity_from_params(params: Mapping[str, str]) -> dict[str, Any]:
    """The JobReport identity fields a run's params hold (``batch`` as an int or None)."""
    identity: dict[str, Any] = {field: params.get(param, "") for field, param in IDENTITY_PARAMS.items()}
    identity["batch"] = _int(params.get("batch"))
    return identity
