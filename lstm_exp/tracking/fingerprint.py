"""The identity of a job's result: sha256 of its resolved config less the keys that change
how a run is recorded or shown but not what it computes.

The stage cache keys are a function of the config, ``STAGE_VERSIONS`` and the package version,
so both go into the fingerprint too: equal fingerprints mean equal stage keys.  Files the config
only names (an external checkpoint, units file, ONNX, CMVN stats, speaker lists: :data:`FILE_KEYS`) add their
size and modification time, so that a sweep never reuses an earlier run after such a file was
replaced at the same path.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

#: top-level keys that do not change what a job computes
RUN_ONLY_KEYS = ("tracking", "progress", "force", "paths", "report")
#: (group, key) of config values that name a file whose content decides the result
FILE_KEYS = (("model", "checkpoint"), ("model", "units_file"), ("export", "onnx_file"), ("data", "cmvn"),
             ("data", "dev_speakers_list"), ("data", "test_speakers_list"))


def config_fingerprint(plain_config: Mapping[str, Any]) -> str:
    from lstm_exp import __version__
    from lstm_exp.cache import file_stamp
    from lstm_exp.pipeline import STAGE_VERSIONS

    config = {k: v for k, v in plain_config.items() if k not in RUN_ONLY_KEYS}
    extra: dict[str, Any] = {"stage_versions": STAGE_VERSIONS, "version": __version__}
    for group, key in FILE_KEYS:
        path = (config.get(group) or {}).get(key)
        stamp = file_stamp(path) if isinstance(path, str) else None
        if stamp is not None:
            extra["checkpoint" if key == "checkpoint" else f"{group}.{key}"] = stamp
    text = json.dumps({"config": config, **extra}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
