"""Speed of every backend, measured side by side in one run, and the model's size and cost.

Shared machines are noisy, so absolute times mean little on their own: every backend runs
interleaved with eager fp32 (round-robin rounds over the same frames) and the report gives each
backend's ratio to eager fp32 measured in that same run.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from fbsnet_ros.checkpoint import ModelMetadata
from fbsnet_ros.model import OUTPUT_STRIDE, count_parameters

log = logging.getLogger(__name__)

# The reference every ratio is taken against.
REFERENCE_BACKEND = "torch:fp32"
# Timed calls are split into this many rounds; each round visits every backend in turn, so
# slow drifts of a shared machine affect all backends alike.
ROUNDS = 5
# Names the variants timed with pre- and post-processing outside the compiled graph.
HOST_SUFFIX = "host"
# Distinct frames cycled through while timing (real CamVid frames where available).
FRAME_COUNT = 8
# Environment variables that change CPU timings: how many threads torch's OpenMP runtime
# starts, and whether its idle threads spin or sleep (on shared cores, spinning ones slow every
# other process down).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")


@dataclass
class LatencyStats:
    """Per-call latencies of one backend at one size, in milliseconds."""

    median_ms: float
    p99_ms: float
    mean_ms: float
    fps: float  # 1000 / median_ms: frames per second of back-to-back calls
    calls: int
    ratio_to_reference: float | None = None  # reference median / this median (> 1 is faster)

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float]) -> LatencyStats:
        median = statistics.median(samples_ms)
        return cls(median_ms=median, p99_ms=float(np.percentile(samples_ms, 99)),
                   mean_ms=statistics.fmean(samples_ms), fps=1000.0 / median,
                   calls=len(samples_ms))


@dataclass
class BackendResult:
    backend: str  # name:precision actually running
    description: str  # runtime, providers, optimisations
    end_to_end: LatencyStats  # Segmenter.predict: uint8 frame in, uint8 labels out
    model: LatencyStats  # the network alone on a ready input (device-synchronised)


@dataclass
class SizeResult:
    frame_size: tuple[int, int]  # (height, width) of the camera frames
    input_size: tuple[int, int]  # (height, width) the network ran at
    complexity: dict  # params, MACs and FLOPs at input_size
    backends: list[BackendResult] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # backend -> why it could not run


def model_complexity(model: torch.nn.Module, input_size: tuple[int, int]) -> dict:
    """Parameters, multiply-accumulates and FLOPs of one forward pass at `input_size`.

    torch.utils.flop_counter counts convolutions and matrix products only (element-wise
    operations such as batch norm, PReLU and attention gates are not counted), and counts one
    multiply-accumulate as two FLOPs: FLOPs = 2 x MACs. Papers often quote MACs as "FLOPs".
    """
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.eval()(torch.zeros(1, 3, *input_size))
    flops = counter.get_total_flops()
    return {"params": count_parameters(model), "macs": flops // 2, "flops": flops,
            "input_size": list(input_size)}


def benchmark_frames(frame_size: tuple[int, int], data_root: str | Path | None,
                     count: int = FRAME_COUNT) -> list[np.ndarray]:
    """Real CamVid val frames resized to `frame_size` where the data set is present, else noise."""
    import cv2

    height, width = frame_size
    frames = []
    list_file = Path(data_root) / "val.txt" if data_root else None
    if list_file is not None and list_file.is_file():
        from fbsnet_ros.data.io import read_rgb

        for line in list_file.read_text().splitlines()[:count]:
            image = read_rgb(Path(data_root) / line.split()[0])
            frames.append(cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR))
    if not frames:
        log.warning("no CamVid frames at %s: timing on random frames", data_root)
        generator = np.random.default_rng(0)
        frames = [generator.integers(0, 256, (height, width, 3), np.uint8) for _ in range(count)]
    return frames


def _synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


class _Timed:
    """One backend under test: its two timed calls and their samples."""

    def __init__(self, segmenter, frames: list[np.ndarray]) -> None:
        self.segmenter = segmenter
        self.frames = frames
        backend = segmenter.backend
        # Where the backend takes its input: the model column times the network alone.
        self.batch = segmenter.transform.to_input(frames[0]).to(backend.input_device)
        self.sync = _synchronizer(backend.device)
        self.end_to_end_ms: list[float] = []
        self.model_ms: list[float] = []
        self.calls = 0

    def warm_up(self, repeats: int) -> None:
        for index in range(repeats):
            self.segmenter.predict(self.frames[index % len(self.frames)])
            self.segmenter.backend.infer(self.batch)
        self.sync()

    def time_round(self, calls: int) -> None:
        for _ in range(calls):
            frame = self.frames[self.calls % len(self.frames)]
            self.calls += 1
            start = time.perf_counter()
            self.segmenter.predict(frame)  # returns host labels: synchronised by construction
            self.end_to_end_ms.append(1000.0 * (time.perf_counter() - start))
        for _ in range(calls):
            self.sync()
            start = time.perf_counter()
            self.segmenter.backend.infer(self.batch)
            self.sync()
            self.model_ms.append(1000.0 * (time.perf_counter() - start))


def benchmark_size(model: torch.nn.Module, metadata: ModelMetadata, backends: Sequence[str],
                   frame_size: tuple[int, int], input_size: tuple[int, int] | None, *,
                   device: str = "auto", iterations: int = 30, warmup: int = 3,
                   upsample: str = "bilinear", data_root: str | Path | None = None,
                   host_pre_post: Sequence[str] = (),
                   progress: Callable[[str], None] | None = None) -> SizeResult:
    """Time `backends` (the reference first, always) at one frame size, interleaved.

    `host_pre_post`: OpenVINO backends also timed as they ran before issue 15 (the frame's pre-
    and post-processing on the host instead of in the compiled graph, the network with its
    channel shuffles), named '... host'.
    """
    from fbsnet_ros.inference import Segmenter

    input_size = tuple(input_size or network_input_for(frame_size))
    frames = benchmark_frames(frame_size, data_root)
    result = SizeResult(frame_size=tuple(frame_size), input_size=input_size,
                        complexity=model_complexity(model, input_size))
    ordered = [(name, {}) for name in
               [REFERENCE_BACKEND, *(name for name in backends if name != REFERENCE_BACKEND)]]
    ordered += [(name, {"frame_graph": False}) for name in host_pre_post]
    timed: dict[str, _Timed] = {}
    for name, options in ordered:
        label = f"{name} {HOST_SUFFIX}" if options else name
        if progress:
            progress(f"{frame_size[0]}x{frame_size[1]}: building {label}")
        try:
            segmenter = Segmenter(model, metadata, device=device, input_size=input_size,
                                  upsample=upsample, backend=name, backend_options=options)
        except Exception as error:  # any failure: report it and measure the others
            if name == REFERENCE_BACKEND:
                raise
            result.failed[label] = str(error).splitlines()[0] if str(error) else repr(error)
            log.warning("%s not measured: %s", label, result.failed[label])
            continue
        running = segmenter.backend_name
        timed[f"auto={running}" if name == "auto" else
              f"{running} {HOST_SUFFIX}" if options else running] = _Timed(segmenter, frames)
    for entry in timed.values():
        entry.warm_up(warmup)
    rounds = max(1, min(ROUNDS, iterations))
    for round_index in range(rounds):
        calls = iterations // rounds + (round_index < iterations % rounds)
        for name, entry in timed.items():
            if progress:
                progress(f"{frame_size[0]}x{frame_size[1]}: round {round_index + 1}/{rounds} "
                         f"{name}")
            entry.time_round(calls)
    reference = next(iter(timed.values()))
    reference_e2e = statistics.median(reference.end_to_end_ms)
    reference_model = statistics.median(reference.model_ms)
    for name, entry in timed.items():
        end_to_end = LatencyStats.from_samples(entry.end_to_end_ms)
        end_to_end.ratio_to_reference = reference_e2e / end_to_end.median_ms
        model_only = LatencyStats.from_samples(entry.model_ms)
        model_only.ratio_to_reference = reference_model / model_only.median_ms
        result.backends.append(BackendResult(name, entry.segmenter.backend.describe(),
                                             end_to_end, model_only))
    return result


def machine_summary() -> dict:
    """What the figures were measured on."""
    summary = {
        "cpu": _cpu_name(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # None where unset.
        "thread_variables": {name: os.environ.get(name) for name in THREAD_VARIABLES},
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        summary["gpu"] = torch.cuda.get_device_name()
    for module in ("onnxruntime", "openvino"):
        try:
            summary[module] = __import__(module).__version__
        except ImportError:
            pass
    return summary


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def report_dict(results: Sequence[SizeResult]) -> dict:
    return {"machine": machine_summary(), "reference": REFERENCE_BACKEND,
            "sizes": [asdict(result) for result in results]}


def format_machine() -> str:
    """The machine line heading every benchmark report, with the thread settings timed under."""
    machine = machine_summary()
    variables = ", ".join(f"{name}={value or 'unset'}"
                          for name, value in machine["thread_variables"].items())
    return (f"machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, torch "
            f"{machine['torch']} ({machine['torch_threads']} threads; {variables})"
            + (f", GPU {machine['gpu']}" if "gpu" in machine else ""))


def format_size(result: SizeResult) -> str:
    """One frame size's table."""
    complexity = result.complexity
    lines = [
        (f"frames {result.frame_size[0]}x{result.frame_size[1]}, network input "
         f"{result.input_size[0]}x{result.input_size[1]}: {complexity['params']:,} params, "
         f"{complexity['macs'] / 1e9:.2f} GMACs = {complexity['flops'] / 1e9:.2f} GFLOPs "
         "(convolutions only, FLOPs = 2 x MACs)"),
        (f"{'backend':<24} {'e2e median':>10} {'p99':>8} {'FPS':>7} {'x eager':>8}   "
         f"{'model median':>12} {'p99':>8} {'FPS':>7} {'x eager':>8}"),
    ]
    for entry in result.backends:
        e2e, model = entry.end_to_end, entry.model
        lines.append(
            f"{entry.backend:<24} {e2e.median_ms:>8.1f}ms {e2e.p99_ms:>6.1f}ms "
            f"{e2e.fps:>7.1f} {e2e.ratio_to_reference:>7.2f}x   "
            f"{model.median_ms:>10.1f}ms {model.p99_ms:>6.1f}ms {model.fps:>7.1f} "
            f"{model.ratio_to_reference:>7.2f}x")
    for name, reason in result.failed.items():
        lines.append(f"{name:<24} not measured: {reason}")
    lines.extend(_speedups_over_host(result))
    return "\n".join(lines)


