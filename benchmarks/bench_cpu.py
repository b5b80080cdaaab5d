"""Every CPU inference variant of the recipe-size network (``model=ctc_recipe``), each runtime in
its own process, rounds alternating, ratios against onnxruntime fp32 within the one run.

    python benchmarks/bench_cpu.py --prepared cache/prepare/<key>      # 390 frames and the dev set's lengths
    python benchmarks/bench_cpu.py --variants onnxruntime-cpu-fp32,openvino-cpu-fp32 --batches 1,16

Variants (names as lstm_exp's ``variant`` param):

* ``onnxruntime-cpu-fp32`` / ``-int8``: the framework's OnnxRuntimeBackend on the project's ONNX
  export (dynamic axes) / on the project's int8 conversion of it (``backends.onnxruntime.stages.convert_precision``).
* ``openvino-cpu-fp32`` / ``-bf16``: the framework's OpenVinoBackend (INFERENCE_PRECISION_HINT set
  explicitly; LATENCY below batch 8, THROUGHPUT with async requests from 8 up); bf16 only where
  the CPU has it, else the row says the preflight's refusal.
* ``torch-cpu-fp32`` / ``-bf16``: ``CTCModel`` eager under ``torch.inference_mode`` (bf16:
  ``torch.autocast('cpu', dtype=torch.bfloat16)``, the weights stay fp32).

Every runtime gets ``--threads`` threads (2 = this VM's cores). Weights: random (seed
``--seed``) unless ``--checkpoint``; timing does not depend on the weights.

What is timed: ``infer_ms`` = the model execute only, as each framework backend measures it
(onnxruntime: ``session.run`` on host arrays; OpenVINO: first ``start_async`` to the last
``wait``; torch: the forward call); inputs are random normal at the shape timed, made before
the clock. Shapes: ``390`` = every batch ``[B, 390, 243]``; ``real`` = the dev set's lengths
from ``<prepared>/dev/utt2num_frames`` in file order, each batch padded to its longest (the
framework's ``infer.batching=longest``), the first ``--real-batches`` batches. Per round each
variant, in a rotating order, runs ``--warmup`` untimed passes over the point's shapes and then
``--repeats`` timed passes; only one worker runs at a time (the others wait on their pipe). A
variant whose call at a point takes longer than ``--call-budget-s`` (torch bf16 without bf16
instructions) is not asked again at that point nor at larger batches (the onnxruntime fp32 baseline
always is); the report lists it.

Reported per point: p50 / p90 of infer_ms over every timed batch of every round (real: per
batch, whose shapes differ), utt/s, achieved GFLOP/s (2 x the network's multiply-adds at the
padded frames, divided by the summed infer_ms), its share of the machine's measured FMA peak;
``cpu_gflops`` the same flops per CPU-second the worker process spent in the calls x threads
(what the threads reach when each has a core: comparable across loads) against the probe's
per-CPU-second peak; and the speed ratio against onnxruntime-cpu-fp32 (its summed time / the variant's, per round;
median and min-max over rounds).

The peak probe (before and after the rounds): ``fma``: a C loop of independent 256-bit
``vfmadd`` chains (8 fp32 lanes x 2 flops), one pthread per thread, compiled here with gcc
(-O3 -funroll-loops -mavx2 -mfma): the arithmetic ceiling of fp32 FMA on AVX2 (AVX-512 is not
used even where present), as wall GFLOP/s (the share of the peak is against this one) and as
flops per CPU-second x threads (the ceiling had each thread a core of its own: the load's effect); ``gemm``: ``torch.mm`` fp32 2048x2048 with the same threads: a practical ceiling.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FEAT_DIM = 243
FRAMES = 390
BASELINE = "onnxruntime-cpu-fp32"
ALL_VARIANTS = ("onnxruntime-cpu-fp32", "onnxruntime-cpu-int8", "torch-cpu-fp32", "torch-cpu-bf16",
                "openvino-cpu-fp32", "openvino-cpu-bf16")


# ----------------------------------------------------------------------------- the network

def recipe_arch():
    """The ``model=ctc_recipe`` architecture, read from its YAML (one place for the fact)."""
    from omegaconf import OmegaConf

    from lstm_exp.model.ctc import ModelArch

    values = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "model" / "ctc_recipe.yaml"))
    return ModelArch(**{k: v for k, v in values.items() if k in ModelArch.__dataclass_fields__})


def build_model(checkpoint: Optional[Path], seed: int):
    import torch

    from lstm_exp.model.checkpoint import load_checkpoint
    from lstm_exp.model.ctc import CTCModel

    if checkpoint:
        return load_checkpoint(checkpoint).eval()
    torch.manual_seed(seed)
    return CTCModel(recipe_arch()).eval()


def write_models(out: Path, checkpoint: Optional[Path], seed: int) -> Dict[str, Path]:
    """The fp32 ONNX (the project's exporter, dynamic axes), its int8 conversion and the checkpoint."""
    from lstm_exp.model.checkpoint import save_checkpoint
    from lstm_exp.backends.onnxruntime.stages import convert_precision
    from lstm_exp.model.export import export_onnx

    model = build_model(checkpoint, seed)
    paths = {"checkpoint": save_checkpoint(out / "model.pt", model, None)}
    paths["fp32"] = export_onnx(model, out / "model.onnx", dynamic=True)
    paths["int8"] = convert_precision(paths["fp32"], out / "model.int8.onnx", "int8")
    return paths


# ----------------------------------------------------------------------------- the workers

class TorchRunner:
    """CTCModel eager on CPU; bf16 under torch.autocast (what TorchBackend times: the forward call)."""

    def __init__(self, checkpoint: Path, precision: str, threads: int) -> None:
        import torch

        from lstm_exp.model.checkpoint import load_checkpoint

        torch.set_num_threads(threads)
        self.torch, self.precision = torch, precision
        self.model = load_checkpoint(checkpoint).eval()

    def run(self, x: np.ndarray) -> float:
        torch = self.torch
        inputs = torch.from_numpy(x)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            t0 = time.perf_counter()
            self.model(inputs)
            return (time.perf_counter() - t0) * 1e3

    def describe(self) -> Dict[str, str]:
        return {"runtime": f"torch {self.torch.__version__}", "threads": str(self.torch.get_num_threads())}


class BackendRunner:
    """A framework backend (onnxruntime, openvino) on its artefact; infer_ms as the backend measures it."""

    def __init__(self, backend, artifact: Path) -> None:
        self.backend = backend
        backend.load(artifact)

    def run(self, x: np.ndarray) -> float:
        return self.backend.run(x).infer_ms

    def describe(self) -> Dict[str, str]:
        return self.backend.describe()


def make_runner(variant: str, models: Dict[str, str], threads: int):
    runtime, _, precision = variant.split("-")
    if runtime == "torch":
        return TorchRunner(Path(models["checkpoint"]), precision, threads)
    from lstm_exp.backends.registry import plugin_for

    plugin = plugin_for(runtime)
    cfg = plugin.config_class(precision=precision, threads=threads)
    artifact = models[precision] if runtime == "onnxruntime" else models["fp32"]
    plugin.preflight(cfg)
    return BackendRunner(plugin.create(cfg), Path(artifact))


def worker(variant: str, models: Dict[str, str], threads: int) -> int:
    """Serve timing requests on stdin (one JSON line each) until EOF; one JSON line per answer."""
    from lstm_exp.errors import LstmExpError

    try:
        runner = make_runner(variant, models, threads)
    except LstmExpError as exc:
        print(json.dumps({"refused": str(exc)}), flush=True)
        return 0
    print(json.dumps({"ready": runner.describe()}), flush=True)
    rng = np.random.default_rng(0)
    for line in sys.stdin:
        request = json.loads(line)
        inputs = [rng.standard_normal((b, t, FEAT_DIM), dtype=np.float32) for b, t in request["shapes"]]
        for _ in range(request["warmup"]):
            for x in inputs:
                runner.run(x)
        times = [timed(runner, x) for _ in range(request["repeats"]) for x in inputs]
        print(json.dumps({"times": times}), flush=True)
    return 0


def timed(runner, x: np.ndarray) -> List[float]:
    """[frames, infer_ms, cpu_ms]: the runner's own infer_ms, and the CPU time every thread of this
    process spent in the call (time.process_time around it: the load-independent cost)."""
    cpu0 = time.process_time()
    infer_ms = runner.run(x)
    return [x.shape[1], infer_ms, (time.process_time() - cpu0) * 1e3]


class Worker:
    """The parent's handle on one variant's process."""

    def __init__(self, variant: str, models: Dict[str, Path], threads: int) -> None:
        self.variant = variant
        args = [sys.executable, __file__, "--worker", variant, "--threads", str(threads),
                "--models", json.dumps({k: str(v) for k, v in models.items()})]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        hello = self._read()
        self.refused, self.describe = hello.get("refused"), hello.get("ready", {})

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.variant}: the worker died (exit {self.proc.wait()})")
        return json.loads(line)

    def time(self, shapes: List[List[int]], warmup: int, repeats: int) -> List[List[float]]:
        self.proc.stdin.write(json.dumps({"shapes": shapes, "warmup": warmup, "repeats": repeats}) + "\n")
        self.proc.stdin.flush()
        return self._read()["times"]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


