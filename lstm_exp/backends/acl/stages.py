"""acl's own cached stages: ``convert`` (ATC on the static export) and ``preprocess`` (the recipe's
``.bin`` batches for Ascend's tools).

    convert     backend.atc (precision resolved) + batch spec + export  -> model.om (ATC on the very
                                                                            ONNX the export stage checked)
    preprocess  split + batch + pad_to + prepare                        -> <n>.bin batches + lstm.info

:data:`CONVERT_STAGE` and :data:`PREPROCESS_STAGE` are what the plugin hands the pipeline.  The
keys hold what decides the files: ``backend.atc`` with ``backend.precision`` written as its
``precision_mode`` (:meth:`~lstm_exp.backends.acl.config.AclBackendConfig.resolved_atc`, the
same key as before ``backend.precision`` existed when it is null) and the gears.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from lstm_exp.backends.plugin import Stage

from lstm_exp.recipe import RECIPE_FRAMES  # every .bin batch is padded to it when ``infer.pad_to`` is null


def build_convert(pipeline: Any, stage: Stage) -> Path:
    """Find or build the OM (``pipeline``: a :class:`lstm_exp.pipeline.Pipeline`)."""
    from lstm_exp.backends.acl.atc import convert_onnx_to_om, resolve_batch_spec
    from lstm_exp.backends.acl.config import acl_precision

    atc_cfg = pipeline.exp.backend.resolved_atc()
    batch_spec = resolve_batch_spec(atc_cfg, pipeline.exp.batch)
    onnx_path = pipeline.onnx_path  # the static export, checked against torch
    atc_key = {k: v for k, v in asdict(atc_cfg).items() if k != "atc_path"}
    config = {"atc": atc_key, "batch": batch_spec}

    def build(tmp: Path) -> dict:
        om = convert_onnx_to_om(onnx_path, tmp, batch_spec, atc_cfg, stem="model")
        mode, precision = acl_precision(atc_cfg)
        return {"om": om.name, "batch": batch_spec, "precision_mode": mode, "precision": precision,
                "onnx": str(onnx_path)}

    return pipeline.run_stage(stage, config, build) / "model.om"


def build_preprocess(pipeline: Any, stage: Stage) -> Path:
    """Find or write the split's padded ``.bin`` batches; returns their info file."""
    from lstm_exp.backends.acl.inputs import write_bin_batches
    from lstm_exp.data.batching import load_split, load_units, plan_batches

    exp = pipeline.exp
    pad_to = exp.infer.pad_to or RECIPE_FRAMES
    split, batch = exp.split.name, exp.batch
    config = {"split": split, "batch": batch, "pad_to": pad_to}
    prepared = pipeline.prepared_dir
    pipeline.check_batch_fits(split)  # the stage writes the whole split

    def build(tmp: Path) -> dict:
        units = load_units(prepared / "units")
        examples = load_split(prepared, split, units, progress=pipeline.progress)
        info = write_bin_batches(plan_batches(examples, batch, "fixed", pad_to=pad_to), tmp)
        return {"info": info.name, "utterances": len(examples)}

    out = pipeline.run_stage(stage, config, build)
    return out / pipeline.summaries[stage.name]["info"]


CONVERT_STAGE = Stage(name="convert", version="2", inputs=("export",), output=build_convert)
PREPROCESS_STAGE = Stage(name="preprocess", version="1", inputs=("prepare",), output=build_preprocess)
