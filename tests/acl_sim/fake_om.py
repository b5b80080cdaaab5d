"""The file format shared by ``fake_atc`` (writer) and the simulated ``acl`` module (reader).

A fake OM is: the magic line ``FAKE-OM/1``, a 4-byte little-endian header length, a JSON
header (input name and shape with -1 for a dynamic batch, the batch gears, the output type,
the SoC and atc's argv) and then the ONNX model's bytes, which the simulator runs with
onnxruntime.  Real OM files are opaque binaries; nothing outside tests reads this format.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

MAGIC = b"FAKE-OM/1\n"


class NotAFakeOm(ValueError):
    """The file is not in the fake OM format."""


def write_om(path: Path | str, header: dict, onnx_bytes: bytes) -> None:
    blob = json.dumps(header, sort_keys=True).encode()
    Path(path).write_bytes(MAGIC + struct.pack("<I", len(blob)) + blob + onnx_bytes)


def read_om(path: Path | str) -> tuple[dict, bytes]:
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise NotAFakeOm(f"{path} is not a fake OM (written by tests/acl_sim/fake_atc)")
    (size,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    header = json.loads(data[start:start + size])
    return header, data[start + size:]
