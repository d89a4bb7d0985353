#!/usr/bin/env python3
"""What the ROS node costs on top of the engine, measured from outside the node over real DDS.

1. Engine alone: `Segmenter.predict` in a loop on the same frames with the same backend, the
   node started but idle (no input): frames per second and median latency.
2. Throughput: the node (its console script, a separate process) is flooded with camera frames
   at --flood-hz (default 50 Hz, more than it can serve on a CPU); labels per second arriving on
   /fbsnet/labels, and their ratio to the engine's rate (target: >= 0.95, issue 15; 0.9 before).
3. Latency: frames at half the engine's rate; time from publish (the header stamp) to the
   arrival of the labels carrying that stamp, p50 / p99, and p99 over the engine's median
   latency (target: <= 1.5). Whether frames queue up shows in the first and last thirds.
4. The engine alone paced the same way (sleeping between frames): on this machine a core that
   idles between frames can run the next one up to a third slower than back to back, node or
   not, so the node's latency is also compared with this like-for-like reference.

Where the cores go in the flood: the CPU time of the node's process and of this probe's (the
camera publisher and labels listener; a real camera driver is another process too) over the
block, against the engine's own process in its block, in cores (Linux /proc); and the node's
by thread: inference (its worker and the runtime's threads), frame intake, executor, results
publishing, DDS.

Shared cores drift by tens of percent over minutes, so the phases are interleaved: --rounds
rounds of engine, flood, engine, paced node and paced engine blocks, --seconds each (the two
engine blocks half as long, bracketing the flood so a steady drift cancels); the ratios pool
all rounds (per-round ratios are printed too). DDS stays on this machine
(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) in a domain of its own.

    .venv/bin/python bench/node_overhead.py --backend torch --rounds 3 --json node.json
"""

from __future__ import annotations

import argparse
import array
import gc
import json
import logging
import os
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from fbsnet_ros.ros.compat import FASTDDS_PROFILES_FILE_VARIABLES, fastdds_profiles_env
from fbsnet_ros.ros.names import CAMERA_TOPIC, DIAGNOSTICS_STATUS_NAME, LABELS_TOPIC
from fbsnet_ros.ros.node_core import INTAKE_THREAD, RESULTS_THREAD, WORKER_THREAD
from fbsnet_ros.ros.processes import node_executable, stop_node_process
from fbsnet_ros.ros.stamps import ns_to_sec_nanosec, stamp_to_ns

REPO_ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = REPO_ROOT / "config" / "segmentation.yaml"
LARGE_FRAMES_PROFILE = REPO_ROOT / "config" / "fastdds_large_frames.xml"
# The node's threads, by what they do: its main thread runs the executor (timers, services,
# camera_info); its own threads are named (node_core); the DDS library names its threads
# "dds.*"; the rest are the inference runtime's (OpenVINO, OpenMP), whose work the worker
# thread shares.
THREAD_NAME_GROUPS = {WORKER_THREAD: "inference", INTAKE_THREAD: "intake",
                      RESULTS_THREAD: "results"}
THREAD_GROUPS = ("inference", "intake", "executor", "results", "DDS")
# The node's own counters on /diagnostics, by the names the report gives them.
NODE_COUNTERS = {"received": "frames received", "processed": "frames processed",
                 "replaced": "frames dropped", "lost_reported": "frames lost in transport"}
FRAME_COUNT = 8
# The node may export or compile its backend on first start: minutes on two cores.
STARTUP_TIMEOUT_S = 900.0
# Labels still in flight when a phase ends are counted; this long is waited for them.
DRAIN_S = 2.0
# The first seconds of a flood fill the pipeline; throughput is counted after them.
SETTLE_S = 2.0

log = logging.getLogger("node_overhead")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="", help="checkpoint (default: the shipped weights)")
    parser.add_argument("--backend", default="torch", help="backend of both engine and node")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", default="360x480", help="camera frame size HxW")
    parser.add_argument("--flood-hz", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each block")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of interleaved blocks")
    parser.add_argument("--data-root", default=str(REPO_ROOT.parent / "shared/datasets/camvid"))
    parser.add_argument("--domain-id", type=int, default=None,
                        help="ROS_DOMAIN_ID (default: one derived from this process id)")
    add_transport_arguments(parser, large_frames_default=False)
    parser.add_argument("--json", default=None, help="also write the results here")
    return parser.parse_args(argv)


