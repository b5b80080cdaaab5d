"""onnxruntime precisions on the same batches: fp32 vs int8 (dynamic quantization, CPU) or fp16 (GPU).

Composes the default experiment (or the one ``key=value`` overrides describe), builds or reuses
its cached stages under ``./cache`` (the ``precision`` stage converts the export once per
precision), then runs the job's evaluation (``lstm_exp.evaluate.evaluate_job``) once per
precision per round, in a rotating order, with ``infer.parity=true`` (torch fp32 on the same
batches).  Reports model-only utt/s (median over rounds), PER, the PER change against fp32 and
the largest log-prob difference against torch; the last line is
``<precision>_vs_fp32=<utt/s ratio> per_delta=<PER - fp32 PER>``.

    python benchmarks/bench_precision.py [--precisions fp32,int8] [--rounds 3] [--passes 3] [key=value ...]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import compose_experiment, header, pipeline_for, table  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precisions", default="fp32,int8", help="comma-separated backend.precision values")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=3, help="timed passes over the split per job")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. batch=32 infer.batching=sorted")
    args = parser.parse_args(argv)
    precisions = args.precisions.split(",")

    from lstm_exp.evaluate import evaluate_job

    header(f"bench_precision: onnxruntime {' vs '.join(precisions)}")
    exps = {p: compose_experiment(["backend=onnxruntime", f"backend.precision={p}", f"infer.repeats={args.passes}",
                                   "infer.parity=true", *args.overrides], Path.cwd()) for p in precisions}
    pipelines = {p: pipeline_for(exp) for p, exp in exps.items()}
    exp = exps[precisions[0]]
    print(f"setup: batch {exp.batch}, batching {exp.infer.batching}, split {exp.split.name}, {exp.infer.warmup} warm-ups, "
          f"{args.passes} timed passes per job, {args.rounds} rounds; artefacts: "
          + ", ".join(f"{p} {pipelines[p].artifact()}" for p in precisions))
    runs: dict[str, list[dict]] = {p: [] for p in precisions}
    for round_no in range(args.rounds):
        shift = round_no % len(precisions)
        for p in precisions[shift:] + precisions[:shift]:
            result, _ = evaluate_job(exps[p], pipelines[p])
            runs[p].append(result.metrics)
    base = precisions[0]
    base_utt_s = statistics.median(m["throughput_utt_s"] for m in runs[base])
    rows = []
    for p in precisions:
        utt_s = statistics.median(m["throughput_utt_s"] for m in runs[p])
        first = runs[p][0]
        rows.append({"precision": p, "variant": str(exps[p].backend.variant()), "utt_s (model)": utt_s,
                     "speed-up": utt_s / base_utt_s, "PER %": first["per"], "PER delta": first["per"] - runs[base][0]["per"],
                     "max |dlogp| vs torch": first["parity_max_abs_diff"]})
    table(rows, ["precision", "variant", "utt_s (model)", "speed-up", "PER %", "PER delta", "max |dlogp| vs torch"])
    print("(utt/s = utterances of the timed passes / sum of the backend's infer_ms; medians over rounds)")
    for row in rows[1:]:
        print(f"{row['precision']}_vs_{base}={row['speed-up']:.2f} per_delta={row['PER delta']:+.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
