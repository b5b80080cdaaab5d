"""The GPU inference variants of the recipe-size network through lstm_exp's own backends, batch by batch.

    python benchmarks/bench_gpu.py                                   # random weights: speed only
    python benchmarks/bench_gpu.py --checkpoint cache/train/<key>/model.pt --prepared cache/prepare/<key>
    python benchmarks/bench_gpu.py --variants torch-cuda-fp16-split-graph,onnxruntime-cuda-fp32 --batches 1,16,256
    python benchmarks/bench_gpu.py --device cpu                      # CPU dry run: tiny network, CPU variants

A driver, not a runner: each variant name is the framework's own (``TorchBackendConfig.variant()``,
``OnnxRuntimeBackendConfig.variant()``), turned into ``backend.*`` overrides, composed and
validated through :func:`lstm_exp.experiment.load_config` / ``validate`` (so the name must
round-trip), created by the backend's plugin and loaded on a checkpoint (torch) or its ONNX
export (onnxruntime), exactly as ``python -m lstm_exp backend=... `` runs it.

What is timed (each figure says which):

* ``infer_ms``: the backend's own model-execute time, ``RunOutput.infer_ms`` (torch on CUDA:
  CUDA events around the forward pass or the graph replay after the stream drained; onnxruntime:
  io binding on device buffers).  p50, p99 and mean over up to ``--repeats`` timed runs after
  ``--warmup`` runs, each point stopped after ``--point-budget-s`` (at least 5 runs); inputs
  rotate over three random batches of ``--frames`` frames (never zeros).
* ``e2e_ms``: wall time around ``Backend.run`` (host numpy in, host numpy out, copies included), p50.
* ``utt/s`` = batch x 1000 / infer_ms p50; ``TFLOP/s`` from the network's multiply-adds at ``--frames``.
* ``peak MiB``: ``Backend.device_peak_mem_mb`` (torch on CUDA), else empty.

Parity: max |log-prob - CPU torch fp32| on one batch of 16 (real dev utterances with
``--prepared``).  PER: greedy decoding of the dev split in batches of 16 padded to ``--frames``.
Batches: 1, 4, 8, 16, 32, then doubling until a variant fails (out of memory), exceeds
``--max-batch`` or its ``--variant-budget-s``.  Outputs under ``--out``: ``points.jsonl``,
``bench_gpu.json``, ``bench_gpu.csv``, ``bench_gpu.md`` (the tables printed at the end).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lstm_exp.model.ctc import CTCModel, ModelArch  # noqa: E402

FEAT_DIM = 243
#: the recipe's padding
FRAMES = 390
#: the variants measured without --variants, per --device
DEFAULT_VARIANTS = {
    "cuda": ["torch-cuda-fp32", "torch-cuda-fp32-tf32-graph", "torch-cuda-fp16", "torch-cuda-bf16",
             "torch-cuda-fp32-graph", "torch-cuda-fp16-graph", "torch-cuda-bf16-graph",
             "torch-cuda-fp16-split", "torch-cuda-fp16-split-graph", "onnxruntime-cuda-fp32"],
    "cpu": ["torch-cpu-fp32", "torch-cpu-bf16", "torch-cpu-fp32-split", "onnxruntime-cpu-fp32"],
}
#: the CPU dry run's network: small enough for CI, with a padded first LSTM input (244 -> 256)
TINY_ARCH = dict(conv_channels=[4, 4], lstm_layers=2, hidden=32)
#: torch variant suffix -> the override that selects it
TORCH_OPTIONS = {"tf32": "backend.allow_tf32=true", "split": "backend.lstm_form=split_direction",
                 "graph": "backend.cuda_graphs=true"}
#: onnxruntime device in a variant name -> its providers and io binding
ORT_DEVICES = {"cpu": ("[CPUExecutionProvider]", False), "cuda": ("[CUDAExecutionProvider]", True),
               "tensorrt": ("[TensorrtExecutionProvider,CUDAExecutionProvider]", True)}


# ----------------------------------------------------------------------------- variants -> backends

def variant_overrides(variant: str) -> List[str]:
    """The ``python -m lstm_exp`` overrides that select ``variant`` (a framework variant name)."""
    parts = variant.split("-")
    if len(parts) < 3:
        raise ValueError(f"{variant}: not a variant name (<backend>-<device>-<precision>[-options])")
    backend, device, precision, options = parts[0], parts[1], parts[2], parts[3:]
    if backend == "torch":
        unknown = [o for o in options if o not in TORCH_OPTIONS]
        if unknown:
            raise ValueError(f"{variant}: unknown torch option {unknown[0]!r} (known: {', '.join(TORCH_OPTIONS)})")
        return ["backend=torch", f"backend.device={device}", f"backend.precision={precision}",
                *[TORCH_OPTIONS[o] for o in options]]
    if backend == "onnxruntime" and device in ORT_DEVICES and precision == "fp32" and not options:
        providers, bind = ORT_DEVICES[device]
        return ["backend=onnxruntime", f"backend.providers={providers}", f"backend.io_binding={str(bind).lower()}"]
    raise ValueError(f"{variant}: this driver runs torch-* variants and onnxruntime-<cpu|cuda|tensorrt>-fp32 "
                     "(other precisions: sweep them with python -m lstm_exp)")


def backend_config(variant: str, workdir: Path) -> Any:
    """The validated backend config of ``variant``, composed as ``python -m lstm_exp`` would."""
    from lstm_exp.experiment import load_config, validate

    exp = validate(load_config("tracking=none", "progress=false", *variant_overrides(variant), root=workdir))
    if str(exp.backend.variant()) != variant:
        raise ValueError(f"{variant}: composes to {exp.backend.variant()}; write that name")
    return exp.backend


def open_backend(variant: str, checkpoint: Path, onnx: Optional[Path], workdir: Path):
    """The framework's backend for ``variant``, loaded (torch: the checkpoint; onnxruntime: its ONNX)."""
    from lstm_exp.backends.registry import plugin_for

    cfg = backend_config(variant, workdir)
    plugin = plugin_for(cfg.name)
    plugin.preflight(cfg)
    backend = plugin.create(cfg)
    artifact = checkpoint if cfg.name == "torch" else onnx
    if artifact is None:
        raise ValueError(f"{variant}: needs an ONNX export, and none was made")
    backend.load(artifact)
    return backend