def _speedups_over_host(result: SizeResult) -> list[str]:
    """The fastest frame-to-labels path against each host pre/post variant, same run."""
    measured = {entry.backend: entry.end_to_end.median_ms for entry in result.backends}
    if not measured:
        return []
    fastest = min(measured, key=measured.get)
    return [f"{fastest} frame to labels: {median / measured[fastest]:.2f}x faster than {name}"
            for name, median in measured.items() if name.endswith(f" {HOST_SUFFIX}")]


REPORT_FOOTNOTE = (
    "e2e: Segmenter.predict, uint8 RGB frame to uint8 labels at frame size (resize, "
    "normalise, network, upsample, argmax; OpenVINO: all but the resize in its compiled graph, "
    f"'{HOST_SUFFIX}': on the host as the other backends, and (but INT8, whose model is the "
    "weights') the network as trained, with its channel shuffles and transposed-conv "
    "classifier, as before issue 15). model: the network alone on a ready "
    "input. x eager: median of eager fp32 (torch:fp32) / median, same run.")


def format_report(results: Sequence[SizeResult]) -> str:
    """A plain-text table per size, the way the README quotes it."""
    return "\n\n".join([format_machine(), *map(format_size, results), REPORT_FOOTNOTE])


def network_input_for(frame_size: tuple[int, int]) -> tuple[int, int]:
    """The network input timed for a frame size when none is given: the frame size rounded to
    the nearest multiple of the output stride (at least one stride), as any camera size runs."""
    return tuple(max(OUTPUT_STRIDE, OUTPUT_STRIDE * round(side / OUTPUT_STRIDE))
                 for side in frame_size)
