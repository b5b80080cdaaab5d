"""The framework's backend=onnxruntime job against a bare onnxruntime loop over the same batches.

No arguments needed: composes the default experiment (``python -m lstm_exp``'s), builds or
reuses its cached stages (corpus, prepare, train, export) under ``./cache`` of the working
directory, then alternates, ``--rounds`` times:

* framework: the job's evaluation (``lstm_exp.evaluate.evaluate_job``: plugin, artefact, batch
  planner, backend, warm-ups, ``--passes`` timed passes; decoding on the first pass only);
  its rate = utterances / the median wall time of its passes after the first (``pass_utt_s``:
  the job's whole loop around ``Backend.run``, clocked like the bare loop; also shown:
  utterances / sum of ``e2e_ms`` and / sum of ``infer_ms``);
* bare (alternately before and after the framework): a fresh ``onnxruntime.InferenceSession``
  with the same session options on the same padded batches, the same warm-ups, then
  ``--passes`` passes of ``session.run``, each timed with ``time.perf_counter``; its rate =
  utterances / the median pass.

It prints the command, the hardware, one row per round and the medians; its last line is
``overhead_ratio=<framework utt/s / bare utt/s>`` (median of the per-round ratios).

    python benchmarks/bench_overhead.py [--rounds 5] [--passes 4] [key=value ...]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import compose_experiment, header, pipeline_for, table  # noqa: E402


def bare_loop(onnx_path: Path, backend_cfg, batches, warmup: int, passes: int) -> float:
    """utt/s of plain ``session.run`` over ``batches``: utterances / the median wall time of
    ``passes`` passes (after ``1 + warmup`` runs of the first batch, as the framework does)."""
    import numpy as np
    import onnxruntime as ort

    from lstm_exp.backends.onnxruntime.cpu import cpu_settings, usable_cores

    cpu = cpu_settings(backend_cfg, usable_cores(), jobs=1)  # what the framework's session gets, run alone
    options = ort.SessionOptions()
    options.intra_op_num_threads = cpu.intra_op_threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if cpu.allow_spinning else "0")
    options.inter_op_num_threads = backend_cfg.inter_op_threads
    session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=list(backend_cfg.providers))
    xs = [np.ascontiguousarray(b.x, dtype=np.float32) for b in batches]
    for _ in range(1 + warmup):  # the framework's cold-start batch plus its warm-ups
        session.run(["output1"], {"actual_input_1": xs[0]})
    utts = sum(x.shape[0] for x in xs)
    pass_s = []
    for _ in range(passes):
        t0 = time.perf_counter()
        for x in xs:
            session.run(["output1"], {"actual_input_1": x})
        pass_s.append(time.perf_counter() - t0)
    return utts / statistics.median(pass_s)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="alternating framework/bare rounds (median reported)")
    parser.add_argument("--passes", type=int, default=4, help="timed passes over the split per round (>= 2)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the default experiment, e.g. batch=8")
    args = parser.parse_args(argv)
    if args.passes < 2:
        parser.error("--passes must be >= 2: the framework's rate comes from its passes after the first")

    from lstm_exp.data.batching import load_split, plan_batches
    from lstm_exp.evaluate import evaluate_job

    exp = compose_experiment(["backend=onnxruntime", f"infer.repeats={args.passes}", *args.overrides], Path.cwd())
    header("bench_overhead: framework backend=onnxruntime job vs a bare onnxruntime loop")
    pipeline = pipeline_for(exp)
    examples = load_split(pipeline.prepared_dir, exp.split.name, pipeline.units, progress=False)
    if exp.infer.max_utterances:
        examples = examples[: exp.infer.max_utterances]
    batches = plan_batches(examples, exp.batch, exp.infer.batching, pad_to=exp.infer.pad_to)
    print(f"setup: variant {exp.backend.variant()}, batch {exp.batch}, batching {exp.infer.batching}, "
          f"{len(examples)} utterances in {len(batches)} batches, {exp.infer.warmup} warm-ups, "
          f"{args.passes} timed passes per round, {args.rounds} rounds (alternating); artefact {pipeline.artifact()}")
    rows = []
    for round_no in range(1, args.rounds + 1):
        if round_no % 2 == 0:  # alternate which goes first: a shared, loaded machine drifts
            bare = bare_loop(pipeline.artifact(), exp.backend, batches, exp.infer.warmup, args.passes)
        result, _ = evaluate_job(exp, pipeline)
        m = result.metrics
        framework = m["pass_utt_s"]
        framework_e2e = m["utterances"] / (m["e2e_ms_mean"] * m["batches"] / 1e3)
        if round_no % 2 == 1:
            bare = bare_loop(pipeline.artifact(), exp.backend, batches, exp.infer.warmup, args.passes)
        rows.append({"round": round_no, "framework_utt_s": framework, "bare_utt_s": bare,
                     "ratio": framework / bare, "framework_e2e_utt_s": framework_e2e,
                     "framework_model_only_utt_s": m["throughput_utt_s"], "per": m["per"]})
    table(rows, ["round", "framework_utt_s", "bare_utt_s", "ratio", "framework_e2e_utt_s", "framework_model_only_utt_s",
                 "per"])
    med = {k: statistics.median(r[k] for r in rows) for k in ("framework_utt_s", "bare_utt_s", "ratio")}
    print(f"median: framework {med['framework_utt_s']:.1f} utt/s, bare {med['bare_utt_s']:.1f} utt/s "
          "(framework: utterances / median wall time of the job's passes after the first, which only re-run the model "
          "(pass_utt_s); bare: utterances / wall time of the session.run loop; e2e: / sum of e2e_ms around Backend.run)")
    print(f"overhead_ratio={med['ratio']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