# ----------------------------------------------------------------------------- the network

def multiply_adds_per_utt(arch: ModelArch, frames: int = FRAMES) -> float:
    """Multiply-adds of one utterance at ``frames`` input frames (convs + LSTMs + head)."""
    from lstm_exp.model.ctc import conv_out_size, conv_strides

    macs, steps, width, c_in = 0.0, frames, arch.input_dim, 1
    for c_out, (time_stride, feat_stride) in zip(arch.conv_channels, conv_strides(len(arch.conv_channels))):
        steps, width = conv_out_size(steps, time_stride), conv_out_size(width, feat_stride)
        macs += steps * width * c_out * c_in * 9
        c_in = c_out
    size = arch.lstm_input_dim
    for _ in range(arch.lstm_layers):
        macs += 2 * steps * 4 * arch.hidden * (size + arch.hidden)
        size = 2 * arch.hidden
    return macs + steps * size * arch.num_classes


def model_files(checkpoint: Optional[Path], device: str, workdir: Path, needs_onnx: bool, frames: int):
    """(model, checkpoint path, ONNX path or None, what the weights are): the given checkpoint, or
    random weights (the recipe's network on CUDA, :data:`TINY_ARCH` on CPU) saved as one."""
    import torch

    from lstm_exp.model.checkpoint import load_checkpoint, save_checkpoint

    if checkpoint:
        model, weights = load_checkpoint(checkpoint), f"checkpoint {checkpoint}"
    else:
        torch.manual_seed(0)
        arch = ModelArch() if device == "cuda" else ModelArch(**TINY_ARCH)
        model, weights = CTCModel(arch).eval(), f"random (seeded), {'recipe' if device == 'cuda' else 'tiny'} network"
        checkpoint = save_checkpoint(workdir / "model.pt", model, None)
    onnx = None
    if needs_onnx:
        from lstm_exp.model.export import export_onnx

        onnx = export_onnx(model.float().eval(), workdir / "model.onnx", opset=11, batch=2, frames=frames, dynamic=True)
    return model.float().eval(), Path(checkpoint), onnx, weights


# ----------------------------------------------------------------------------- measuring

