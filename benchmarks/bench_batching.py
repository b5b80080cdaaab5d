"""infer.batching=fixed vs longest vs sorted: throughput and PER on the same split.

Composes the default experiment (or the one ``key=value`` overrides describe), builds or reuses
its cached stages under ``./cache`` of the working directory, then runs the job's evaluation
(``lstm_exp.evaluate.evaluate_job``) once per mode per round, the modes in a rotating order,
``--rounds`` times.  Per mode: model-only utt/s (``throughput_utt_s``: utterances of the timed
passes / sum of the backend's ``infer_ms``), e2e utt/s (/ sum of ``e2e_ms``), padded frames and
PER (fixed pads to ``--pad-to``, 390 by default: the recipe's shape; the reverse LSTM reads the
padding, so PER may differ between modes).  Medians over rounds; the last line is
``sorted_vs_fixed=<sorted utt/s / fixed utt/s> per_delta=<PER sorted - PER fixed>``.

    python benchmarks/bench_batching.py [--rounds 3] [--passes 3] [--pad-to 390] [key=value ...]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import compose_experiment, header, pipeline_for, table  # noqa: E402

MODES = ("fixed", "longest", "sorted")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the three modes (median reported)")
    parser.add_argument("--passes", type=int, default=3, help="timed passes over the split per job")
    parser.add_argument("--pad-to", type=int, default=390, help="frames for batching=fixed (the recipe: 390)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. batch=32 backend=torch")
    args = parser.parse_args(argv)

    from lstm_exp.evaluate import evaluate_job

    header("bench_batching: infer.batching=fixed vs longest vs sorted")
    common = [f"infer.repeats={args.passes}", *args.overrides]
    exps = {mode: compose_experiment([*common, f"infer.batching={mode}",
                                      *([f"infer.pad_to={args.pad_to}"] if mode == "fixed" else [])], Path.cwd())
            for mode in MODES}
    pipeline = pipeline_for(exps["fixed"])
    exp = exps["fixed"]
    print(f"setup: variant {exp.backend.variant()}, batch {exp.batch}, split {exp.split.name}, {exp.infer.warmup} warm-ups, "
          f"{args.passes} timed passes per job, {args.rounds} rounds, fixed pads to {args.pad_to}")
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for round_no in range(args.rounds):
        order = MODES[round_no % 3:] + MODES[: round_no % 3]
        for mode in order:
            result, _ = evaluate_job(exps[mode], pipeline)
            m = result.metrics
            e2e_utt_s = m["utterances"] / (m["e2e_ms_mean"] * m["batches"] / 1e3)
            runs[mode].append({"utt_s": m["throughput_utt_s"], "e2e_utt_s": e2e_utt_s, "per": m["per"],
                               "per_recipe": m["per_recipe"], "padded_frames": m["padded_frames"],
                               "batches": m["batches"], "utterances": m["utterances"]})
    rows = []
    for mode in MODES:
        rs = runs[mode]
        rows.append({"batching": mode, "utt_s (model)": statistics.median(r["utt_s"] for r in rs),
                     "utt_s (e2e)": statistics.median(r["e2e_utt_s"] for r in rs),
                     "min..max utt_s": f"{min(r['utt_s'] for r in rs):.1f}..{max(r['utt_s'] for r in rs):.1f}",
                     "padded_frames": int(rs[0]["padded_frames"]), "PER %": rs[0]["per"],
                     "PER recipe %": rs[0]["per_recipe"]})
    table(rows, ["batching", "utt_s (model)", "utt_s (e2e)", "min..max utt_s", "padded_frames", "PER %", "PER recipe %"])
    by_mode = {r["batching"]: r for r in rows}
    print(f"({rows[0]['batching']}..: {runs['fixed'][0]['utterances']} utterances; utt/s = utterances of the timed passes / "
          "sum of infer_ms (model) or e2e_ms (around Backend.run); PER from the first pass, identical across rounds)")
    speedup = by_mode["sorted"]["utt_s (model)"] / by_mode["fixed"]["utt_s (model)"]
    print(f"sorted_vs_fixed={speedup:.2f} per_delta={by_mode['sorted']['PER %'] - by_mode['fixed']['PER %']:+.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