def add_transport_arguments(parser: argparse.ArgumentParser, large_frames_default: bool) -> None:
    """How the probe publishes: the camera's reliability, and the Fast DDS profile."""
    parser.add_argument("--publisher-reliability", default="reliable",
                        choices=["reliable", "best_effort"],
                        help="the probe camera's QoS (the node follows it)")
    parser.add_argument("--large-frames", action=argparse.BooleanOptionalAction,
                        default=large_frames_default,
                        help="load config/fastdds_large_frames.xml in this process and the "
                             "node's (frames over 512 KB, best effort)")


def use_large_frames_profile(enabled: bool) -> None:
    """Before any participant exists: Fast DDS reads the variable once per process."""
    for variable in FASTDDS_PROFILES_FILE_VARIABLES:
        os.environ.pop(variable, None)
    if enabled:
        os.environ.update(fastdds_profiles_env(LARGE_FRAMES_PROFILE))


def isolate_dds(domain_id: int | None) -> int:
    """Localhost-only discovery in a domain no other run on this machine is likely to use."""
    domain = domain_id if domain_id is not None else 120 + os.getpid() % 100
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    return domain


def process_cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) of a process so far: this one by default."""
    if pid is None:
        return time.process_time()
    try:
        return stat_cpu_s(Path(f"/proc/{pid}/stat"))
    except OSError:
        return float("nan")


def stat_cpu_s(stat: Path) -> float:
    """User + system CPU seconds in a /proc stat file, a process's or a thread's (OSError when
    it has ended)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds so far of a process's threads, summed by what they do (see THREAD_GROUPS)."""
    totals = dict.fromkeys(THREAD_GROUPS, 0.0)
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            name = (task / "comm").read_text().strip()
            seconds = stat_cpu_s(task / "stat")
        except OSError:
            continue  # the thread ended meanwhile
        group = ("executor" if task.name == str(pid) else
                 "DDS" if name.startswith("dds.") else
                 THREAD_NAME_GROUPS.get(name, "inference"))
        totals[group] += seconds
    return totals


