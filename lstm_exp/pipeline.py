"""The cached stages of one experiment and what each depends on.

Each stage's cache key hashes the config it depends on plus its upstream stages' keys, so in a
sweep over batch sizes or backends the corpus, data preparation, training and export run once
and every job only infers and scores.  Values that change how fast a stage runs but not what it
writes (worker counts, progress bars) are left out of the keys.

    corpus   data.synth                         -> TIMIT-format tree (synth only)
    prepare  data (less workers) + corpus        -> Kaldi data dirs, fbank, CMVN, units, ARPA
    train    model + train (less resume) + prep  -> model.pt (or an external checkpoint, imported)
    export   export + train                      -> model.onnx in the shape the backend plugin asks for
                                                    (dynamic axes, or a static [batch, frames, 243]), checked
                                                    against the checkpoint
    <stage>  a backend's own stages (its ``stages.py``: a precision conversion, a compiler, input files)

Which stages a job needs, and the backend's own stages themselves (name, version, inputs, how
to build them), are the backend plugin's answer (``lstm_exp.backends.registry``): this module
names no backend and runs them through :meth:`Pipeline.run_stage`.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, is_dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from lstm_exp import __version__
from lstm_exp.backends.plugin import Stage
from lstm_exp.backends.registry import PLUGINS, plugin_for
from lstm_exp.cache import StageCache, file_stamp
from lstm_exp.errors import ConfigError, DataError
from lstm_exp.recipe import RECIPE_FRAMES  # frames an imported ONNX with a dynamic frame axis is checked at

if TYPE_CHECKING:
    from conf_schemas.experiment import ExperimentConfig

log = logging.getLogger(__name__)

#: bump a stage's version when its code changes what it writes (the backends' own stages carry
#: theirs in their ``Stage``)
CORE_STAGE_VERSIONS = {"corpus": "1", "prepare": "3", "train": "2", "export": "2"}
#: every stage's version (a job's fingerprint holds them: equal fingerprints, equal stage keys)
STAGE_VERSIONS = {**CORE_STAGE_VERSIONS,
                  **{stage.name: stage.version for plugin in PLUGINS.values() for stage in plugin.own_stages}}


def _plain(obj: Any) -> Any:
    """Dataclass / nested containers -> JSON-able plain containers."""
    if is_dataclass(obj):
        obj = asdict(obj)
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _file_stamps(section: Any, *keys: str) -> dict:
    """``{<key>_stamp: [size, mtime_ns]}`` of the files the config values ``keys`` of ``section``
    name (those set): a file's content decides the stage's output, so replacing it at the same
    path must change the key."""
    stamps = {}
    for key in keys:
        value = getattr(section, key, None)
        stamp = file_stamp(value) if value else None
        if stamp is not None:
            stamps[f"{key}_stamp"] = stamp
    return stamps


def _without(tree: dict, *keys: str) -> dict:
    return {k: v for k, v in tree.items() if k not in keys}


def _batch_name(batch: Any) -> str:
    return f"dev batch of {len(batch.ids)} utterances starting at {batch.ids[0]}"


def stages_needed(stage: str, backend_cfg: Any) -> list[str]:
    """The stages to run, in order, for ``stage=`` and the backend (``infer``: a job's last step)."""
    plugin = plugin_for(backend_cfg.name)
    chain = ["corpus", "prepare", *plugin.stages(backend_cfg)]
    if stage in ("all", "infer"):
        return chain + ["infer"]
    if stage in plugin.user_stages:  # e.g. input files for a runtime's own tools: from the prepared data
        return ["corpus", "prepare", stage]
    if stage not in chain:
        raise ConfigError(f"stage={stage} is not a stage of backend={plugin.name}: write one of {', '.join(chain)}")
    return chain[: chain.index(stage) + 1]


class Pipeline:
    """Runs the cached stages for one validated experiment config (``ExperimentConfig``)."""

    def __init__(self, exp: "ExperimentConfig") -> None:
        self.exp = exp
        self.cache = StageCache(exp.paths.cache_dir)
        self.progress = exp.progress
        self.summaries: dict[str, dict] = {}
        self.keys: dict[str, str] = {}
        self.plugin = plugin_for(exp.backend.name)
        self._outputs: dict[str, Path] = {}  # the backend's own stages, found or built once

    # -- helpers ---------------------------------------------------------------------------
    def _key(self, stage: str, config: dict, upstream: list[str], version: Optional[str] = None) -> str:
        version = version or CORE_STAGE_VERSIONS[stage]
        return self.cache.key(stage, config, upstream, version=f"{version}/{__version__}")

    def _run(self, stage: str, config: dict, upstream: list[str], build, version: Optional[str] = None) -> Path:
        key = self._key(stage, config, upstream, version)
        force = self.exp.force and self.exp.stage in (stage, "all")
        path = self.cache.run(stage, key, build, config=config, upstream=upstream, force=force)
        self.keys[stage] = key
        self.summaries[stage] = self.cache.manifest(stage, key).get("summary", {})
        return path

    def run_stage(self, stage: Stage, config: dict, build) -> Path:
        """Find or build a backend's own ``stage``: its key holds ``config``, its version and its
        inputs' keys (each input found or built first); ``build(tmp) -> summary`` writes it."""
        for name in stage.inputs:
            self.output_of(name)
        upstream = [self.keys[name] for name in stage.inputs]
        return self._run(stage.name, config, upstream, build, version=stage.version)

    # -- corpus ----------------------------------------------------------------------------
    @cached_property
    def corpus_root(self) -> Optional[Path]:
        data = self.exp.data
        if data.kind != "synth":  # DataConfig has checked that data.root exists
            self.keys["corpus"] = f"path:{Path(data.root).resolve()}"
            return Path(data.root).resolve()
        from lstm_exp.data.synth import generate_corpus

        synth = data.synth
        config = _without(_plain(synth), "workers")

        def build(tmp: Path) -> dict:
            return generate_corpus(tmp, synth, progress=self.progress)

        return self._run("corpus", config, [], build)

    # -- prepare ---------------------------------------------------------------------------
    @cached_property
    def prepared_dir(self) -> Path:
        from lstm_exp.data.prepare import prepare_data

        corpus_root = self.corpus_root
        data = self.exp.data
        config = {**_without(_plain(data), "workers", "synth"),
                  **_file_stamps(data, "cmvn", "dev_speakers_list", "test_speakers_list")}

        # feats.scp holds absolute paths (Kaldi's convention) into the entry's final folder
        final = self.cache.path("prepare", self._key("prepare", config, [self.keys["corpus"]]))

        def build(tmp: Path) -> dict:
            return prepare_data(data, tmp, corpus_root=corpus_root, progress=self.progress, final_dir=final)

        return self._run("prepare", config, [self.keys["corpus"]], build)

    def check_batch_fits(self, split: str, max_utterances: Optional[int] = None) -> None:
        """Refuse ``batch`` larger than the utterances a job evaluates (``split``, cut to
        ``max_utterances``): every batch would be smaller, and a row labelled with ``batch``
        would compare a smaller batch with the others.  Runs after prepare, before any model."""
        feats_scp = self.prepared_dir / split / "feats.scp"
        if not feats_scp.is_file():
            return  # loading the split says what is wrong
        total = sum(1 for line in feats_scp.read_text(encoding="utf-8").splitlines() if line.strip())
        count = min(total, max_utterances) if max_utterances else total
        batch = self.exp.batch
        if batch <= count:
            return
        if count < total:
            what = f"the {count} utterances evaluated (infer.max_utterances={max_utterances} of the {total} of split {split})"
        else:
            what = f"the {count} utterances of split {split} ({feats_scp})"
        raise ConfigError(f"batch={batch} is larger than {what}: its only batch would hold {count}, so a "
                          f"b{batch} result would measure b{count}; write batch={count} or less")

    # -- train -----------------------------------------------------------------------------
    @cached_property
    def checkpoint(self) -> Path:
        """Our trained checkpoint, or an external one given as ``model.checkpoint``."""
        model_cfg = self.exp.model
        if model_cfg.checkpoint:
            path = Path(model_cfg.checkpoint).expanduser().resolve()
            if not path.is_file():
                raise ConfigError(f"model.checkpoint={model_cfg.checkpoint}: no such file")
            return self._import_checkpoint(path)
        from lstm_exp.model.train import train_model

        prepared = self.prepared_dir
        train_cfg = self.exp.train
        config = {"model": _plain(model_cfg), "train": _without(_plain(train_cfg), "resume")}

        def build(tmp: Path) -> dict:
            # Training works in a stable folder beside the cache entry, named by the train key (so
            # it only ever holds this config's epochs), so that a rerun of an interrupted job
            # resumes from its last finished epoch (train.resume, default true). force=true (stage
            # all or train) and train.resume=false start afresh; train_model itself starts afresh,
            # with a warning naming the file, when the folder's last.pt cannot be read.
            work = self.cache.root / "train" / f".work-{self._key('train', config, [self.keys['prepare']])}"
            afresh = self.exp.force and self.exp.stage in ("train", "all")
            if work.exists() and (afresh or not train_cfg.resume):
                log.info("train: discarding the work folder %s (%s)", work,
                         "force=true" if afresh else "train.resume=false")
                shutil.rmtree(work)
            work.mkdir(parents=True, exist_ok=True)
            summary = train_model(model_cfg, train_cfg, prepared, work, progress=self.progress)
            for item in work.iterdir():
                shutil.move(str(item), tmp / item.name)
            work.rmdir()
            return summary

        out = self._run("train", config, [self.keys["prepare"]], build)
        if self.summaries["train"].get("machine_dependent"):  # e.g. train.max_minutes cut training short
            log.warning("train: %s is machine-dependent (%s): another machine trains other weights", out,
                        self.summaries["train"].get("machine_dependent_because", ""))
        return out / "model.pt"

    def _import_checkpoint(self, path: Path) -> Path:
        """Load an external (untrusted) checkpoint once, check it, and store it in our format."""
        from lstm_exp.model.checkpoint import load_checkpoint, save_checkpoint

        model_cfg = self.exp.model
        size, mtime = file_stamp(path)
        config = {"checkpoint": str(path), "size": size, "mtime": mtime,
                  "units_file": model_cfg.units_file, "model": _plain(model_cfg),
                  **_file_stamps(model_cfg, "units_file")}

        def build(tmp: Path) -> dict:
            model = load_checkpoint(path, units_file=model_cfg.units_file, trust=model_cfg.trust_checkpoint,
                                    expected=model_cfg)
            save_checkpoint(tmp / "model.pt", model, model.units, source=str(path))
            return {"source": str(path), "params": model.num_parameters(), "arch": model.arch.to_dict()}

        return self._run("train", config, [], build) / "model.pt"

    @cached_property
    def model(self):
        from lstm_exp.model.checkpoint import load_checkpoint

        return load_checkpoint(self.checkpoint)

    @cached_property
    def units(self) -> list[str]:
        """The model's units; with ``export.onnx_file``, ``model.units_file``'s or the prepared data's."""
        from lstm_exp.model.checkpoint import read_units, require_units  # refuses a model without units

        if self.exp.export.onnx_file:
            from lstm_exp.data.batching import load_units

            units_file = self.exp.model.units_file
            return read_units(units_file) if units_file else load_units(self.prepared_dir / "units")
        return require_units(self.model, self.exp.model.checkpoint)

    def output_lengths(self, frames: np.ndarray) -> np.ndarray:
        """Valid output frames of the artefact's network for inputs of ``frames`` valid frames."""
        if self.exp.export.onnx_file:
            from lstm_exp.model.onnx_file import halved

            self.onnx_path  # noqa: B018 - the import records the halvings
            return halved(frames, int(self.summaries["export"]["time_halvings"]))
        import torch

        return self.model.output_lengths(torch.as_tensor(frames)).numpy()

    # -- export ----------------------------------------------------------------------------
    @cached_property
    def export_shape(self):
        return self.plugin.export_shape(self.exp.backend, self.exp)

    @cached_property
    def onnx_path(self) -> Path:
        from lstm_exp.model.export import export_onnx, max_abs_diff_vs_torch

        export_cfg = self.exp.export
        if export_cfg.onnx_file:
            return self._import_onnx(export_cfg.onnx_file)
        shape = self.export_shape
        checkpoint = self.checkpoint  # noqa: F841 - the train key is upstream of export
        # only what shapes the written file is hashed (export.dynamic/batch/frames as the plugin resolved them)
        config = {"opset": export_cfg.opset, "atol": export_cfg.atol, "shape": _plain(shape)}

        def build(tmp: Path) -> dict:
            dynamic_batch = shape.dynamic or shape.dynamic_batch_only
            path = export_onnx(self.model, tmp / "model.onnx", opset=export_cfg.opset, batch=shape.batch,
                               frames=shape.frames, dynamic=shape.dynamic, dynamic_batch=dynamic_batch)
            checks = self.verification_batches(shape)
            source = self.exp.model.checkpoint or f"checkpoint {self.checkpoint}"
            diff = max_abs_diff_vs_torch(path, self.model, [x for _, x in checks], names=[n for n, _ in checks],
                                         source=source)
            if not diff <= export_cfg.atol:  # NaN compares false
                raise DataError(f"{path}: onnxruntime and torch differ by {diff:.3g} > export.atol={export_cfg.atol}")
            return {"opset": export_cfg.opset, "max_abs_diff": diff, **_plain(shape)}

        return self._run("export", config, [self.keys["train"]], build) / "model.onnx"

    def _import_onnx(self, onnx_file: str) -> Path:
        """An ONNX made elsewhere, checked once (``lstm_exp.model.onnx_file``) and stored like our
        export; whether it fits this job (batching, units) is checked on every run."""
        from lstm_exp.data.batching import model_input_dim
        from lstm_exp.model.onnx_file import check_onnx_fits, inspect_onnx

        path = Path(onnx_file).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"export.onnx_file={onnx_file}: no such file")
        prepared = self.prepared_dir
        size, mtime = file_stamp(path)
        config = {"onnx_file": str(path), "size": size, "mtime": mtime}

        def build(tmp: Path) -> dict:
            facts = inspect_onnx(path, model_input_dim(prepared))
            shutil.copyfile(path, tmp / "model.onnx")
            return facts

        out = self._run("export", config, [self.keys["prepare"]], build)
        exp = self.exp
        static = self.plugin.static_frames(exp.backend) is not None
        units_source = f"model.units_file={exp.model.units_file}" if exp.model.units_file else \
            f"the prepared units {prepared / 'units'}"
        check_onnx_fits(self.summaries["export"], batch=exp.batch,
                        batching=exp.infer.batching, pad_to=exp.infer.pad_to,
                        om_frames=self.export_shape.frames if static else None,
                        om_gears=static and self.export_shape.dynamic_batch_only,
                        units=self.units, units_source=units_source)
        return out / "model.onnx"

    def checked_shape(self):
        """The shape of the ONNX the backend runs: our export's, or the imported file's axes."""
        from lstm_exp.backends.plugin import ExportShape

        if not self.exp.export.onnx_file:
            return self.export_shape
        self.onnx_path  # noqa: B018 - the import records the axes
        facts = self.summaries["export"]
        batch, frames = facts["batch"], facts["frames"]
        return ExportShape(dynamic=batch is None and frames is None, batch=batch or self.exp.batch,
                           frames=frames or RECIPE_FRAMES, dynamic_batch_only=batch is None and frames is not None)

    def verification_batches(self, shape) -> list[tuple[str, np.ndarray]]:
        """Real dev batches in the shapes the export takes: two batch sizes padded to each batch's
        longest (dynamic axes), or ``[batch, frames]`` batches of utterances that fit (static);
        each with its name (``dev batch of <n> utterances starting at <utt>``)."""
        from lstm_exp.data.batching import load_split, load_units, plan_batches

        # only the features matter: the prepared units parse the labels (a model may have none)
        examples = load_split(self.prepared_dir, "dev", load_units(self.prepared_dir / "units"), progress=False)
        if shape.dynamic:  # a batch of 4 and one of 8 (fewer where the dev split is smaller)
            groups = [(examples[:4], 4), (examples[4:12], 8)]
            batches = [b for group, size in groups if group for b in plan_batches(group, size, "longest")]
            return [(_batch_name(b), b.x) for b in batches]
        fitting = [ex for ex in examples if ex.feats.shape[0] <= shape.frames]
        if not fitting:
            raise DataError(f"no dev utterance fits the {shape.frames} frames of backend={self.plugin.name}'s "
                            "static input: raise its frame count")
        sizes = [shape.batch] if not shape.dynamic_batch_only else sorted({1, shape.batch})
        batches = []
        for size in sizes:
            group = [fitting[i % len(fitting)] for i in range(size)]
            batches += [(_batch_name(b), b.x) for b in plan_batches(group, size, "fixed", pad_to=shape.frames)]
        return batches

    # -- artefact for a backend ------------------------------------------------------------
    def output_of(self, stage: str) -> Any:
        """The output of ``stage`` (found in the cache or built): one of the pipeline's own stages,
        or one the backend's plugin owns."""
        core = {"corpus": lambda: self.corpus_root, "prepare": lambda: self.prepared_dir,
                "train": lambda: self.checkpoint, "export": lambda: self.onnx_path}
        if stage in core:
            return core[stage]()
        if stage not in self._outputs:
            own = self.plugin.stage(stage)
            self._outputs[stage] = own.output(self, own)
        return self._outputs[stage]

    def artifact(self) -> Path:
        """The file the backend loads: the output of the last stage its plugin needs."""
        stages = [s for s in stages_needed("all", self.exp.backend) if s != "infer"]
        return self.output_of(stages[-1])

    def run_until(self, stage: str) -> None:
        """Run (or find cached) every stage up to and including ``stage`` (not infer)."""
        for name in stages_needed(stage, self.exp.backend):
            if name == "train" and self.exp.export.onnx_file:
                continue  # the ONNX made elsewhere replaces the model
            if name != "infer":
                self.output_of(name)

    def describe(self) -> dict:
        return {"keys": dict(self.keys), "summaries": json.loads(json.dumps(self.summaries, default=str))}
