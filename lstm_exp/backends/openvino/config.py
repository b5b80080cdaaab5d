"""Schema of ``backend=openvino``: the dynamic-axes ONNX export compiled by OpenVINO, one fixed
shape per batch shape.

The precision is explicit and part of the variant (``openvino-cpu-fp32`` compiles with
``INFERENCE_PRECISION_HINT=f32`` set, never OpenVINO's own default, which is bf16 on CPUs with
bf16 instructions); ``bf16`` runs only where the CPU has them (checked at preflight,
:mod:`lstm_exp.backends.openvino.plugin`).

Imports nothing heavy: composing and validating a config never imports openvino.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lstm_exp.backends.base import BackendConfig
from lstm_exp.errors import ConfigError

#: device -> OpenVINO's device name (the CPU plugin only, for now)
OV_DEVICES = {"cpu": "CPU"}
#: precision -> OpenVINO's INFERENCE_PRECISION_HINT
OV_PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}
#: auto: LATENCY below THROUGHPUT_FROM_BATCH rows, THROUGHPUT (async requests) from there up
OV_PERFORMANCE_HINTS = ("auto", "latency", "throughput")
#: the batch (rows) from which ``performance_hint=auto`` compiles for THROUGHPUT
THROUGHPUT_FROM_BATCH = 8


@dataclass
class OpenVinoBackendConfig(BackendConfig):
    """OpenVINO on the ONNX export (``pip install -e '.[cpu]'`` installs openvino)."""

    precisions: ClassVar[dict[str, tuple[str, ...]]] = {precision: tuple(OV_DEVICES) for precision in OV_PRECISION_HINTS}

    name: str = "openvino"
    #: cpu (OpenVINO's CPU plugin)
    device: str = "cpu"
    #: fp32 (INFERENCE_PRECISION_HINT=f32, set explicitly) | bf16 (CPUs with avx512_bf16 / amx_bf16)
    precision: str = "fp32"
    # threads (BackendConfig's): INFERENCE_NUM_THREADS; null (auto): the cores // the sweep's jobs
    # running at once; 0 = OpenVINO's default (every core)
    #: auto (LATENCY below batch 8, THROUGHPUT with async infer requests from batch 8 up) | latency | throughput
    performance_hint: str = "auto"
    #: THROUGHPUT: streams = async infer requests a batch is split over; 0 = one per thread
    streams: int = 0
    #: compiled shapes kept (least recently used dropped first); 0 = no limit
    max_compiled_shapes: int = 64

    def __post_init__(self) -> None:
        if self.name != "openvino":
            raise ConfigError(f"backend.name={self.name!r} does not match backend=openvino: remove the override")
        if self.device not in OV_DEVICES:
            raise ConfigError(f"backend.device={self.device!r} is not an OpenVINO device of this backend: write "
                              f"{' or '.join(OV_DEVICES)}")
        if self.precision not in OV_PRECISION_HINTS:
            raise ConfigError(f"backend.precision={self.precision!r} is not known for openvino: write one of "
                              f"{', '.join(OV_PRECISION_HINTS)}")
        if self.performance_hint not in OV_PERFORMANCE_HINTS:
            raise ConfigError(f"backend.performance_hint={self.performance_hint!r}: write one of "
                              f"{', '.join(OV_PERFORMANCE_HINTS)}")
        self.check_threads()
        for key in ("streams", "max_compiled_shapes"):
            if getattr(self, key) < 0:
                raise ConfigError(f"backend.{key}={getattr(self, key)} must be >= 0 (0 = {_ZERO_MEANS[key]})")

    # variant(): BackendConfig's, ``openvino-<device>-<precision>``, e.g. openvino-cpu-bf16


#: every variant this backend can run
OV_VARIANTS = OpenVinoBackendConfig.variants()

_ZERO_MEANS = {"streams": "one per thread", "max_compiled_shapes": "no limit"}
