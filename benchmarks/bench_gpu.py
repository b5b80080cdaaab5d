"""Every GPU inference variant of the recipe-size network, batch by batch, in one process.

    python benchmarks/bench_gpu.py                                   # random weights: speed only
    python benchmarks/bench_gpu.py --checkpoint cache/train/<key>/model.pt --prepared cache/prepare/<key>
    python benchmarks/bench_gpu.py --variants torch-cuda-fp16,onnxruntime-cuda-fp32 --batches 1,16,256

What is timed (each figure says which):

* ``infer_ms`` - the model execute only. torch: the input already on the device, CUDA events
  recorded around the forward pass (or the graph replay), read after the end event completes.
  onnxruntime: input and output bound to pre-allocated device buffers (io binding); wall time
  around ``run_with_iobinding`` after the inputs were synchronised, the outputs synchronised
  before the clock stops. p50 and p99 over ``--repeats`` timed runs after ``--warmup`` runs;
  the inputs rotate over three random batches (never zeros).
* ``e2e_ms`` - host numpy in, host numpy out: pageable host->device copy, the model, device->host
  copy, wall time after a device synchronisation (p50). The guide's T4 figure (92.33 ms at batch
  16) was taken this way (``session.run`` on numpy inputs).
* ``utt/s`` = batch x 1000 / infer_ms p50; ``TFLOP/s`` from the network's multiply-adds at 390 frames.
* ``peak MiB`` - torch: ``torch.cuda.max_memory_allocated`` during the point (reset before it);
  onnxruntime: device memory in use after the point minus before the session (``cudaMemGetInfo``).

Batches: 1, 4, 8, 16, 32, then doubling until a variant runs out of device memory, exceeds
``--max-batch`` or its time budget. Parity: max |log-prob - CPU torch fp32| on one batch of 16
(real dev utterances with ``--prepared``). PER: greedy decoding of the dev split at batch 16
padded to 390 frames (the recipe's setting) with the checkpoint's units.

Variants (names as lstm_exp's ``variant`` param, plus how they run):
  torch-cuda-fp32 (TF32 off), torch-cuda-fp32-tf32, torch-cuda-fp16, torch-cuda-bf16, each also
  ``+graph`` (CUDA graph of the static [B, 390, 243] shape); torch-cuda-fp16-split (each LSTM
  direction its own one-layer LSTM, layer 1's input padded 1952 -> 2048, so cuDNN's persistent
  kernels qualify at batch % 8 == 0, <= 128) with ``+graph``; onnxruntime-cuda-fp32 (io
  binding), onnxruntime-cuda-fp32-host (session.run on numpy, copies included),
  onnxruntime-tensorrt-fp32 / -fp16 (where TensorRT's libraries load).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lstm_exp.model.ctc import CTCModel, ModelArch  # noqa: E402

FRAMES = 390
FEAT_DIM = 243
GUIDE = {"T4 onnxruntime-gpu b16 (copies incl.)": (16, 92.33), "Ascend 310 b16 (execute only)": (16, 195.763)}


# ----------------------------------------------------------------------------- model pieces

def multiply_adds_per_utt(arch: ModelArch, frames: int = FRAMES) -> float:
    """Multiply-adds of one utterance at ``frames`` input frames (convs + LSTMs + head)."""
    macs = 0.0
    t, w, c_in = frames, arch.input_dim, 1
    for i, c_out in enumerate(arch.conv_channels):
        ts, ws = (1, 2) if i == 0 else (2, 2)
        t, w = (t - 1) // ts + 1, (w - 1) // ws + 1
        macs += t * w * c_out * c_in * 9
        c_in = c_out
    size = arch.lstm_input_dim
    for _ in range(arch.lstm_layers):
        macs += 2 * t * 4 * arch.hidden * (size + arch.hidden)
        size = 2 * arch.hidden
    macs += t * size * arch.num_classes
    return macs


class SplitDirectionLSTM(nn.Module):
    """One bidirectional layer as two one-direction cuDNN LSTMs (forward, and forward over the
    time-flipped input), input zero-padded to ``pad_to`` features so cuDNN's persistent kernels
    qualify (fp16, hidden and input % 128 == 0, one layer, one direction)."""

    def __init__(self, bi: nn.LSTM, batch_norm: Optional[nn.Module], pad_to: int, two_streams: bool = False) -> None:
        super().__init__()
        self.two_streams = two_streams
        self.side = None
        self.batch_norm = batch_norm
        hidden, size = bi.hidden_size, bi.input_size
        self.pad = max(pad_to - size, 0)
        self.fwd = nn.LSTM(size + self.pad, hidden, bias=False)
        self.bwd = nn.LSTM(size + self.pad, hidden, bias=False)
        with torch.no_grad():
            for dst, suffix in ((self.fwd, ""), (self.bwd, "_reverse")):
                w_ih = getattr(bi, f"weight_ih_l0{suffix}")
                dst.weight_ih_l0.zero_()
                dst.weight_ih_l0[:, :size].copy_(w_ih)
                dst.weight_hh_l0.copy_(getattr(bi, f"weight_hh_l0{suffix}"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch_norm is not None:
            steps, batch, channels = x.shape
            x = self.batch_norm(x.reshape(steps * batch, channels)).reshape(steps, batch, channels)
        if self.pad:
            x = nn.functional.pad(x, (0, self.pad))
        if self.two_streams and x.is_cuda:  # the two directions at once, on two streams
            if self.side is None:
                self.side = torch.cuda.Stream()
            main = torch.cuda.current_stream()
            self.side.wait_stream(main)
            with torch.cuda.stream(self.side):
                out_b, _ = self.bwd(torch.flip(x, dims=[0]))
                out_b = torch.flip(out_b, dims=[0])
            out_f, _ = self.fwd(x)
            main.wait_stream(self.side)
            return torch.cat([out_f, out_b], dim=2)
        out_f, _ = self.fwd(x)
        out_b, _ = self.bwd(torch.flip(x, dims=[0]))
        return torch.cat([out_f, torch.flip(out_b, dims=[0])], dim=2)


class SplitDirectionCTC(nn.Module):
    """The CTC model with every BiLSTM layer as :class:`SplitDirectionLSTM` (same function)."""

    def __init__(self, model: CTCModel, pad_to: int = 128, two_streams: bool = False) -> None:
        super().__init__()
        if model.arch.layout != "gpu":
            raise ValueError("SplitDirectionCTC takes a gpu-layout CTCModel")
        self.conv = model.conv
        self.fc = model.fc
        layers = []
        for layer in model.rnns:
            size = layer.rnn.input_size
            layers.append(SplitDirectionLSTM(layer.rnn, layer.batch_norm, math.ceil(size / pad_to) * pad_to, two_streams))
        self.rnns = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x.unsqueeze(1))
        batch, channels, steps, width = x.shape
        x = x.permute(2, 0, 1, 3).reshape(steps, batch, channels * width)
        x = self.rnns(x)
        logits = self.fc(x.reshape(steps * batch, -1)).reshape(steps, batch, -1)
        return torch.log_softmax(logits, dim=-1)


class StreamChunks(nn.Module):
    """Split a batch into ``ways`` chunks, each run by ``model`` on its own CUDA stream (captured
    into one graph, the chunks become concurrent branches): fills the GPU while each chunk's
    recurrence is latency-bound."""

    def __init__(self, model: nn.Module, ways: int) -> None:
        super().__init__()
        self.model, self.ways = model, ways
        self.streams: List[torch.cuda.Stream] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_cuda or x.shape[0] < self.ways:
            return self.model(x)
        if not self.streams:
            self.streams = [torch.cuda.Stream() for _ in range(self.ways)]
        main = torch.cuda.current_stream()
        outs = []
        for stream, chunk in zip(self.streams, x.chunk(self.ways, dim=0)):
            stream.wait_stream(main)
            with torch.cuda.stream(stream):
                outs.append(self.model(chunk))
        for stream in self.streams:
            main.wait_stream(stream)
        return torch.cat(outs, dim=1)


# ----------------------------------------------------------------------------- runners

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


class Runner:
    """A variant: ``prepare(batch)`` then ``model_only(i) -> ms`` and ``end_to_end(x) -> (ms, out)``."""

    name = "?"

    def prepare(self, batch: int, inputs: List[np.ndarray]) -> None: ...
    def model_only(self, index: int) -> float: ...
    def end_to_end(self, x: np.ndarray) -> tuple[float, np.ndarray]: ...
    def release(self) -> None: ...
    def peak_mib(self) -> float: return float("nan")
    def reset_peak(self) -> None: ...


class TorchRunner(Runner):
    def __init__(self, name: str, model: nn.Module, dtype: torch.dtype, graph: bool, tf32: bool) -> None:
        self.name, self.dtype, self.graph, self.tf32 = name, dtype, graph, tf32
        self.device = torch.device("cuda")
        self.model = model.to(self.device, dtype=dtype).eval()
        self.static_in: List[torch.Tensor] = []
        self.graphs: List[torch.cuda.CUDAGraph] = []
        self.static_out: List[torch.Tensor] = []

    def _flags(self) -> None:
        torch.backends.cuda.matmul.allow_tf32 = self.tf32
        torch.backends.cudnn.allow_tf32 = self.tf32

    @torch.inference_mode()
    def prepare(self, batch: int, inputs: List[np.ndarray]) -> None:
        self._flags()
        self.release()
        self.static_in = [torch.from_numpy(x).to(self.device, dtype=self.dtype) for x in inputs]
        if self.graph:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    self.model(self.static_in[0])
            torch.cuda.current_stream().wait_stream(side)
            pool = torch.cuda.graph_pool_handle()  # one pool: the graphs replay one at a time
            for x in self.static_in:
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g, pool=pool):
                    out = self.model(x)
                self.graphs.append(g)
                self.static_out.append(out)
        torch.cuda.synchronize()

    @torch.inference_mode()
    def model_only(self, index: int) -> float:
        i = index % len(self.static_in)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        if self.graph:
            self.graphs[i].replay()
        else:
            self.model(self.static_in[i])
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    @torch.inference_mode()
    def end_to_end(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        xd = torch.from_numpy(x).to(self.device, dtype=self.dtype)
        if self.graph and self.static_in and tuple(xd.shape) == tuple(self.static_in[0].shape):
            self.static_in[0].copy_(xd)
            self.graphs[0].replay()
            out = self.static_out[0]
        else:
            out = self.model(xd)
        host = out.float().cpu().numpy()
        return (time.perf_counter() - t0) * 1e3, host

    def release(self) -> None:
        self.graphs, self.static_out, self.static_in = [], [], []
        torch.cuda.empty_cache()

    def reset_peak(self) -> None:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    def peak_mib(self) -> float:
        return torch.cuda.max_memory_allocated() / 2**20


class OrtRunner(Runner):
    def __init__(self, name: str, onnx_path: Path, providers: list, bind: bool) -> None:
        import onnxruntime as ort

        self.ort, self.name, self.bind = ort, name, bind
        free, total = torch.cuda.mem_get_info()
        self.base_used = total - free
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=providers)
        got = self.session.get_providers()
        wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
        if got[0] != wanted:
            raise RuntimeError(f"onnxruntime fell back to {got} (asked for {wanted})")
        self.inputs: List = []
        self.binding = None

    def prepare(self, batch: int, inputs: List[np.ndarray]) -> None:
        ort = self.ort
        self.inputs = [ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0) for x in inputs]
        out_shape = self.session.run(["output1"], {"actual_input_1": inputs[0]})[0].shape
        self.out = ort.OrtValue.ortvalue_from_shape_and_type(list(out_shape), np.float32, "cuda", 0)
        self.bindings = []
        for value in self.inputs:
            binding = self.session.io_binding()
            binding.bind_ortvalue_input("actual_input_1", value)
            binding.bind_ortvalue_output("output1", self.out)
            self.bindings.append(binding)

    def model_only(self, index: int) -> float:
        if not self.bind:
            x = self._host[index % len(self._host)]
            t0 = time.perf_counter()
            self.session.run(["output1"], {"actual_input_1": x})
            return (time.perf_counter() - t0) * 1e3
        binding = self.bindings[index % len(self.bindings)]
        binding.synchronize_inputs()
        t0 = time.perf_counter()
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return (time.perf_counter() - t0) * 1e3

    def end_to_end(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        t0 = time.perf_counter()
        out = self.session.run(["output1"], {"actual_input_1": x})[0]
        return (time.perf_counter() - t0) * 1e3, out

    def set_host_inputs(self, inputs: List[np.ndarray]) -> None:
        self._host = inputs

    def release(self) -> None:
        self.inputs, self.bindings = [], []

    def peak_mib(self) -> float:
        free, total = torch.cuda.mem_get_info()
        return (total - free - self.base_used) / 2**20


# ----------------------------------------------------------------------------- measuring

def measure(runner: Runner, batch: int, flops_per_utt: float, warmup: int, repeats: int,
            budget_s: float, rng: np.random.Generator) -> Point:
    inputs = [rng.standard_normal((batch, FRAMES, FEAT_DIM), dtype=np.float32) for _ in range(3)]
    point = Point(runner.name, batch)
    try:
        runner.reset_peak()
        runner.prepare(batch, inputs)
        if isinstance(runner, OrtRunner):
            runner.set_host_inputs(inputs)
        for i in range(warmup):
            runner.model_only(i)
        times, t_start = [], time.perf_counter()
        while len(times) < repeats and (len(times) < 5 or time.perf_counter() - t_start < budget_s):
            times.append(runner.model_only(len(times)))
        e2e = [runner.end_to_end(inputs[i % 3])[0] for i in range(max(3, min(10, len(times))))]
        arr = np.asarray(times)
        point.infer_ms_p50 = float(np.percentile(arr, 50))
        point.infer_ms_p99 = float(np.percentile(arr, 99))
        point.infer_ms_mean = float(arr.mean())
        point.e2e_ms_p50 = float(np.median(e2e))
        point.utt_s = batch * 1000.0 / point.infer_ms_p50
        point.tflops = 2 * flops_per_utt * batch / (point.infer_ms_p50 / 1e3) / 1e12
        point.peak_mib = runner.peak_mib()
        point.repeats = len(times)
    except torch.cuda.OutOfMemoryError:
        point.status = "oom"
    except Exception as exc:  # onnxruntime raises its own types for OOM and failures
        text = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        point.status = "oom" if "memory" in text.lower() or "alloc" in text.lower() else "error"
        point.note = text
    finally:
        try:
            runner.release()
        except Exception:
            pass
    return point


def batch_ladder(max_batch: int) -> List[int]:
    out = [1, 4, 8, 16, 32]
    while out[-1] * 2 <= max_batch:
        out.append(out[-1] * 2)
    return [b for b in out if b <= max_batch]


# ----------------------------------------------------------------------------- accuracy

def dev_batches(prepared: Path, units: List[str], batch: int = 16):
    from lstm_exp.data.batching import load_split, make_batches

    examples = load_split(prepared, "dev", units, progress=False)
    frames = max(FRAMES, max(e.feats.shape[0] for e in examples))
    return examples, list(make_batches(examples, batch, pad_to=frames))


def per_of(forward: Callable[[np.ndarray], np.ndarray], model: CTCModel, examples, batches, units) -> float:
    from lstm_exp.decode.greedy import GreedyDecoder
    from lstm_exp.metrics.errors import score_utterances

    decoder = GreedyDecoder(units)
    hyps = {}
    for b in batches:
        log_probs = forward(b.x)
        lengths = np.minimum(model.output_lengths(torch.as_tensor(b.lengths)).numpy(), log_probs.shape[0])
        for utt, hyp in zip(b.ids, decoder.decode(log_probs.astype(np.float32), lengths)):
            hyps[utt] = hyp
    refs = {e.utt_id: [units[i] for i in e.labels] for e in examples}
    return score_utterances(refs, hyps).per


# ----------------------------------------------------------------------------- profile

def profile(model: nn.Module, dtype: torch.dtype, batch: int, out_dir: Path, tag: str, top: int = 12) -> List[str]:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    model = model.cuda().to(dtype).eval()
    x = torch.randn(batch, FRAMES, FEAT_DIM, device="cuda", dtype=dtype)
    with torch.inference_mode():
        for _ in range(5):
            model(x)
        torch.cuda.synchronize()
        with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                model(x)
            torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=90)
    (out_dir / f"profile_{tag}.txt").write_text(table)
    def self_device_us(event) -> float:
        return float(getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0) or 0)

    kernels = sorted(((self_device_us(e), e.key, e.count) for e in prof.key_averages()
                      if self_device_us(e) > 0 and not e.key.startswith(("aten::", "cuda"))), reverse=True)
    total = sum(t for t, _, _ in kernels) or 1.0
    lines = [f"{100 * t / total:5.1f}%  {t / 5 / 1e3:8.3f} ms/fwd  x{c // 5:<4d} {k[:100]}" for t, k, c in kernels[:top]]
    return lines


# ----------------------------------------------------------------------------- main

def hardware() -> Dict[str, str]:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": str(torch.version.cuda),
            "cudnn": str(torch.backends.cudnn.version()), "host_cpus": str(os.cpu_count())}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, sms=str(props.multi_processor_count), gpu_mem_gib=f"{props.total_memory / 2**30:.1f}")
    try:
        import onnxruntime as ort

        info.update(onnxruntime=ort.__version__, ort_providers=",".join(ort.get_available_providers()))
    except ImportError:
        info["onnxruntime"] = "not installed"
    return info


def build_runners(names: List[str], model: CTCModel, onnx_path: Optional[Path], notes: Dict[str, str]):
    """Yield (name, factory) for each variant asked for; factories build lazily (one on the GPU at a time)."""
    import copy

    torch_specs = {
        "torch-cuda-fp32": (torch.float32, False, False, False),
        "torch-cuda-fp32-tf32": (torch.float32, False, True, False),
        "torch-cuda-fp16": (torch.float16, False, False, False),
        "torch-cuda-bf16": (torch.bfloat16, False, False, False),
        "torch-cuda-fp16-split": (torch.float16, False, False, True),
        "torch-cuda-fp16-split2s": (torch.float16, False, False, "2s"),
        "torch-cuda-fp16-2way": (torch.float16, False, False, "w2"),
        "torch-cuda-fp16-4way": (torch.float16, False, False, "w4"),
        "torch-cuda-fp16-8way": (torch.float16, False, False, "w8"),
    }
    for name in names:
        base, graph = name.split("+")[0], name.endswith("+graph")
        if base in torch_specs:
            dtype, _, tf32, split = torch_specs[base]

            def factory(base=base, dtype=dtype, tf32=tf32, split=split, graph=graph, name=name):
                net = copy.deepcopy(model)
                if isinstance(split, str) and split.startswith("w"):
                    net = StreamChunks(net, int(split[1:]))
                elif split:
                    net = SplitDirectionCTC(net, two_streams=split == "2s")
                return TorchRunner(name, net, dtype, graph, tf32)
            yield name, factory
        elif base.startswith("onnxruntime-"):
            if onnx_path is None:
                notes[name] = "no ONNX file"
                continue
            if base in ("onnxruntime-cuda-fp32", "onnxruntime-cuda-fp32-host"):
                providers = [("CUDAExecutionProvider", {"device_id": 0, "cudnn_conv_algo_search": "EXHAUSTIVE"})]
                bind = base == "onnxruntime-cuda-fp32"
            elif base.startswith("onnxruntime-tensorrt"):
                trt = {"device_id": 0, "trt_fp16_enable": base.endswith("fp16")}
                providers = [("TensorrtExecutionProvider", trt), ("CUDAExecutionProvider", {"device_id": 0})]
                bind = True
            else:
                notes[name] = "unknown variant"
                continue
            yield name, (lambda name=name, providers=providers, bind=bind: OrtRunner(name, onnx_path, providers, bind))
        else:
            notes[name] = "unknown variant"


ALL_VARIANTS = ["torch-cuda-fp32", "torch-cuda-fp32-tf32", "torch-cuda-fp16", "torch-cuda-bf16",
                "torch-cuda-fp32+graph", "torch-cuda-fp32-tf32+graph", "torch-cuda-fp16+graph", "torch-cuda-bf16+graph",
                "torch-cuda-fp16-split", "torch-cuda-fp16-split+graph", "torch-cuda-fp16-split2s+graph",
                "onnxruntime-cuda-fp32", "onnxruntime-cuda-fp32-host", "onnxruntime-tensorrt-fp32", "onnxruntime-tensorrt-fp16"]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="a trained ctc_recipe checkpoint (our model.pt); random weights if absent")
    parser.add_argument("--prepared", type=Path, help="a prepared data folder (cache/prepare/<key>) for parity on real batches and PER")
    parser.add_argument("--variants", default=",".join(ALL_VARIANTS))
    parser.add_argument("--batches", default="", help="comma list; default 1,4,8,16,32 then doubling to --max-batch")
    parser.add_argument("--max-batch", type=int, default=8192)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--point-budget-s", type=float, default=1.5, help="stop repeating a point after this long (>= 5 repeats)")
    parser.add_argument("--variant-budget-s", type=float, default=25.0, help="stop climbing batch sizes after this long per variant")
    parser.add_argument("--profile-batch", type=int, default=16)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "bench_gpu_out")))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu: torch sees no CUDA device; run it on a GPU machine", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    print("command: python benchmarks/bench_gpu.py " + " ".join(sys.argv[1:] if argv is None else argv))
    hw = hardware()
    print("hardware: " + json.dumps(hw))
    torch.manual_seed(args.seed)

    units: Optional[List[str]] = None
    if args.checkpoint:
        from lstm_exp.model.checkpoint import load_checkpoint

        model = load_checkpoint(args.checkpoint)
        units = list(model.units) if model.units else None
        weights = f"checkpoint {args.checkpoint}"
    else:
        model = CTCModel(ModelArch()).eval()  # the recipe's architecture (ModelArch defaults)
        weights = "random (seeded)"
    model = model.float().eval()
    arch = model.arch
    macs = multiply_adds_per_utt(arch)
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params, {macs / 1e9:.2f} G multiply-adds "
          f"per utterance at {FRAMES} frames; weights: {weights}")

    onnx_path = None
    variants = [v for v in args.variants.split(",") if v]
    notes: Dict[str, str] = {}
    if any(v.startswith("onnxruntime") for v in variants):
        try:
            import onnxruntime as ort

            from lstm_exp.model.export import export_onnx

            if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* wheels torch already uses
                ort.preload_dlls()

            import tempfile

            onnx_path = export_onnx(model, Path(tempfile.mkdtemp()) / "model.onnx", opset=11, batch=2, frames=FRAMES,
                                    dynamic=True)
            available = ort.get_available_providers()
            for v in variants:
                if v.startswith("onnxruntime-cuda") and "CUDAExecutionProvider" not in available:
                    notes[v] = f"CUDAExecutionProvider not in this onnxruntime ({ort.__version__}: {available})"
                if v.startswith("onnxruntime-tensorrt") and "TensorrtExecutionProvider" not in available:
                    notes[v] = f"TensorrtExecutionProvider not in this onnxruntime ({available})"
        except ImportError as exc:
            for v in variants:
                if v.startswith("onnxruntime"):
                    notes[v] = f"onnxruntime not importable: {exc}"
    variants = [v for v in variants if v not in notes]

    # ---- parity and PER
    rng = np.random.default_rng(args.seed)
    examples = batches = None
    if args.prepared and units:
        examples, batches = dev_batches(args.prepared, units)
        parity_x = batches[0].x[:16]
    else:
        parity_x = rng.standard_normal((16, FRAMES, FEAT_DIM), dtype=np.float32)
    cpu_model = model.float().cpu().eval()
    torch.set_num_threads(min(16, os.cpu_count() or 1))
    with torch.inference_mode():
        reference = cpu_model(torch.from_numpy(parity_x)).numpy()
    accuracy: Dict[str, Dict[str, float]] = {}
    if examples is not None:
        t0 = time.perf_counter()
        with torch.inference_mode():
            cpu_per = per_of(lambda x: cpu_model(torch.from_numpy(x)).numpy(), model, examples, batches, units)
        accuracy["torch-cpu-fp32"] = {"per": cpu_per, "max_abs_diff": 0.0}
        print(f"torch-cpu-fp32: dev PER {cpu_per:.3f} % over {len(examples)} utts ({time.perf_counter() - t0:.1f} s)")

    points: List[Point] = []
    ladder = [int(b) for b in args.batches.split(",")] if args.batches else batch_ladder(args.max_batch)
    for name, factory in build_runners(variants, model, onnx_path, notes):
        try:
            runner = factory()
        except Exception as exc:
            notes[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            print(f"{name}: cannot start: {notes[name]}")
            continue
        # parity + PER on this variant (before the speed points, at batch 16 / the dev batches)
        try:
            def forward(x: np.ndarray, runner=runner) -> np.ndarray:
                return runner.end_to_end(np.ascontiguousarray(x, dtype=np.float32))[1]

            if isinstance(runner, TorchRunner):
                runner._flags()
            got = forward(parity_x)
            acc = {"max_abs_diff": float(np.max(np.abs(got - reference))),
                   "rel_l2": float(np.linalg.norm(got - reference) / np.linalg.norm(reference))}
            if examples is not None:
                acc["per"] = per_of(forward, model, examples, batches, units)
            accuracy[name] = acc
            print(f"{name}: parity vs CPU fp32 max|diff| {acc['max_abs_diff']:.3g} rel {acc['rel_l2']:.2g}"
                  + (f"; dev PER {acc['per']:.3f} %" if "per" in acc else ""), flush=True)
        except Exception as exc:
            notes[name] = f"parity: {type(exc).__name__}: {exc}".splitlines()[0][:300]
            print(f"{name}: {notes[name]}")
            traceback.print_exc()
        started = time.perf_counter()
        for batch in ladder:
            point = measure(runner, batch, macs, args.warmup, args.repeats, args.point_budget_s, rng)
            points.append(point)
            with open(args.out / "points.jsonl", "a") as handle:
                handle.write(json.dumps(asdict(point)) + "\n")
            print(f"  {name:32s} b{batch:<6d} {point.status:5s} infer p50 {point.infer_ms_p50:9.3f} ms  p99 {point.infer_ms_p99:9.3f}"
                  f"  e2e p50 {point.e2e_ms_p50:9.3f}  {point.utt_s:10.0f} utt/s  {point.tflops:6.1f} TFLOP/s  "
                  f"{point.peak_mib:8.0f} MiB  n={point.repeats} {point.note}", flush=True)
            if point.status != "ok" or time.perf_counter() - started > args.variant_budget_s:
                break
        del runner
        torch.cuda.empty_cache()

    profiles: Dict[str, List[str]] = {}
    if not args.no_profile:
        import copy

        for tag, net, dtype in (("fp32", copy.deepcopy(model), torch.float32), ("fp16", copy.deepcopy(model), torch.float16),
                                ("fp16-split", SplitDirectionCTC(copy.deepcopy(model)), torch.float16)):
            try:
                torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
                profiles[tag] = profile(net, dtype, args.profile_batch, args.out, tag)
            except Exception as exc:
                profiles[tag] = [f"profile failed: {type(exc).__name__}: {exc}"]
            torch.cuda.empty_cache()

    report = {"hardware": hw, "weights": weights, "macs_per_utt": macs, "frames": FRAMES,
              "points": [asdict(p) for p in points], "accuracy": accuracy, "notes": notes, "profiles": profiles}
    (args.out / "bench_gpu.json").write_text(json.dumps(report, indent=2))
    write_tables(report, args.out)
    print((args.out / "bench_gpu.md").read_text())
    return 0


def write_tables(report: dict, out: Path) -> None:
    rows = report["points"]
    lines = ["| variant | batch | infer_ms p50 | infer_ms p99 | e2e_ms p50 | utt/s | TFLOP/s | peak MiB | status |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for p in rows:
        lines.append(f"| {p['variant']} | {p['batch']} | {p['infer_ms_p50']:.3f} | {p['infer_ms_p99']:.3f} | {p['e2e_ms_p50']:.3f} | "
                     f"{p['utt_s']:.0f} | {p['tflops']:.1f} | {p['peak_mib']:.0f} | {p['status']} {p['note'][:60]} |")
    lines += ["", "| variant | max abs diff vs CPU fp32 | rel L2 | dev PER % |", "| --- | ---: | ---: | ---: |"]
    for name, acc in report["accuracy"].items():
        lines.append(f"| {name} | {acc.get('max_abs_diff', float('nan')):.3g} | {acc.get('rel_l2', 0.0):.2g} | "
                     f"{acc.get('per', float('nan')):.3f} |")
    ok = [p for p in rows if p["status"] == "ok"]
    if ok:
        best = max(ok, key=lambda p: p["utt_s"])
        b16 = sorted((p for p in ok if p["batch"] == 16), key=lambda p: p["infer_ms_p50"])
        lines += ["", f"best throughput: {best['utt_s']:.0f} utt/s ({best['variant']}, batch {best['batch']}; goal 30000)"]
        if b16:
            lines.append(f"fastest batch 16 (model only, p50): {b16[0]['infer_ms_p50']:.3f} ms ({b16[0]['variant']}; goal <= 4 ms; "
                         f"guide: T4 onnxruntime-gpu 92.33 ms copies included, Ascend 310 195.763 ms)")
    if report["notes"]:
        lines += ["", "not run / failed:"] + [f"- {k}: {v}" for k, v in report["notes"].items()]
    for tag, kernels in report["profiles"].items():
        lines += ["", f"profile, batch 16, {tag} (share of GPU time, ms per forward, calls per forward, kernel):"] + \
                 [f"    {line}" for line in kernels]
    (out / "bench_gpu.md").write_text("\n".join(lines) + "\n")
    import csv

    with open(out / "bench_gpu.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(Point.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())
