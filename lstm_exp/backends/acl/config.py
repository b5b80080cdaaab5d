"""Schema of ``backend=acl`` (pyacl on an OM from ATC).

The dataclasses live in :mod:`conf_schemas.acl` (with the ATC options); this module is the acl
plugin's handle on them, so that every backend folder names its schema the same way.
"""
from __future__ import annotations

from conf_schemas.acl import AclBackendConfig, AtcConfig, acl_precision

__all__ = ["AclBackendConfig", "AtcConfig", "acl_precision"]