def percentile(values, q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def load_engine(args, frames: list[np.ndarray]):
    from fbsnet_ros.inference import Segmenter

    segmenter = Segmenter.from_checkpoint(args.weights or None, device=args.device,
                                          backend=args.backend)
    for frame in frames[:3]:
        segmenter.predict(frame)
    return segmenter


def engine_block(segmenter, frames: list[np.ndarray], seconds: float,
                 rate_hz: float | None = None) -> dict:
    """Segmenter.predict for `seconds`, back to back or started at rate_hz."""
    latencies = []
    cpu_start = process_cpu_s()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        began = time.perf_counter()
        segmenter.predict(frames[len(latencies) % len(frames)])
        latencies.append(time.perf_counter() - began)
        if rate_hz:
            time.sleep(max(0.0, began + 1.0 / rate_hz - time.perf_counter()))
    elapsed = time.perf_counter() - start
    return {"latencies_s": latencies, "elapsed_s": elapsed,
            "cpu_cores": (process_cpu_s() - cpu_start) / elapsed}


def engine_summary(blocks: list[dict]) -> dict:
    latencies = [t for block in blocks for t in block["latencies_s"]]
    return {"frames": len(latencies),
            "fps": len(latencies) / sum(block["elapsed_s"] for block in blocks),
            "cpu_cores": statistics.mean(block["cpu_cores"] for block in blocks),
            "median_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * percentile(latencies, 99)}


# A serialized message starts with the 4-byte CDR encapsulation header; header.stamp (int32 sec,
# uint32 nanosec) follows it in every message that starts with a std_msgs/Header.
SERIALIZED_STAMP_OFFSET = 4
SERIALIZED_STAMP = struct.Struct("<iI")


def serialized_stamp_ns(data: bytes) -> int:
    """The header stamp of a serialized (little-endian CDR) message, in ns."""
    sec, nanosec = SERIALIZED_STAMP.unpack_from(data, SERIALIZED_STAMP_OFFSET)
    return sec * 1_000_000_000 + nanosec


def with_serialized_stamp(data: bytes, stamp_ns: int) -> bytes:
    """A copy of a serialized message with its header stamp replaced (one copy of the frame)."""
    stamp = SERIALIZED_STAMP.pack(*ns_to_sec_nanosec(stamp_ns))
    end = SERIALIZED_STAMP_OFFSET + SERIALIZED_STAMP.size
    return b"".join((data[:SERIALIZED_STAMP_OFFSET], stamp, memoryview(data)[end:]))


class Probe:
    """Camera publisher and labels listener in this process.

    The probe's own cost is kept small, as a camera driver written in C++ costs the node's
    machine little beyond copying the frame: frames are serialized once and published as bytes
    with only the stamp rewritten, from a thread of their own (not an executor's timer), and
    the labels are taken serialized (only their stamp is read). Its CPU is reported all the
    same. The executor in a background thread serves the listeners.
    """

    def __init__(self, frames: list[np.ndarray], reliability: str = "reliable") -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rclpy.serialization import deserialize_message, serialize_message
        from sensor_msgs.msg import Image

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node("node_overhead_probe", context=self.context)
        # A camera driver's QoS (usb_cam, v4l2_camera: reliable, keep-last); the node follows.
        camera_qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=5,
            reliability=(ReliabilityPolicy.RELIABLE if reliability == "reliable"
                         else ReliabilityPolicy.BEST_EFFORT))
        self.publisher = self.node.create_publisher(Image, CAMERA_TOPIC, camera_qos)
        self.node.create_subscription(Image, LABELS_TOPIC, self._on_labels,
                                      QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE),
                                      raw=True)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.counters: dict[str, int] = {}  # the node's latest, see NODE_COUNTERS
        self.frames = []  # serialized sensor_msgs/Image, one per frame
        for frame in frames:
            message = Image(height=frame.shape[0], width=frame.shape[1], encoding="rgb8",
                            step=3 * frame.shape[1])
            message.header.frame_id = "camera"
            message.data = array.array("B", frame.tobytes())
            self.frames.append(serialize_message(message))
        # The stamp is where this probe writes and reads it (checked once, both ways).
        check = with_serialized_stamp(self.frames[0], 1_234_567_890_123_456_789)
        if not (stamp_to_ns(deserialize_message(check, Image).header.stamp)
                == serialized_stamp_ns(check) == 1_234_567_890_123_456_789):
            raise RuntimeError("this RMW serializes sensor_msgs/Image with the header stamp "
                               "elsewhere than after a little-endian CDR header")
        self.lock = threading.Lock()
        self.published: dict[int, float] = {}  # stamp in ns -> publish time
        self.arrivals: list[tuple[float, int]] = []  # (arrival time, stamp in ns)
        self.publishing: tuple[threading.Thread, threading.Event] | None = None
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.spinner = threading.Thread(target=self._spin, daemon=True)
        self.spinner.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def _on_labels(self, data: bytes) -> None:
        now = time.time()
        stamp = serialized_stamp_ns(data)
        with self.lock:
            self.arrivals.append((now, stamp))

    def _on_diagnostics(self, message) -> None:
        for status in message.status:
            if status.name == DIAGNOSTICS_STATUS_NAME:
                values = {value.key: value.value for value in status.values}
                with self.lock:
                    self.counters = {name: int(values[key])
                                     for name, key in NODE_COUNTERS.items()}

    def node_counters(self) -> dict[str, int]:
        """The node's counters as of its last /diagnostics (published once a second)."""
        with self.lock:
            return dict(self.counters)

    def publish_one(self) -> None:
        now = time.time()
        stamp = int(now * 1e9)
        with self.lock:
            frame = self.frames[len(self.published) % len(self.frames)]
            self.published[stamp] = now
        self.publisher.publish(with_serialized_stamp(frame, stamp))

    def _publish_every(self, period_s: float, stop: threading.Event) -> None:
        due = time.monotonic()
        while not stop.wait(max(0.0, due - time.monotonic())):
            self.publish_one()
            # As a timer: the next frame a period after this one was due; none made up for.
            due = max(due + period_s, time.monotonic())

    def publish_at(self, rate_hz: float | None) -> None:
        """Start (or with None stop) publishing frames at rate_hz."""
        if self.publishing is not None:
            thread, stop = self.publishing
            stop.set()
            thread.join()
            self.publishing = None
        if rate_hz:
            stop = threading.Event()
            thread = threading.Thread(target=self._publish_every, args=(1.0 / rate_hz, stop),
                                      name="probe-camera", daemon=True)
            thread.start()
            self.publishing = thread, stop

    def reset(self) -> None:
        with self.lock:
            self.published.clear()
            self.arrivals.clear()

    def snapshot(self) -> tuple[dict[int, float], list[tuple[float, int]]]:
        with self.lock:
            return dict(self.published), list(self.arrivals)

    def close(self) -> None:
        import rclpy

        self.publish_at(None)
        rclpy.try_shutdown(context=self.context)
        self.spinner.join(timeout=10)
        self.executor.shutdown()
        self.node.destroy_node()


