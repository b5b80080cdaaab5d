"""Schema of the ``backend=acl`` option: Ascend NPU inference through pyacl on an OM file.

Two parts: :class:`AtcConfig` says how the ``convert`` stage turns the ONNX export into an OM
with Huawei's ATC (``atc --framework=5 ...``), :class:`AclBackendConfig` says which device runs
it.  Both check every value in ``__post_init__`` and report all faults at once.

Precision has one spelling across backends: ``backend.precision=fp32|fp16|mixed`` maps onto
ATC's ``--precision_mode`` through :data:`ATC_MODE_OF` (:meth:`AclBackendConfig.resolved_atc`);
``backend.atc.precision_mode`` / ``precision_mode_v2`` stay for ATC's other modes, one of the two
ways at a time.  What an OM was built with is read back by :func:`acl_precision` (the mode and
the precision the variant names), the one table from modes to precisions.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar, List, Optional

from lstm_exp.backends.base import BackendConfig, Variant
from lstm_exp.errors import ConfigError, fault_message
from lstm_exp.recipe import RECIPE_FRAMES

#: ATC ``--log`` levels
ATC_LOG_LEVELS = ("debug", "info", "warning", "error", "null")
#: flags that :func:`lstm_exp.backends.acl.atc.build_atc_command` writes itself
ATC_MANAGED_FLAGS = (
    "--framework",
    "--model",
    "--output",
    "--input_format",
    "--input_shape",
    "--soc_version",
    "--dynamic_batch_size",
    "--log",
    "--precision_mode",
    "--precision_mode_v2",
)
#: aclrtMalloc policies: 0 huge pages first, 1 huge pages only, 2 normal pages only
ACL_MALLOC_POLICIES = (0, 1, 2)
#: ATC accepts between 2 and 100 gears for --dynamic_batch_size, each at most 2048
MIN_GEARS, MAX_GEARS = 2, 100
MAX_GEAR_SIZE = 2048
#: atc --precision_mode values (CANN 5.x - 8.x)
PRECISION_MODES = (
    "force_fp16",
    "force_fp32",
    "allow_fp32_to_fp16",
    "must_keep_origin_dtype",
    "allow_mix_precision",
    "allow_mix_precision_fp16",
    "allow_mix_precision_bf16",
    "allow_fp32_to_bf16",
    "cube_fp16in_fp32out",
)
#: atc --precision_mode_v2 values (newer CANN; never together with --precision_mode)
PRECISION_MODES_V2 = ("fp16", "origin", "cube_fp16in_fp32out", "mixed_float16", "mixed_bfloat16", "cube_hif8", "mixed_hif8")
#: what atc does for an inference OM when neither flag is given (Ascend 310 / 310P)
ATC_DEFAULT_PRECISION = "force_fp16"
#: inference runtimes for backend=acl
ACL_RUNTIMES = ("pyacl", "ais_bench")


#: atc --precision_mode / --precision_mode_v2 values -> the precision a variant names
#: (``acl-om-<precision>``); ATC's default on Ascend 310 is force_fp16 -> fp16
VARIANT_PRECISION = {
    "force_fp16": "fp16", "force_fp32": "fp32", "must_keep_origin_dtype": "fp32", "allow_fp32_to_fp16": "mixed",
    "allow_mix_precision": "mixed", "allow_mix_precision_fp16": "mixed", "allow_mix_precision_bf16": "mixed",
    "allow_fp32_to_bf16": "mixed", "cube_fp16in_fp32out": "mixed",
}
VARIANT_PRECISION_V2 = {"fp16": "fp16", "origin": "fp32", "cube_fp16in_fp32out": "mixed", "mixed_float16": "mixed",
                        "mixed_bfloat16": "mixed", "cube_hif8": "hif8", "mixed_hif8": "mixed"}


#: backend.precision -> the atc --precision_mode that builds it (VARIANT_PRECISION read backwards)
ATC_MODE_OF = {"fp16": "force_fp16", "fp32": "force_fp32", "mixed": "allow_mix_precision"}
#: an OM's variant names the device ``om`` (the artefact the NPU runs)
ACL_DEVICE = "om"


def acl_precision(atc: "AtcConfig") -> tuple[str, str]:
    """``(precision mode as atc is given it, precision the variant names)`` for an ATC conversion:
    ``atc.precision_mode``, else ``v2:<atc.precision_mode_v2>``, else ATC's default force_fp16."""
    mode = getattr(atc, "precision_mode", None)
    if mode:
        return mode, VARIANT_PRECISION.get(mode, "mixed")
    mode_v2 = getattr(atc, "precision_mode_v2", None)
    if mode_v2:
        return f"v2:{mode_v2}", VARIANT_PRECISION_V2.get(mode_v2, "mixed")
    return ATC_DEFAULT_PRECISION, "fp16"