@dataclass
class Point:
    variant: str
    batch: int
    status: str = "ok"
    infer_ms_p50: float = float("nan")
    infer_ms_p99: float = float("nan")
    infer_ms_mean: float = float("nan")
    e2e_ms_p50: float = float("nan")
    utt_s: float = float("nan")
    tflops: float = float("nan")
    peak_mib: float = float("nan")
    repeats: int = 0
    note: str = ""


def timed_runs(backend, inputs: Sequence[np.ndarray], warmup: int, repeats: int, budget_s: float
               ) -> tuple[List[float], List[float]]:
    """(infer_ms of each timed run, e2e_ms of each timed run) after ``warmup`` untimed runs."""
    for i in range(warmup):
        backend.run(inputs[i % len(inputs)])
    infer, e2e, started = [], [], time.perf_counter()
    while len(infer) < repeats and (len(infer) < 5 or time.perf_counter() - started < budget_s):
        t0 = time.perf_counter()
        out = backend.run(inputs[len(infer) % len(inputs)])
        e2e.append((time.perf_counter() - t0) * 1e3)
        infer.append(out.infer_ms)
    return infer, e2e


def measure(backend, variant: str, batch: int, frames: int, macs: float, args, rng: np.random.Generator) -> Point:
    """One point: ``batch`` x ``frames`` random inputs through ``backend``; failures become the status."""
    point = Point(variant, batch)
    inputs = [rng.standard_normal((batch, frames, FEAT_DIM), dtype=np.float32) for _ in range(3)]
    try:
        infer, e2e = timed_runs(backend, inputs, args.warmup, args.repeats, args.point_budget_s)
    except Exception as exc:  # CUDA / onnxruntime out-of-memory and runtime failures end the ladder
        text = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        point.status = "oom" if "memory" in text.lower() or "alloc" in text.lower() else "error"
        point.note = text
        return point
    arr = np.asarray(infer)
    point.infer_ms_p50, point.infer_ms_p99 = float(np.percentile(arr, 50)), float(np.percentile(arr, 99))
    point.infer_ms_mean, point.e2e_ms_p50 = float(arr.mean()), float(np.median(e2e))
    point.utt_s = batch * 1000.0 / point.infer_ms_p50
    point.tflops = 2 * macs * batch / (point.infer_ms_p50 / 1e3) / 1e12
    peak = backend.device_peak_mem_mb()
    point.peak_mib = float("nan") if peak is None else float(peak)
    point.repeats = len(infer)
    return point


def batch_ladder(max_batch: int) -> List[int]:
    out = [1, 4, 8, 16, 32]
    while out[-1] * 2 <= max_batch:
        out.append(out[-1] * 2)
    return [b for b in out if b <= max_batch]


# ----------------------------------------------------------------------------- accuracy

def dev_batches(prepared: Path, units: List[str], frames: int, batch: int = 16):
    from lstm_exp.data.batching import load_split, plan_batches

    examples = load_split(prepared, "dev", units, progress=False)
    frames = max(frames, max(e.feats.shape[0] for e in examples))
    return examples, list(plan_batches(examples, batch, "fixed", pad_to=frames + frames % 2))


def per_of(forward: Callable[[np.ndarray], np.ndarray], model: CTCModel, examples, batches, units) -> float:
    """Greedy PER (%) of ``forward`` over the dev ``batches``."""
    import torch

    from lstm_exp.decode.greedy import GreedyDecoder
    from lstm_exp.metrics.errors import score_utterances

    decoder, hyps = GreedyDecoder(units), {}
    for b in batches:
        log_probs = forward(b.x)
        lengths = np.minimum(model.output_lengths(torch.as_tensor(b.lengths)).numpy(), log_probs.shape[0])
        hyps.update(zip(b.ids, decoder.decode(log_probs.astype(np.float32), lengths)))
    refs = {e.utt_id: [units[i] for i in e.labels] for e in examples}
    return score_utterances(refs, hyps).per