def start_node(args, log_path: Path) -> subprocess.Popen:
    # Unbounded rate: the comparison is of the node's cost against the engine's loop, not of
    # the shipped rate bound (max_rate_hz 15, below what the engine serves here).
    command = [node_executable(), "--ros-args", "--params-file", str(PARAMS_FILE),
               "-p", f"device:={args.device}", "-p", f"backend:={args.backend}",
               "-p", "max_rate_hz:=0.0"]
    if args.weights:  # rcl cannot parse an empty `-p weights:=`; the YAML's "" stands
        command += ["-p", f"weights:={args.weights}"]
    log.info("starting %s", " ".join(command))
    return subprocess.Popen(command, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for_node(probe: Probe, node: subprocess.Popen, log_path: Path) -> None:
    """Until the node has answered one frame: it is connected and its backend is warm."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if node.poll() is not None:
            raise SystemExit(f"the node exited ({node.returncode}):\n{log_path.read_text()}")
        if time.monotonic() > deadline:
            raise SystemExit(f"no labels from the node in {STARTUP_TIMEOUT_S} s")
        if probe.publisher.get_subscription_count() > 0:
            probe.publish_one()
            if probe.snapshot()[1]:
                return
        time.sleep(1.0)


def frame_accounting(published: int, before: dict[str, int], after: dict[str, int]) -> dict:
    """Where the frames went, from the node's own counters: received by the node (processed
    or replaced in its one-slot mailbox while it was busy), or lost in transport (published,
    never received; `lost_reported` is what DDS itself reported lost)."""
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in NODE_COUNTERS}
    return {"published": published, **delta, "lost_in_transport": published - delta["received"]}


def settled_counters(probe: Probe) -> dict[str, int]:
    """The node's counters once a /diagnostics newer than the last frame has arrived."""
    time.sleep(DRAIN_S)
    return probe.node_counters()


def flood_block(probe: Probe, rate_hz: float, seconds: float, node_pid: int) -> dict:
    probe.reset()
    before = probe.node_counters()
    probe.publish_at(rate_hz)
    start = time.time()
    cpu_start = process_cpu_s(node_pid), process_cpu_s()
    threads_start = thread_cpu_s(node_pid)
    time.sleep(seconds)
    cpu_end = process_cpu_s(node_pid), process_cpu_s()
    threads_end = thread_cpu_s(node_pid)
    probe.publish_at(None)
    end = time.time()
    after = settled_counters(probe)
    published, arrivals = probe.snapshot()
    counted = [t for t, _ in arrivals if start + SETTLE_S <= t <= end]
    return {"published": len(published), "labels": len(arrivals), "counted": len(counted),
            "elapsed_s": end - start, "counted_s": end - start - SETTLE_S,
            "frames": frame_accounting(len(published), before, after),
            "node_cpu_cores": (cpu_end[0] - cpu_start[0]) / (end - start),
            "node_thread_cores": {group: (threads_end[group] - threads_start[group])
                                  / (end - start) for group in THREAD_GROUPS},
            "probe_cpu_cores": (cpu_end[1] - cpu_start[1]) / (end - start)}