def _raise_all(summary: str, faults: list[str]) -> None:
    if faults:
        raise ConfigError(fault_message(summary, faults))


@dataclass
class AtcConfig:
    """How ONNX -> OM conversion is run (the recipe's ``atc`` command line)."""

    #: target chip, as ``atc --soc_version`` spells it (Ascend310, Ascend310P3, Ascend910B...)
    soc_version: str = "Ascend310"
    #: one OM with batch gears (``--dynamic_batch_size``) instead of one static OM per batch
    dynamic_batch: bool = False
    #: gears for a dynamic OM; empty = the sweep's batch sizes when known, else the recipe's
    #: 1,4,8,16,32 plus the current batch
    batch_gears: List[int] = field(default_factory=list)
    #: frames per utterance the OM is built for (the recipe pads to 390)
    frames: int = RECIPE_FRAMES
    #: atc --log level: debug | info | warning | error | null
    log: str = "info"
    #: atc --precision_mode: null = not passed, i.e. ATC's default force_fp16 (fp16 arithmetic:
    #: the guide's accuracy is an fp16 accuracy); force_fp32 keeps fp32 where the chip can
    precision_mode: Optional[str] = None
    #: atc --precision_mode_v2 (newer CANN: fp16 | origin | mixed_float16 ...); refused together
    #: with precision_mode
    precision_mode_v2: Optional[str] = None
    #: further atc arguments, e.g. ["--op_select_implmode=high_precision"]
    extra_args: List[str] = field(default_factory=list)
    #: the atc executable (name looked up on PATH, or a path)
    atc_path: str = "atc"

    def __post_init__(self) -> None:
        faults = []
        if not self.soc_version.startswith("Ascend") or not self.soc_version[6:].strip():
            faults.append(f"atc.soc_version: {self.soc_version!r} is not an Ascend SoC: write e.g. Ascend310 or Ascend310P3")
        if self.frames < 2 or self.frames % 2:
            faults.append(f"atc.frames: {self.frames} must be an even number >= 2: write 390 (the recipe)")
        if self.log not in ATC_LOG_LEVELS:
            faults.append(f"atc.log: {self.log!r} is not an atc log level: write one of {', '.join(ATC_LOG_LEVELS)}")
        if not self.atc_path.strip():
            faults.append("atc.atc_path: empty: write atc (looked up on PATH) or the full path of the atc executable")
        bad_gears = [g for g in self.batch_gears if not 1 <= g <= MAX_GEAR_SIZE]
        if bad_gears:
            faults.append(f"atc.batch_gears: {bad_gears} are not batch sizes atc takes: write integers from 1 to {MAX_GEAR_SIZE}, e.g. [1,4,8,16,32]")
        if self.precision_mode is not None and self.precision_mode not in PRECISION_MODES:
            faults.append(f"atc.precision_mode: {self.precision_mode!r} is not an atc precision mode: write one of {', '.join(PRECISION_MODES)} (or null for ATC's default {ATC_DEFAULT_PRECISION})")
        if self.precision_mode_v2 is not None and self.precision_mode_v2 not in PRECISION_MODES_V2:
            faults.append(f"atc.precision_mode_v2: {self.precision_mode_v2!r} is not an atc precision_mode_v2: write one of {', '.join(PRECISION_MODES_V2)} (or null)")
        if self.precision_mode is not None and self.precision_mode_v2 is not None:
            faults.append("atc.precision_mode and atc.precision_mode_v2 are both set; atc takes only one: set the other to null")
        if len(set(self.batch_gears)) != len(self.batch_gears):
            faults.append(f"atc.batch_gears: {list(self.batch_gears)} repeats a gear: list each batch size once")
        if self.batch_gears and not self.dynamic_batch:
            faults.append("atc.batch_gears: gears are only used by a dynamic OM: add atc.dynamic_batch=true or write atc.batch_gears=[]")
        if self.batch_gears and not MIN_GEARS <= len(self.batch_gears) <= MAX_GEARS:
            faults.append(
                f"atc.batch_gears: {len(self.batch_gears)} gear(s); atc needs {MIN_GEARS} to {MAX_GEARS}: "
                "add gears or use a static OM (atc.dynamic_batch=false)"
            )
        for arg in self.extra_args:
            flag = arg.split("=", 1)[0]
            if flag in ATC_MANAGED_FLAGS:
                faults.append(f"atc.extra_args: {arg!r} sets {flag}, which is built from the config: remove it and set the atc.* field instead")
            elif not arg.startswith("--"):
                faults.append(f"atc.extra_args: {arg!r} is not an atc option: write --name=value")
        _raise_all("invalid backend.atc config", faults)

    @property
    def precision(self) -> str:
        """The precision the OM is built with, spelled out: the flag given, else ATC's default."""
        if self.precision_mode is not None:
            return self.precision_mode
        if self.precision_mode_v2 is not None:
            return f"v2:{self.precision_mode_v2}"
        return f"{ATC_DEFAULT_PRECISION} (atc default)"