def accuracy_of(backend, model: CTCModel, parity_x: np.ndarray, reference: np.ndarray, dev) -> Dict[str, float]:
    """Max |log-prob diff| and relative L2 against CPU torch fp32, and the dev PER with ``dev``."""
    got = backend.run(parity_x).log_probs
    acc = {"max_abs_diff": float(np.max(np.abs(got - reference))),
           "rel_l2": float(np.linalg.norm(got - reference) / np.linalg.norm(reference))}
    if dev is not None:
        examples, batches, units = dev
        acc["per"] = per_of(lambda x: backend.run(x).log_probs, model, examples, batches, units)
    return acc


# ----------------------------------------------------------------------------- main

def hardware(device: str) -> Dict[str, str]:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": str(torch.version.cuda),
            "host_cpus": str(os.cpu_count()), "load_average": " ".join(f"{v:.2f}" for v in os.getloadavg())}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, sms=str(props.multi_processor_count), gpu_mem_gib=f"{props.total_memory / 2**30:.1f}",
                    cudnn=str(torch.backends.cudnn.version()))
    try:
        import onnxruntime as ort

        info.update(onnxruntime=ort.__version__, ort_providers=",".join(ort.get_available_providers()))
    except ImportError:
        info["onnxruntime"] = "not installed"
    return info


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu: a dry run of the same code path (CPU variants, tiny network without --checkpoint)")
    parser.add_argument("--checkpoint", type=Path, help="a trained checkpoint (model.pt); random weights if absent")
    parser.add_argument("--prepared", type=Path, help="a prepared data folder (cache/prepare/<key>) for parity on real batches and PER")
    parser.add_argument("--variants", default="", help="comma list of framework variant names (default: per --device)")
    parser.add_argument("--batches", default="", help="comma list; default 1,4,8,16,32 then doubling to --max-batch")
    parser.add_argument("--max-batch", type=int, default=8192)
    parser.add_argument("--frames", type=int, default=FRAMES, help="frames per input (even; the recipe pads to 390)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--point-budget-s", type=float, default=1.5, help="stop repeating a point after this long (>= 5 repeats)")
    parser.add_argument("--variant-budget-s", type=float, default=25.0, help="stop climbing batch sizes after this long per variant")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "bench_gpu_out")))
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def reference_inputs(args, model: CTCModel, rng: np.random.Generator):
    """(parity batch, CPU torch fp32 log-probs on it, (examples, batches, units) or None)."""
    import torch

    dev = None
    units = list(model.units) if getattr(model, "units", None) else None
    if args.prepared and units:
        examples, batches = dev_batches(args.prepared, units, args.frames)
        dev, parity_x = (examples, batches, units), batches[0].x[:16]
    else:
        parity_x = rng.standard_normal((16, args.frames, FEAT_DIM), dtype=np.float32)
    with torch.inference_mode():
        reference = model.cpu()(torch.from_numpy(parity_x)).numpy()
    return parity_x, reference, dev