def flood_summary(blocks: list[dict]) -> dict:
    published = sum(block["published"] for block in blocks)
    return {"published_hz": published / sum(block["elapsed_s"] for block in blocks),
            "labels_per_s": (sum(block["counted"] for block in blocks)
                             / sum(block["counted_s"] for block in blocks)),
            "labels": sum(block["labels"] for block in blocks), "frames": published,
            "node_cpu_cores": statistics.mean(block["node_cpu_cores"] for block in blocks),
            "probe_cpu_cores": statistics.mean(block["probe_cpu_cores"] for block in blocks),
            "node_thread_cores": {group: statistics.mean(block["node_thread_cores"][group]
                                                         for block in blocks)
                                  for group in THREAD_GROUPS},
            "accounting": {key: sum(block["frames"][key] for block in blocks)
                           for key in blocks[0]["frames"]}}


def describe_camera(args) -> str:
    profile = " with the large-frames profile" if args.large_frames else ""
    return f"{args.publisher_reliability} camera{profile}"


def format_accounting(accounting: dict) -> str:
    return (f"{accounting['published']} published, {accounting['received']} received by the "
            f"node ({accounting['processed']} processed, {accounting['replaced']} replaced in "
            f"its mailbox), {accounting['lost_in_transport']} lost in transport "
            f"({accounting['lost_reported']} reported lost by DDS)")


def paced_block(probe: Probe, rate_hz: float, seconds: float) -> dict:
    probe.reset()
    probe.publish_at(rate_hz)
    time.sleep(seconds)
    probe.publish_at(None)
    time.sleep(DRAIN_S)
    published, arrivals = probe.snapshot()
    latencies = [arrived - published[stamp] for arrived, stamp in arrivals if stamp in published]
    return {"rate_hz": rate_hz, "frames": len(published), "latencies_s": latencies}


def paced_summary(blocks: list[dict]) -> dict:
    latencies = [t for block in blocks for t in block["latencies_s"]]
    frames = sum(block["frames"] for block in blocks)
    # Queueing would show as latency growing within a block: compare the blocks' thirds.
    first, last = [], []
    for block in blocks:
        block_latencies = block["latencies_s"]
        third = len(block_latencies) // 3
        first += block_latencies[:third]
        last += block_latencies[len(block_latencies) - third:]
    return {"rate_hz": statistics.mean(block["rate_hz"] for block in blocks),
            "frames": frames, "answered": len(latencies),
            "p50_ms": 1000 * percentile(latencies, 50), "p99_ms": 1000 * percentile(latencies, 99),
            "max_ms": 1000 * max(latencies, default=float("nan")),
            "first_third_median_ms": 1000 * percentile(first, 50),
            "last_third_median_ms": 1000 * percentile(last, 50)}


def load_frames(data_root: str, size: tuple[int, int]) -> list[np.ndarray]:
    from fbsnet_ros.evaluation.benchmark import benchmark_frames

    return benchmark_frames(size, data_root, FRAME_COUNT)


