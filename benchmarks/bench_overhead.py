"""The framework's backend=onnxruntime job against a bare onnxruntime loop over the same batches.

No arguments needed: composes the default experiment (``python -m lstm_exp``'s), builds or
reuses its cached stages (corpus, prepare, train, export) under ``./cache`` of the working
directory, then alternates, ``--rounds`` times:

* framework: the job's evaluation (``lstm_exp.evaluate.evaluate_job``: plugin, artefact, batch
  planner, backend, warm-ups, ``--passes`` timed passes; decoding on the first pass only);
  its rate = utterances of the timed passes / sum of their ``e2e_ms`` (numpy batch in, numpy
  log-probs out, measured around ``Backend.run``);
* bare (alternately before and after the framework): a fresh ``onnxruntime.InferenceSession`` with the same session options on the same
  padded batches, the same warm-ups, then ``--passes`` passes of ``session.run``, timed as a
  whole with ``time.perf_counter``.

It prints the command, the hardware, one row per round and the medians; its last line is
``overhead_ratio=<framework utt/s / bare utt/s>`` (median of the per-round ratios).

    python benchmarks/bench_overhead.py [--rounds 5] [--passes 3] [key=value ...]
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
    """utt/s of plain ``session.run`` over ``batches``, ``passes`` times (after ``warmup`` runs)."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = backend_cfg.intra_op_threads
    options.inter_op_num_threads = backend_cfg.inter_op_threads
    session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=list(backend_cfg.providers))
    xs = [np.ascontiguousarray(b.x, dtype=np.float32) for b in batches]
    for _ in range(1 + warmup):  # the framework's cold-start batch plus its warm-ups
        session.run(["output1"], {"actual_input_1": xs[0]})
    utts = sum(x.shape[0] for x in xs) * passes
    t0 = time.perf_counter()
    for _ in range(passes):
        for x in xs:
            session.run(["output1"], {"actual_input_1": x})
    return utts / (time.perf_counter() - t0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="alternating framework/bare rounds (median reported)")
    parser.add_argument("--passes", type=int, default=3, help="timed passes over the split per round")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the default experiment, e.g. batch=8")
    args = parser.parse_args(argv)

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
        framework = m["utterances"] * m["timed_passes"] / (m["e2e_ms_mean"] * m["batches"] * m["timed_passes"] / 1e3)
        if round_no % 2 == 1:
            bare = bare_loop(pipeline.artifact(), exp.backend, batches, exp.infer.warmup, args.passes)
        rows.append({"round": round_no, "framework_utt_s": framework, "bare_utt_s": bare,
                     "ratio": framework / bare, "framework_model_only_utt_s": m["throughput_utt_s"],
                     "per": m["per"]})
    table(rows, ["round", "framework_utt_s", "bare_utt_s", "ratio", "framework_model_only_utt_s", "per"])
    med = {k: statistics.median(r[k] for r in rows) for k in ("framework_utt_s", "bare_utt_s", "ratio")}
    print(f"median: framework {med['framework_utt_s']:.1f} utt/s, bare {med['bare_utt_s']:.1f} utt/s "
          "(framework: utterances / sum of e2e_ms around Backend.run; bare: utterances / wall time of the session.run loop)")
    print(f"overhead_ratio={med['ratio']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