# ----------------------------------------------------------------------------- the peak probe

FMA_C = r"""
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#define CHAINS 12
static long iters;
static volatile float sink[64];
static void *loop(void *arg) {
    __m256 acc[CHAINS], a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-4f);
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_ps((float)c);
    for (long i = 0; i < iters; i++)
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    float total = 0; float out[8];
    for (int c = 0; c < CHAINS; c++) { _mm256_storeu_ps(out, acc[c]); for (int k = 0; k < 8; k++) total += out[k]; }
    sink[(long)arg] = total;
    return NULL;
}
int main(int argc, char **argv) {
    int threads = atoi(argv[1]); iters = atol(argv[2]);
    pthread_t t[64]; struct timespec s, e, cs, ce;
    clock_gettime(CLOCK_MONOTONIC, &s); clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cs);
    for (long i = 0; i < threads; i++) pthread_create(&t[i], NULL, loop, (void *)i);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &e); clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ce);
    double secs = (e.tv_sec - s.tv_sec) + (e.tv_nsec - s.tv_nsec) / 1e9;
    double cpu = (ce.tv_sec - cs.tv_sec) + (ce.tv_nsec - cs.tv_nsec) / 1e9;
    double flops = threads * (double)iters * CHAINS * 8 * 2;
    printf("%.3f %.3f\n", flops / secs / 1e9, flops / cpu * threads / 1e9);
    fprintf(stderr, "checksum %g\n", sink[0] + sink[threads - 1]);
    return 0;
}
"""