def main(argv=None) -> int:
    from fbsnet_ros.evaluation.benchmark import format_machine, machine_summary

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(format_machine(), flush=True)
    domain = isolate_dds(args.domain_id)
    height, width = (int(v) for v in args.size.lower().split("x"))
    frames = load_frames(args.data_root, (height, width))
    segmenter = load_engine(args, frames)

    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"node_overhead_{os.getpid()}.log"
    use_large_frames_profile(args.large_frames)
    node = start_node(args, log_path)
    probe = Probe(frames, args.publisher_reliability)
    # As in the node: a full collection over the engine's start-up objects would stall the
    # probe (and the engine blocks) for tens of milliseconds.
    gc.freeze()
    engine_blocks, flood_blocks, paced_blocks, paced_engine_blocks, rounds = [], [], [], [], []
    try:
        wait_for_node(probe, node, log_path)
        for index in range(1, args.rounds + 1):
            # The engine's half blocks bracket the flood, so that a steady drift of the
            # machine's speed over the round weighs on both sides of the ratio alike.
            engine_blocks.append(engine_block(segmenter, frames, args.seconds / 2))
            flood_blocks.append(flood_block(probe, args.flood_hz, args.seconds, node.pid))
            engine_blocks.append(engine_block(segmenter, frames, args.seconds / 2))
            engine = engine_summary(engine_blocks[-2:])
            paced_blocks.append(paced_block(probe, engine["fps"] / 2, args.seconds))
            paced_engine_blocks.append(
                engine_block(segmenter, frames, args.seconds, rate_hz=engine["fps"] / 2))
            flooded, paced = flood_summary(flood_blocks[-1:]), paced_summary(paced_blocks[-1:])
            rounds.append({"engine_fps": engine["fps"], "engine_median_ms": engine["median_ms"],
                           "throughput_ratio": flooded["labels_per_s"] / engine["fps"],
                           "p99_over_engine_median": paced["p99_ms"] / engine["median_ms"]})
            log.info("round %d/%d: engine %.2f FPS (median %.1f ms), flooded node %.2f labels/s, "
                     "paced p99 %.1f ms", index, args.rounds, engine["fps"], engine["median_ms"],
                     flooded["labels_per_s"], paced["p99_ms"])
    finally:
        probe.close()
        stop_node_process(node)
    engine, paced_engine = engine_summary(engine_blocks), engine_summary(paced_engine_blocks)
    throughput, latency = flood_summary(flood_blocks), paced_summary(paced_blocks)
    result = {
        "machine": machine_summary(),
        "frame_size": [height, width], "ros_domain_id": domain, "backend": segmenter.backend_name,
        "rounds": rounds, "engine": engine, "engine_paced": paced_engine,
        "node_flooded": throughput, "node_paced": latency,
        "throughput_ratio": throughput["labels_per_s"] / engine["fps"],
        "p99_over_engine_median": latency["p99_ms"] / engine["median_ms"],
        "p99_over_paced_engine_median": latency["p99_ms"] / paced_engine["median_ms"],
        "p50_over_paced_engine_median": latency["p50_ms"] / paced_engine["median_ms"],
    }
    print(format_result(result, args))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def format_result(result: dict, args) -> str:
    engine, flooded, paced = result["engine"], result["node_flooded"], result["node_paced"]
    lines = [
        (f"backend {result['backend']}, {args.size} frames, {len(result['rounds'])} rounds of "
         f"{args.seconds:g} s blocks, DDS domain {result['ros_domain_id']}, "
         f"{describe_camera(args)}"),
        (f"engine alone (Segmenter.predict loop): {engine['fps']:.2f} FPS, median "
         f"{engine['median_ms']:.1f} ms, p99 {engine['p99_ms']:.1f} ms"),
        (f"node flooded at {flooded['published_hz']:.1f} Hz: "
         f"{flooded['labels_per_s']:.2f} labels/s -> node/engine throughput "
         f"{result['throughput_ratio']:.3f} (target >= 0.95)"),
        f"  flooded frames: {format_accounting(flooded['accounting'])}",
        (f"  CPU in cores (of {os.cpu_count()}): engine alone {engine['cpu_cores']:.2f}; in the "
         f"flood the node {flooded['node_cpu_cores']:.2f} and this probe (camera publisher, "
         f"labels listener) {flooded['probe_cpu_cores']:.2f}"),
        "  the node's cores by thread: " + ", ".join(
            f"{group} {cores:.3f}" for group, cores in flooded["node_thread_cores"].items()),
        (f"node fed at {paced['rate_hz']:.2f} Hz (half the engine rate): {paced['answered']}/"
         f"{paced['frames']} answered, publish->labels p50 {paced['p50_ms']:.1f} ms, p99 "
         f"{paced['p99_ms']:.1f} ms, max {paced['max_ms']:.1f} ms -> p99 / engine median "
         f"{result['p99_over_engine_median']:.2f} (target <= 1.5)"),
        (f"engine alone paced the same way: median {result['engine_paced']['median_ms']:.1f} ms, "
         f"p99 {result['engine_paced']['p99_ms']:.1f} ms -> node p50 / paced engine median "
         f"{result['p50_over_paced_engine_median']:.2f}, node p99 / paced engine median "
         f"{result['p99_over_paced_engine_median']:.2f}"),
        "per round (throughput ratio, p99 / engine median): " + ", ".join(
            f"{r['throughput_ratio']:.3f} / {r['p99_over_engine_median']:.2f}"
            for r in result["rounds"]),
        (f"queueing check: median latency first third {paced['first_third_median_ms']:.1f} ms, "
         f"last third {paced['last_third_median_ms']:.1f} ms"),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
