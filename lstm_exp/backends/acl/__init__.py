"""Ascend backend: ONNX -> OM with ATC (:mod:`.atc`), inference on the OM (:mod:`.backend`)
through one of two runtimes (:mod:`.om_runtime`): pyacl (:mod:`.pyacl_runtime`) within one ACL
lifetime per process (:mod:`.acl_lifetime`), or ais_bench (:mod:`.ais_bench_runtime`).

Importing this package needs neither the CANN toolkit nor an NPU; ``AclBackend.load`` imports
pyacl (or ais_bench) and ``run_atc`` looks for ``atc``, each raising a MissingDependencyError
that says what to install when they are absent.
"""
from lstm_exp.backends.acl.atc import (
    AtcConversionError,
    build_atc_command,
    convert_onnx_to_om,
    resolve_batch_spec,
    run_atc,
)
from lstm_exp.backends.acl.backend import AclBackend, AclCallError

__all__ = [
    "AclBackend",
    "AclCallError",
    "AtcConversionError",
    "build_atc_command",
    "convert_onnx_to_om",
    "resolve_batch_spec",
    "run_atc",
]