def fma_peak_gflops(threads: int, iters: int = 200_000_000, tries: int = 3) -> Optional[dict]:
    """The C FMA loop, best of ``tries``: ``wall`` GFLOP/s (what the threads got on this machine
    now) and ``cpu`` GFLOP/s (flops per CPU-second of the process x threads: the peak had each
    thread its own core, whatever the load); None without gcc."""
    with tempfile.TemporaryDirectory() as tmp:
        source, binary = Path(tmp) / "fma.c", Path(tmp) / "fma"
        source.write_text(FMA_C)
        built = subprocess.run(["gcc", "-O3", "-funroll-loops", "-mavx2", "-mfma", "-pthread", str(source),
                                "-o", str(binary)], capture_output=True, text=True)
        if built.returncode != 0:
            print(f"fma probe: gcc failed: {built.stderr.strip()[:200]}")
            return None
        runs = [subprocess.run([str(binary), str(threads), str(iters)], capture_output=True, text=True,
                               check=True).stdout.split() for _ in range(tries)]
    return {"wall": max(float(r[0]) for r in runs), "cpu": max(float(r[1]) for r in runs)}


def gemm_gflops(threads: int, size: int = 2048, repeats: int = 10) -> float:
    """Best torch.mm fp32 size x size over ``repeats`` (after 2 warm-ups), in GFLOP/s."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


def probe(threads: int) -> Dict[str, Optional[float]]:
    return {"fma_gflops": fma_peak_gflops(threads), "gemm_gflops": gemm_gflops(threads),
            "load": list(os.getloadavg())}


# ----------------------------------------------------------------------------- the rounds

def real_batches(prepared: Path, batch: int, count: int) -> List[List[int]]:
    """The first ``count`` batches of the dev set in file order, each padded to its longest."""
    lengths = [int(line.split()[1]) for line in (prepared / "dev" / "utt2num_frames").read_text().splitlines()]
    shapes = [[len(chunk), max(chunk)] for chunk in (lengths[i:i + batch] for i in range(0, len(lengths), batch))]
    return [s for s in shapes if s[0] == batch][:count]


def points(batches: List[int], prepared: Optional[Path], real_count: int) -> List[dict]:
    out = [{"batch": b, "frames": "390", "shapes": [[b, FRAMES]]} for b in batches]
    if prepared:
        out += [{"batch": b, "frames": "real", "shapes": real_batches(prepared, b, real_count)} for b in batches]
    return out


def run_rounds(workers: Dict[str, Worker], plan: List[dict], rounds: int, warmup: int, repeats: int,
               call_budget_s: float) -> tuple[dict, dict]:
    """point index -> variant -> list (per round) of [[frames, ms], ...]; variants rotate per round.

    A variant whose call (warm-ups + timed passes) at a point took longer than ``call_budget_s``
    is not asked again for that point's later rounds nor for larger batches of the same frames
    mode (returned as ``over_budget``: "<variant> <frames mode>" -> the first batch it exceeded at)."""
    names = [n for n, w in workers.items() if not w.refused]
    times: dict = {i: {n: [] for n in names} for i in range(len(plan))}
    over_budget: dict = {}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for i, point in enumerate(plan):
            for name in order:
                dropped = over_budget.get(f"{name} {point['frames']}")
                if dropped and (point["batch"] > dropped or (point["batch"] == dropped and times[i][name])):
                    continue
                t0 = time.perf_counter()
                times[i][name].append(workers[name].time(point["shapes"], warmup, repeats))
                ms = ", ".join(f"{t:.1f} (cpu {c:.1f})" for _, t, c in times[i][name][-1])
                print(f"round {r + 1} b{point['batch']} {point['frames']} {name}: infer_ms {ms}; "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)
                if time.perf_counter() - t0 > call_budget_s and name != BASELINE:  # the ratios need the baseline
                    over_budget.setdefault(f"{name} {point['frames']}", point["batch"])
        print(f"round {r + 1}/{rounds} done, load {os.getloadavg()[0]:.2f}", flush=True)
    return times, over_budget


def summarise(plan: List[dict], times: dict, arch, peak: Optional[dict], threads: int) -> List[dict]:
    from bench_gpu import multiply_adds_per_utt  # the network's multiply-adds at a frame count

    rows = []
    for i, point in enumerate(plan):
        base = times[i].get(BASELINE)
        for name, per_round in times[i].items():
            if not per_round:
                continue
            base_rounds = base[: len(per_round)] if base else None
            ms = [t for rnd in per_round for _, t, _ in rnd]
            flops = sum(2 * multiply_adds_per_utt(arch, int(f)) * point["batch"] for rnd in per_round for f, _, _ in rnd)
            total_s, cpu_s = sum(ms) / 1e3, sum(c for rnd in per_round for _, _, c in rnd) / 1e3
            ratios = [sum(t for _, t, _ in b) / sum(t for _, t, _ in v)
                      for b, v in zip(base_rounds, per_round)] if base else []
            rows.append({
                "variant": name, "batch": point["batch"], "frames": point["frames"], "samples": len(ms),
                "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
                "utt_s": point["batch"] * len(ms) / total_s, "gflops": flops / total_s / 1e9,
                "peak_pct": 100 * flops / total_s / 1e9 / peak["wall"] if peak else float("nan"),
                "cpu_gflops": flops / cpu_s * threads / 1e9,
                "cpu_peak_pct": 100 * flops / cpu_s * threads / 1e9 / peak["cpu"] if peak else float("nan"),
                "vs_ort_fp32": statistics.median(ratios) if ratios else float("nan"),
                "ratio_min": min(ratios) if ratios else float("nan"), "ratio_max": max(ratios) if ratios else float("nan"),
            })
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--models", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help="a trained ctc_recipe checkpoint; random weights if absent")
    parser.add_argument("--prepared", type=Path, help="a prepared data folder (cache/prepare/<key>): the dev set's lengths")
    parser.add_argument("--variants", default=",".join(ALL_VARIANTS))
    parser.add_argument("--batches", default="1,16,32")
    parser.add_argument("--real-batches", type=int, default=3, help="dev batches timed per real-length point")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--call-budget-s", type=float, default=60.0,
                        help="a variant slower than this per call is not asked again at this point or larger batches")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "bench_cpu_out")))
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, json.loads(args.models), args.threads)
    return drive(args)


def drive(args) -> int:
    from bench_common import hardware, table

    args.out.mkdir(parents=True, exist_ok=True)
    print(f"== bench_cpu  command: python {' '.join(sys.argv)}")
    print(f"hardware: {hardware()}")
    before = probe(args.threads)
    print(f"peak probe before: {before}")
    models = write_models(args.out, args.checkpoint, args.seed)
    variants = [v for v in args.variants.split(",") if v]
    workers = {v: Worker(v, models, args.threads) for v in variants}
    for name, w in workers.items():
        print(f"{name}: {'REFUSED: ' + w.refused if w.refused else json.dumps(w.describe)}")
    plan = points([int(b) for b in args.batches.split(",")], args.prepared, args.real_batches)
    try:
        times, over_budget = run_rounds(workers, plan, args.rounds, args.warmup, args.repeats, args.call_budget_s)
    finally:
        for w in workers.values():
            w.close()
    (args.out / "times.json").write_text(json.dumps({"plan": plan, "times": times, "over_budget": over_budget}))
    after = probe(args.threads)
    print(f"peak probe after: {after}")
    probes = [p["fma_gflops"] for p in (before, after) if p["fma_gflops"]]
    peak = {k: max(p[k] for p in probes) for k in ("wall", "cpu")} if probes else None
    arch = recipe_arch() if not args.checkpoint else build_model(args.checkpoint, 0).arch
    rows = summarise(plan, times, arch, peak, args.threads)
    table(rows, ["variant", "batch", "frames", "samples", "p50_ms", "p90_ms", "utt_s", "gflops", "peak_pct",
                 "cpu_gflops", "cpu_peak_pct", "vs_ort_fp32", "ratio_min", "ratio_max"])
    print(f"over budget (not asked again at that point's later rounds or larger batches): {over_budget}")
    report = {"argv": sys.argv, "over_budget": over_budget, "probe_before": before, "probe_after": after, "plan": plan, "rows": rows,
              "refused": {n: w.refused for n, w in workers.items() if w.refused},
              "describe": {n: w.describe for n, w in workers.items()}, "weights": str(args.checkpoint or "random")}
    (args.out / "bench_cpu.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out / 'bench_cpu.json'}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
