#!/usr/bin/env python3
"""Soak: the node under a camera's full load for minutes; it must stay up, keep latency
bounded and not grow its memory.

Publishes --size frames (default 1080x1920 rgb8) at --rate Hz (default 30) for --seconds
(default 600) into the node's console-script process over localhost DDS, samples the node's
resident memory and the publish-to-labels latency every few seconds, and judges:
the node is alive at the end; it answered frames throughout; latency in the last minute is
no worse than twice that of the first minute after warm-up; resident memory grew by less
than --max-growth-mb (default 50 MB) between the end of warm-up and the end.

Where the frames went comes from the node's own counters on /diagnostics: published here,
received by the node (processed, or replaced in its one-slot mailbox while it was busy), and
lost in transport (published but never received). The camera is reliable and both processes
load config/fastdds_large_frames.xml by default, so 1080p frames reach the node.

    .venv/bin/python bench/soak.py --seconds 600 --json soak.json      # or: make soak
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from node_overhead import (
    Probe,
    add_transport_arguments,
    describe_camera,
    format_accounting,
    frame_accounting,
    isolate_dds,
    percentile,
    settled_counters,
    start_node,
    use_large_frames_profile,
    wait_for_node,
)

from fbsnet_ros.evaluation.benchmark import format_machine, machine_summary
from fbsnet_ros.ros.processes import stop_node_process

SAMPLE_PERIOD_S = 5.0
log = logging.getLogger("soak")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="", help="checkpoint (default: the shipped weights)")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", default="1080x1920", help="camera frame size HxW")
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate in Hz")
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before memory counts")
    parser.add_argument("--max-growth-mb", type=float, default=50.0)
    parser.add_argument("--domain-id", type=int, default=None)
    # 1080p frames at 30 Hz: shared memory in both processes, so the frames arrive and the
    # soak measures the node, not UDP fragmentation on loopback.
    add_transport_arguments(parser, large_frames_default=True)
    parser.add_argument("--json", default=None, help="also write the results here")
    return parser.parse_args(argv)


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for process {pid}")


def camera_frames(height: int, width: int) -> list[np.ndarray]:
    from fbsnet_ros.data.frame_sources import synthetic_road_scene

    return [synthetic_road_scene(index, (height, width)) for index in range(0, 40, 10)]


def latencies_between(published: dict, arrivals: list, start: float, end: float) -> list[float]:
    return [arrived - published[stamp] for arrived, stamp in arrivals
            if stamp in published and start <= published[stamp] < end]


def soak(args, probe: Probe, node: subprocess.Popen) -> dict:
    samples = []
    before = settled_counters(probe)
    probe.reset()
    probe.publish_at(args.rate)
    start = time.time()
    while time.time() - start < args.seconds and node.poll() is None:
        time.sleep(SAMPLE_PERIOD_S)
        published, arrivals = probe.snapshot()
        elapsed = time.time() - start
        recent = latencies_between(published, arrivals, time.time() - 2 * SAMPLE_PERIOD_S,
                                   time.time() - 1.0)
        sample = {"t_s": round(elapsed, 1), "rss_mb": round(resident_mb(node.pid), 1),
                  "frames": len(published), "labels": len(arrivals),
                  "recent_p50_ms": round(1000 * percentile(recent, 50), 1)}
        samples.append(sample)
        log.info("t=%5.0f s  rss %7.1f MB  frames %6d  labels %5d  latency p50 %7.1f ms",
                 elapsed, sample["rss_mb"], sample["frames"], sample["labels"],
                 sample["recent_p50_ms"])
    probe.publish_at(None)
    end = time.time()
    after = settled_counters(probe)
    published, arrivals = probe.snapshot()
    warm = [s for s in samples if s["t_s"] >= args.warmup] or samples[-1:]
    first_minute = latencies_between(published, arrivals, start + args.warmup,
                                     start + args.warmup + 60)
    last_minute = latencies_between(published, arrivals, end - 60, end)
    return {
        "samples": samples, "frames": len(published), "labels": len(arrivals),
        "accounting": frame_accounting(len(published), before, after),
        "labels_per_s": len(arrivals) / (end - start),
        "node_alive": node.poll() is None,
        "rss_after_warmup_mb": warm[0]["rss_mb"], "rss_end_mb": samples[-1]["rss_mb"],
        "rss_max_mb": max(s["rss_mb"] for s in samples),
        "rss_growth_mb": samples[-1]["rss_mb"] - warm[0]["rss_mb"],
        "latency_first_minute_p50_ms": 1000 * percentile(first_minute, 50),
        "latency_first_minute_p99_ms": 1000 * percentile(first_minute, 99),
        "latency_last_minute_p50_ms": 1000 * percentile(last_minute, 50),
        "latency_last_minute_p99_ms": 1000 * percentile(last_minute, 99),
    }


def verdict(result: dict, args) -> list[str]:
    failures = []
    if not result["node_alive"]:
        failures.append("the node died")
    if result["labels"] == 0:
        failures.append("no labels arrived")
    if result["rss_growth_mb"] >= args.max_growth_mb:
        failures.append(f"memory grew {result['rss_growth_mb']:.1f} MB after warm-up")
    if result["latency_last_minute_p99_ms"] > 2 * result["latency_first_minute_p99_ms"]:
        failures.append("latency in the last minute is over twice the first minute's")
    return failures


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(format_machine())  # the node inherits the thread settings it names
    domain = isolate_dds(args.domain_id)
    height, width = (int(v) for v in args.size.lower().split("x"))
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"soak_{os.getpid()}.log"
    use_large_frames_profile(args.large_frames)
    node = start_node(args, log_path)
    probe = Probe(camera_frames(height, width), args.publisher_reliability)
    try:
        wait_for_node(probe, node, log_path)
        log.info("soaking: %s frames at %.0f Hz for %.0f s (DDS domain %d, %s)", args.size,
                 args.rate, args.seconds, domain, describe_camera(args))
        result = soak(args, probe, node)
    finally:
        probe.close()
        stop_node_process(node)
    failures = verdict(result, args)
    result.update(machine=machine_summary(), size=args.size, rate_hz=args.rate,
                  seconds=args.seconds, backend=args.backend, camera=describe_camera(args),
                  failures=failures)
    print(f"soak {args.size} at {args.rate:g} Hz for {args.seconds:g} s: "
          f"{result['labels']} labels for {result['frames']} frames "
          f"({result['labels_per_s']:.2f}/s); latency p50/p99 first minute "
          f"{result['latency_first_minute_p50_ms']:.0f}/{result['latency_first_minute_p99_ms']:.0f}"
          f" ms, last minute {result['latency_last_minute_p50_ms']:.0f}/"
          f"{result['latency_last_minute_p99_ms']:.0f} ms; resident memory "
          f"{result['rss_after_warmup_mb']:.1f} MB after warm-up, {result['rss_end_mb']:.1f} MB "
          f"at the end (growth {result['rss_growth_mb']:+.1f} MB, max {result['rss_max_mb']:.1f})")
    print(f"frames: {format_accounting(result['accounting'])}")
    print("PASS" if not failures else "FAIL: " + "; ".join(failures))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