def run_variant(variant: str, files, args, macs: float, parity, rng, report: dict) -> None:
    """Open the framework's backend for ``variant``, check it against the reference, climb the batch ladder."""
    model, checkpoint, onnx, workdir = files
    parity_x, reference, dev = parity
    try:
        backend = open_backend(variant, checkpoint, onnx, workdir)
    except Exception as exc:  # a refused variant (no CUDA, no provider) is a note, not the end of the run
        report["notes"][variant] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        print(f"{variant}: cannot start: {report['notes'][variant]}", flush=True)
        return
    with backend:
        report["tags"][variant] = backend.describe()
        acc = accuracy_of(backend, model, parity_x, reference, dev)
        report["accuracy"][variant] = acc
        print(f"{variant}: parity vs CPU fp32 max|diff| {acc['max_abs_diff']:.3g} rel {acc['rel_l2']:.2g}"
              + (f"; dev PER {acc['per']:.3f} %" if "per" in acc else ""), flush=True)
        started = time.perf_counter()
        for batch in [int(b) for b in args.batches.split(",")] if args.batches else batch_ladder(args.max_batch):
            point = measure(backend, variant, batch, args.frames, macs, args, rng)
            report["points"].append(asdict(point))
            with open(args.out / "points.jsonl", "a") as handle:
                handle.write(json.dumps(asdict(point)) + "\n")
            print(f"  {variant:34s} b{batch:<6d} {point.status:5s} infer p50 {point.infer_ms_p50:9.3f} ms  "
                  f"p99 {point.infer_ms_p99:9.3f}  e2e p50 {point.e2e_ms_p50:9.3f}  {point.utt_s:10.0f} utt/s  "
                  f"{point.tflops:7.3f} TFLOP/s  {point.peak_mib:8.0f} MiB  n={point.repeats} {point.note}", flush=True)
            if point.status != "ok" or time.perf_counter() - started > args.variant_budget_s:
                break


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: torch sees no CUDA device; run it on a GPU machine, or --device cpu for a dry run", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    variants = [v for v in (args.variants or ",".join(DEFAULT_VARIANTS[args.device])).split(",") if v]
    print("command: python benchmarks/bench_gpu.py " + " ".join(sys.argv[1:] if argv is None else argv))
    hw = hardware(args.device)
    print("hardware: " + json.dumps(hw))
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        workdir = Path(tmp)
        needs_onnx = any(v.startswith("onnxruntime") for v in variants)
        model, checkpoint, onnx, weights = model_files(args.checkpoint, args.device, workdir, needs_onnx, args.frames)
        macs = multiply_adds_per_utt(model.arch, args.frames)
        print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params, {macs / 1e9:.3f} G multiply-adds "
              f"per utterance at {args.frames} frames; weights: {weights}", flush=True)
        parity = reference_inputs(args, model, rng)
        report = {"hardware": hw, "weights": weights, "macs_per_utt": macs, "frames": args.frames, "points": [],
                  "accuracy": {}, "notes": {}, "tags": {}}
        if parity[2] is not None:
            examples, batches, units = parity[2]
            with torch.inference_mode():
                per = per_of(lambda x: model(torch.from_numpy(x)).numpy(), model, examples, batches, units)
            report["accuracy"]["torch-cpu-fp32 (reference)"] = {"per": per, "max_abs_diff": 0.0, "rel_l2": 0.0}
        for variant in variants:
            run_variant(variant, (model, checkpoint, onnx, workdir), args, macs, parity, rng, report)
    (args.out / "bench_gpu.json").write_text(json.dumps(report, indent=2))
    write_tables(report, args.out)
    print((args.out / "bench_gpu.md").read_text())
    return 0


def point_rows(report: dict) -> Iterator[str]:
    for p in report["points"]:
        yield (f"| {p['variant']} | {p['batch']} | {p['infer_ms_p50']:.3f} | {p['infer_ms_p99']:.3f} | {p['e2e_ms_p50']:.3f} | "
               f"{p['utt_s']:.0f} | {p['tflops']:.3f} | {p['peak_mib']:.0f} | {p['repeats']} | {p['status']} {p['note'][:60]} |")


def write_tables(report: dict, out: Path) -> None:
    """``bench_gpu.md`` (points, accuracy, best, notes) and ``bench_gpu.csv`` (one row per point)."""
    lines = ["| variant | batch | infer_ms p50 | infer_ms p99 | e2e_ms p50 | utt/s | TFLOP/s | peak MiB | n | status |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |", *point_rows(report)]
    lines += ["", "| variant | max abs diff vs CPU fp32 | rel L2 | dev PER % |", "| --- | ---: | ---: | ---: |"]
    for name, acc in report["accuracy"].items():
        lines.append(f"| {name} | {acc.get('max_abs_diff', float('nan')):.3g} | {acc.get('rel_l2', float('nan')):.2g} | "
                     f"{acc.get('per', float('nan')):.3f} |")
    ok = [p for p in report["points"] if p["status"] == "ok"]
    if ok:
        best = max(ok, key=lambda p: p["utt_s"])
        lines += ["", f"best throughput: {best['utt_s']:.0f} utt/s ({best['variant']}, batch {best['batch']})"]
        b16 = sorted((p for p in ok if p["batch"] == 16), key=lambda p: p["infer_ms_p50"])
        if b16:
            lines.append(f"fastest batch 16 (model only, p50): {b16[0]['infer_ms_p50']:.3f} ms ({b16[0]['variant']})")
    if report["notes"]:
        lines += ["", "not run / failed:"] + [f"- {k}: {v}" for k, v in report["notes"].items()]
    (out / "bench_gpu.md").write_text("\n".join(lines) + "\n")
    with open(out / "bench_gpu.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(Point.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(report["points"])


if __name__ == "__main__":
    sys.exit(main())
