"""Start-up time to the first answered frame, per backend, with a cold and a warm cache.

    python bench/startup.py [--backends auto openvino:bf16 torch] [--runs 5] [--json FILE]

Each run is a fresh Python process that loads the weights, builds a Segmenter (which exports,
compiles and warms up its backend) and segments one CamVid val frame; the figure is the wall
time from starting the process to holding the labels, so it includes the interpreter and the
imports, as a node's start-up does. "cold": an empty artefact cache (the first start on a
robot: ONNX export, OpenVINO compile); "warm": the cache a previous start left
($FBSNET_ROS_CACHE_DIR, fbsnet_ros.inference.artefacts). Runs interleave backends and cache
states in rounds, so a machine whose speed drifts affects all alike; figures are medians.
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

from fbsnet_ros.evaluation.benchmark import format_machine, machine_summary

# What one run does, in the child process; it prints the wall-clock time it had the labels.
CHILD = """
import sys, time
from fbsnet_ros.data.io import read_rgb
from fbsnet_ros.inference import Segmenter
segmenter = Segmenter.from_checkpoint(sys.argv[2] or None, device="cpu", backend=sys.argv[1])
labels = segmenter.predict(read_rgb(sys.argv[3]))
print("FIRST_LABELS", time.time(), segmenter.backend_name, labels.shape)
"""
CAMVID = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "camvid"


def first_val_frame(data_root: Path) -> str:
    return str(data_root / (data_root / "val.txt").read_text().split()[0])


def start_once(backend: str, weights: str, frame: str, cache: str) -> tuple[float, str]:
    """Seconds from process start to first labels, and the backend that answered."""
    environment = {**os.environ, "FBSNET_ROS_CACHE_DIR": cache}
    started = time.time()
    result = subprocess.run([sys.executable, "-c", CHILD, backend, weights, frame],
                            env=environment, capture_output=True, text=True, check=False)
    line = next((line for line in result.stdout.splitlines()
                 if line.startswith("FIRST_LABELS")), None)
    if result.returncode or line is None:
        raise RuntimeError(f"{backend}: start failed:\n{result.stderr[-2000:]}")
    _, answered, running, *_ = line.split()
    return float(answered) - started, running


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["auto", "openvino:bf16", "torch"])
    parser.add_argument("--weights", default="", help="checkpoint (default: the shipped one)")
    parser.add_argument("--runs", type=int, default=5, help="runs per backend and cache state")
    parser.add_argument("--data-root", type=Path, default=CAMVID)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    frame = first_val_frame(args.data_root)
    print(format_machine(), flush=True)
    times: dict[tuple[str, str], list[float]] = {}
    running: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="fbsnet_startup_") as scratch:
        warm_caches = {backend: str(Path(scratch) / f"warm{index}")
                       for index, backend in enumerate(args.backends)}
        for backend, cache in warm_caches.items():  # fills the warm caches, not timed
            _, running[backend] = start_once(backend, args.weights, frame, cache)
        for round_index in range(args.runs):
            for backend in args.backends:
                cold = str(Path(scratch) / f"cold{round_index}-{backend.replace(':', '_')}")
                for state, cache in (("cold", cold), ("warm", warm_caches[backend])):
                    seconds, _ = start_once(backend, args.weights, frame, cache)
                    times.setdefault((backend, state), []).append(seconds)
                    print(f"round {round_index + 1}/{args.runs} {backend} {state}: "
                          f"{seconds:.2f} s", file=sys.stderr, flush=True)
    print(f"\nstart to first labels, 360x480 CamVid frame, {args.runs} runs each, medians")
    print(f"{'backend':<28} {'cold cache':>10} {'warm cache':>10}")
    for backend in args.backends:
        name = f"auto={running[backend]}" if backend == "auto" else running[backend]
        cold, warm = (statistics.median(times[backend, state]) for state in ("cold", "warm"))
        print(f"{name:<28} {cold:>9.2f}s {warm:>9.2f}s")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": machine_summary(), "runs": args.runs,
            "seconds": {f"{backend} {state}": samples
                        for (backend, state), samples in times.items()},
            "running": running}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