@dataclass
class AclBackendConfig(BackendConfig):
    """pyacl inference on an Ascend device (the recipe's ``pyacl_infer``)."""

    precisions: ClassVar[dict[str, tuple[str, ...]]] = {p: (ACL_DEVICE,) for p in ATC_MODE_OF}

    name: str = "acl"
    #: fp16 | fp32 | mixed, as ATC's --precision_mode force_fp16 | force_fp32 | allow_mix_precision;
    #: null: backend.atc.precision_mode / precision_mode_v2 decide, else ATC's default (force_fp16)
    precision: Optional[str] = None
    #: NPU device id (``acl.rt.set_device``)
    device_id: int = 0
    atc: AtcConfig = field(default_factory=AtcConfig)
    #: aclrtMalloc policy for device buffers: 0 huge first, 1 huge only, 2 normal only
    malloc_policy: int = 0
    #: pyacl (the recipe's pyacl_infer, the `acl` module) or ais_bench (Ascend's ait/msit
    #: benchmark InferSession); each owns the process's ACL lifetime, so one per process
    runtime: str = "pyacl"

    def __post_init__(self) -> None:
        faults = []
        if self.name != "acl":
            faults.append(f"backend.name: {self.name!r} does not match backend=acl: remove the override")
        if self.device_id < 0:
            faults.append(f"backend.device_id: {self.device_id} is not a device: write 0 (or the id npu-smi info shows)")
        if self.malloc_policy not in ACL_MALLOC_POLICIES:
            faults.append(
                f"backend.malloc_policy: {self.malloc_policy} is not an aclrtMalloc policy: write 0 (huge first), 1 (huge only) or 2 (normal only)"
            )
        if self.threads is not None:
            faults.append(f"backend.threads: {self.threads}: the OM computes on the NPU, not on CPU threads: write null")
        if self.runtime not in ACL_RUNTIMES:
            faults.append(f"backend.runtime: {self.runtime!r} is not an Ascend runtime: write pyacl or ais_bench")
        faults += self._precision_faults()
        _raise_all("invalid backend=acl config", faults)

    def _precision_faults(self) -> list[str]:
        if self.precision is None:
            return []
        if self.precision not in ATC_MODE_OF:
            return [f"backend.precision: {self.precision!r} has no ATC precision mode: write one of "
                    f"{', '.join(ATC_MODE_OF)} (acl variants: {', '.join(self.variants())}), or null with "
                    "backend.atc.precision_mode_v2 for ATC's other modes"]
        given = [f"backend.atc.{key}={value}" for key in ("precision_mode", "precision_mode_v2")
                 if (value := getattr(self.atc, key)) is not None]
        if given:
            return [f"backend.precision={self.precision} and {given[0]} both set the OM's precision: keep one "
                    f"(backend.precision={self.precision} is --precision_mode={ATC_MODE_OF[self.precision]})"]
        return []

    def resolved_atc(self) -> AtcConfig:
        """The ATC options the convert stage runs: ``backend.atc`` with ``backend.precision`` as its
        ``precision_mode`` (unchanged when precision is null, so existing cache entries stay hits)."""
        if self.precision is None:
            return self.atc
        return replace(self.atc, precision_mode=ATC_MODE_OF[self.precision])

    @property
    def device(self) -> str:
        return ACL_DEVICE

    def variant(self) -> Variant:
        """``acl-om-<precision>`` from the ATC precision mode (Ascend310 default force_fp16: acl-om-fp16)."""
        return Variant(self.name, ACL_DEVICE, acl_precision(self.resolved_atc())[1])
