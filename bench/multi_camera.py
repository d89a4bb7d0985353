#!/usr/bin/env python3
"""One segmentation node serving N cameras against N single-camera nodes, on the same frames.

For each N in --cameras (default 2 and 4): one node with `camera_namespaces: [cam0, ...]` and
N plain single-camera nodes, every one a process of its own started from the console script
with the default backend (auto, or --backend), `device: cpu` and `max_rate_hz: 0` (unbounded:
this is a throughput benchmark, not the 15 Hz a robot would be configured with). Each camera
publishes 640x480 rgb8 frames (real CamVid val frames resized where present; camera i starts
at frame i, the same in both layouts) at --rate-hz, more than the nodes can serve, for
--seconds; a camera's labels/s counts the frames published inside the window that were
answered (matched by header stamp). Aggregate labels/s sums the cameras; memory sums the
resident set (VmRSS) of the layout's node processes at the end of each window; their PSS
(shared library pages split between the processes that map them) is given beside it, since
N processes' RSS counts the same libraries N times. The nodes' CPU time in each window is
recorded too: labels per CPU-second of the nodes tell the layouts' efficiency apart from the
share of a shared machine's cores that N processes win over one.

Every node is started once, at the beginning (the other layouts' nodes stay up, unfed and
idle, while one layout is timed); each layout is warmed up (first answer on every
camera, then --warmup-seconds of full-rate frames so the graphs for every batch size are
built) before any window is timed. Windows are interleaved, multi-camera node then single
nodes for each N, the order reversed every other round, so machine drift hits both alike.
DDS stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) in a domain of its own.

    .venv/bin/python bench/multi_camera.py --cameras 2 4 --seconds 20 --json multi.json
"""

from __future__ import annotations

import argparse
import array
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
from node_overhead import (
    DRAIN_S,
    PARAMS_FILE,
    REPO_ROOT,
    STARTUP_TIMEOUT_S,
    isolate_dds,
    load_frames,
    process_cpu_s,
)

from fbsnet_ros.ros.names import READY_LINE
from fbsnet_ros.ros.processes import node_executable, stop_node_process
from fbsnet_ros.ros.stamps import ns_to_sec_nanosec, stamp_to_ns

# Until a camera's first answer, its frame is sent again this often (discovery may drop it).
REPUBLISH_PERIOD_S = 1.0
# The issue 12 targets for 4 cameras in one node against 4 nodes.
TARGET_THROUGHPUT_RATIO = 1.3
TARGET_MEMORY_RATIO = 0.5

log = logging.getLogger("multi_camera")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, nargs="+", default=[2, 4],
                        help="numbers of cameras compared (default: 2 4)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each window")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of interleaved windows")
    parser.add_argument("--rate-hz", type=float, default=30.0, help="frames/s per camera")
    parser.add_argument("--warmup-seconds", type=float, default=5.0,
                        help="full-rate frames before the first window of each layout")
    parser.add_argument("--size", default="480x640", help="camera frame size HxW")
    parser.add_argument("--weights", default="", help="checkpoint (default: the shipped weights)")
    parser.add_argument("--backend", default="auto", help="backend of every node")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-root", default=str(REPO_ROOT.parent / "shared/datasets/camvid"))
    parser.add_argument("--domain-id", type=int, default=None,
                        help="ROS_DOMAIN_ID (default: one derived from this process id)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.cameras):
        parser.error("--cameras: at least 1 camera")
    return args


class NodeProcess:
    """One segmentation node, its output in a log file."""

    def __init__(self, name: str, log_path: Path, params_files: list[Path],
                 ros_arguments: list[str]) -> None:
        self.name, self.log_path = name, log_path
        command = [node_executable(), "--ros-args"]
        for params_file in (PARAMS_FILE, *params_files):
            command += ["--params-file", str(params_file)]
        command += ros_arguments
        log.info("starting %s: %s", name, " ".join(command))
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_running(self) -> None:
        if self.process.poll() is not None:
            raise SystemExit(f"node {self.name} exited ({self.process.returncode}):\n"
                             f"{self.output[-4000:]}")

    def cpu_seconds(self) -> float:
        """CPU time (user and system) the node has used so far."""
        return process_cpu_s(self.process.pid)

    def memory(self) -> dict[str, int]:
        """Resident set and proportional set size in bytes, the node and any children."""
        import psutil

        rss = pss = 0
        root = psutil.Process(self.process.pid)
        for process in (root, *root.children(recursive=True)):
            try:
                info = process.memory_full_info()
            except psutil.NoSuchProcess:
                continue
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
        return {"rss": rss, "pss": pss}

    def stop(self) -> None:
        stop_node_process(self.process)
        self._log.close()


def write_params(path: Path, args, camera_namespaces: list[str] | None = None) -> Path:
    parameters = {"device": args.device, "backend": args.backend, "max_rate_hz": 0.0}
    if args.weights:
        parameters["weights"] = str(Path(args.weights).resolve())
    if camera_namespaces:
        parameters["camera_namespaces"] = camera_namespaces
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": parameters}}))
    return path


class Camera:
    """One camera stream of the bench: its publisher, the labels coming back, its frames."""

    def __init__(self, node, image_topic: str, labels_topic: str, messages: list) -> None:
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        self.image_topic, self.labels_topic, self.messages = image_topic, labels_topic, messages
        # A camera driver's QoS (usb_cam, v4l2_camera: reliable, keep-last); the node follows.
        self.publisher = node.create_publisher(
            Image, image_topic, QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                                           reliability=ReliabilityPolicy.RELIABLE))
        self.subscription = node.create_subscription(
            Image, labels_topic, self._on_labels,
            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.lock = threading.Lock()
        self.published: list[int] = []  # stamps in ns
        self.answered: set[int] = set()
        self.sent = 0

    def _on_labels(self, message) -> None:
        with self.lock:
            self.answered.add(stamp_to_ns(message.header.stamp))

    def matched(self) -> bool:
        return (self.publisher.get_subscription_count() > 0
                and self.subscription.get_publisher_count() > 0)

    def publish(self) -> int:
        stamp = time.time_ns()
        message = self.messages[self.sent % len(self.messages)]
        message.header.stamp.sec, message.header.stamp.nanosec = ns_to_sec_nanosec(stamp)
        self.sent += 1
        with self.lock:
            self.published.append(stamp)
        self.publisher.publish(message)
        return stamp

    def is_answered(self, stamp: int) -> bool:
        with self.lock:
            return stamp in self.answered

    def reset(self) -> None:
        with self.lock:
            self.published.clear()
            self.answered.clear()

    def answered_between(self, start_ns: int, end_ns: int) -> tuple[int, int]:
        """(published, answered) frames stamped in [start_ns, end_ns)."""
        with self.lock:
            inside = [stamp for stamp in self.published if start_ns <= stamp < end_ns]
            return len(inside), sum(stamp in self.answered for stamp in inside)


class Layout:
    """Cameras and the node process(es) serving them: one node with N cameras, or N nodes."""

    def __init__(self, kind: str, cameras: list[Camera], nodes: list[NodeProcess]) -> None:
        self.kind, self.cameras, self.nodes = kind, cameras, nodes
        self.warm = False

    @property
    def name(self) -> str:
        return f"{self.kind} ({len(self.cameras)} cameras)"


class Bench:
    """The bench side: one rclpy node in its own context, spun in a background thread; frames
    are published from a thread of their own so the label callbacks never delay them."""

    def __init__(self, frames) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from sensor_msgs.msg import Image

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node("multi_camera_bench", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.spinner = threading.Thread(target=self._spin, daemon=True)
        self.spinner.start()
        self.frames = frames
        self._image_type = Image

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def camera(self, image_topic: str, labels_topic: str, offset: int) -> Camera:
        """Camera `offset` sends the frames from number `offset` on, in every layout alike."""
        messages = []
        for index in range(len(self.frames)):
            frame = self.frames[(index + offset) % len(self.frames)]
            message = self._image_type(height=frame.shape[0], width=frame.shape[1],
                                       encoding="rgb8", step=3 * frame.shape[1])
            message.header.frame_id = f"camera{offset}"
            message.data = array.array("B", frame.tobytes())
            messages.append(message)
        return Camera(self.node, image_topic, labels_topic, messages)

    def flood(self, cameras: list[Camera], rate_hz: float, seconds: float) -> tuple[int, int]:
        """Every camera publishes at rate_hz for `seconds`; the window's (start, end) in ns.
        A tick that comes late is sent at once, never made up for later."""
        period = 1.0 / rate_hz
        start = time.time_ns()
        started = time.monotonic()
        tick = started
        while tick < started + seconds:
            for camera in cameras:
                camera.publish()
            tick += period
            time.sleep(max(0.0, tick - time.monotonic()))
            tick = max(tick, time.monotonic() - period)
        return start, time.time_ns()

    def close(self) -> None:
        import rclpy

        rclpy.try_shutdown(context=self.context)
        self.spinner.join(timeout=10)
        self.executor.shutdown()
        self.node.destroy_node()


def wait_until(condition, nodes: list[NodeProcess], what: str,
               timeout: float = STARTUP_TIMEOUT_S, action=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for node in nodes:
            node.check_running()
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        if action is not None:
            action()
        time.sleep(REPUBLISH_PERIOD_S if action is not None else 0.2)


def warm_up(bench: Bench, layout: Layout, args) -> None:
    """Matched both ways, every camera answered once, then full-rate frames for a while."""
    wait_until(lambda: all(camera.matched() for camera in layout.cameras), layout.nodes,
               f"{layout.name}: publishers and subscriptions matched")
    pending = {}

    def send_pending() -> None:
        for camera in layout.cameras:
            if camera not in pending or not camera.is_answered(pending[camera]):
                pending[camera] = camera.publish()

    wait_until(lambda: all(camera in pending and camera.is_answered(pending[camera])
                           for camera in layout.cameras),
               layout.nodes, f"{layout.name}: a first answer on every camera",
               action=send_pending)
    if args.warmup_seconds > 0:
        bench.flood(layout.cameras, args.rate_hz, args.warmup_seconds)
        time.sleep(DRAIN_S)
    layout.warm = True
    log.info("%s warm", layout.name)


def measure(bench: Bench, layout: Layout, args) -> dict:
    for camera in layout.cameras:
        camera.reset()
    nodes_cpu = sum(node.cpu_seconds() for node in layout.nodes)
    bench_cpu = process_cpu_s()
    start, end = bench.flood(layout.cameras, args.rate_hz, args.seconds)
    nodes_cpu = sum(node.cpu_seconds() for node in layout.nodes) - nodes_cpu
    bench_cpu = process_cpu_s() - bench_cpu
    memory = [node.memory() for node in layout.nodes]  # at the end of the window
    time.sleep(DRAIN_S)
    for node in layout.nodes:
        node.check_running()
    elapsed = (end - start) / 1e9
    per_camera = []
    for camera in layout.cameras:
        published, answered = camera.answered_between(start, end)
        per_camera.append({"topic": camera.image_topic, "published": published,
                           "answered": answered, "labels_per_s": answered / elapsed})
    return {"elapsed_s": elapsed, "cameras": per_camera,
            "labels_per_s": sum(camera["labels_per_s"] for camera in per_camera),
            "published_per_s": sum(camera["published"] for camera in per_camera) / elapsed,
            "rss_bytes": sum(m["rss"] for m in memory),
            "pss_bytes": sum(m["pss"] for m in memory),
            "processes": len(layout.nodes),
            # CPU the nodes, and this bench's camera side, used in the window (cores busy).
            "node_cpu_seconds": nodes_cpu, "bench_cpu_seconds": bench_cpu}


def pooled(windows: list[dict]) -> dict:
    """Labels/s over every window (per camera too); memory the mean of the windows'."""
    elapsed = sum(window["elapsed_s"] for window in windows)
    cameras = [{"topic": camera["topic"],
                "published": sum(w["cameras"][i]["published"] for w in windows),
                "answered": sum(w["cameras"][i]["answered"] for w in windows),
                "labels_per_s": sum(w["cameras"][i]["answered"] for w in windows) / elapsed}
               for i, camera in enumerate(windows[0]["cameras"])]
    return {"windows": len(windows), "seconds": elapsed, "cameras": cameras,
            "labels_per_s": sum(camera["labels_per_s"] for camera in cameras),
            "published_per_s": sum(camera["published"] for camera in cameras) / elapsed,
            "rss_bytes": sum(w["rss_bytes"] for w in windows) / len(windows),
            "pss_bytes": sum(w["pss_bytes"] for w in windows) / len(windows),
            "processes": windows[0]["processes"],
            "node_cores": sum(w["node_cpu_seconds"] for w in windows) / elapsed,
            "bench_cores": sum(w["bench_cpu_seconds"] for w in windows) / elapsed,
            "labels_per_cpu_second": (sum(camera["answered"] for camera in cameras)
                                      / sum(w["node_cpu_seconds"] for w in windows))}


def comparison(multi: dict, single: dict) -> dict:
    return {"throughput_ratio": multi["labels_per_s"] / single["labels_per_s"]
            if single["labels_per_s"] else float("nan"),
            "memory_ratio": multi["rss_bytes"] / single["rss_bytes"],
            "pss_ratio": multi["pss_bytes"] / single["pss_bytes"]}


def efficiency_ratio(multi: dict, single: dict) -> float:
    """Labels per CPU-second of the nodes, one node over N: on a shared machine N processes
    win a larger share of the cores than one, which the throughput ratio does not separate."""
    return multi["labels_per_cpu_second"] / single["labels_per_cpu_second"]


def start_nodes(args, directory: Path) -> tuple[dict[int, NodeProcess], list[NodeProcess]]:
    """One multi-camera node per N (namespace /multi<N>) and max(N) single-camera nodes
    (/single<i>, the first N of them serve the N-camera comparison)."""
    single_params = write_params(directory / "single.yaml", args)
    multi = {}
    for count in sorted(set(args.cameras)):
        params = write_params(directory / f"multi{count}.yaml", args,
                              [f"cam{i}" for i in range(count)])
        multi[count] = NodeProcess(f"multi{count}", directory / f"multi{count}.log",
                                   [params], ["-r", f"__ns:=/multi{count}"])
    singles = [NodeProcess(f"single{i}", directory / f"single{i}.log", [single_params],
                           ["-r", f"__ns:=/single{i}",
                            "-r", f"/camera/image_raw:=/single{i}/camera/image_raw",
                            "-r", "__node:=fbsnet"])
               for i in range(max(args.cameras))]
    return multi, singles


def ready_line(node: NodeProcess) -> str:
    return next(line for line in node.output.splitlines() if READY_LINE in line)


def megabytes(value: float) -> str:
    return f"{value / 2**20:.0f} MiB"


def format_result(result: dict) -> str:
    lines = [
        (f"{result['frame_size'][0]}x{result['frame_size'][1]} rgb8 frames at "
         f"{result['rate_hz']:g} Hz per camera, reliable; {result['rounds']} round(s) of "
         f"{result['seconds']:g} s windows; device {result['device']}, backend "
         f"{result['backend']}; max_rate_hz 0 (unbounded: a throughput benchmark); DDS domain "
         f"{result['ros_domain_id']}; {result['frames']}"),
        f"node: {result['node_ready_line']}",
    ]
    for entry in result["comparisons"]:
        count = entry["cameras"]
        lines.append(f"{count} cameras:")
        for key, label in (("multi", f"one node, {count} cameras"),
                           ("single", f"{count} single-camera nodes")):
            layout = entry[key]
            per_camera = ", ".join(f"{camera['labels_per_s']:.2f}"
                                   for camera in layout["cameras"])
            lines.append(
                f"  {label:<26} {layout['labels_per_s']:6.2f} labels/s aggregate "
                f"(per camera {per_camera}; offered {layout['published_per_s']:.1f} frames/s), "
                f"RSS {megabytes(layout['rss_bytes'])}, PSS {megabytes(layout['pss_bytes'])} "
                f"over {layout['processes']} process(es); CPU: nodes {layout['node_cores']:.2f} "
                f"cores ({layout['labels_per_cpu_second']:.2f} labels per CPU-second), bench "
                f"cameras {layout['bench_cores']:.2f}")
        target = count == 4
        lines.append(
            f"  one node / {count} nodes: throughput {entry['throughput_ratio']:.2f}x"
            + (f" (target >= {TARGET_THROUGHPUT_RATIO}x)" if target else "")
            + f", memory (RSS) {entry['memory_ratio']:.2f}x"
            + (f" (target <= {TARGET_MEMORY_RATIO}x)" if target else "")
            + f", PSS {entry['pss_ratio']:.2f}x; labels per CPU-second "
            f"{entry['efficiency_ratio']:.2f}x")
        if len(entry["rounds"]) > 1:
            lines.append("  per round (throughput, memory): " + ", ".join(
                f"{r['throughput_ratio']:.2f} / {r['memory_ratio']:.2f}"
                for r in entry["rounds"]))
    return "\n".join(lines)


def main(argv=None) -> int:
    from fbsnet_ros.evaluation.benchmark import format_machine, machine_summary

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(format_machine(), flush=True)
    domain = isolate_dds(args.domain_id)
    height, width = (int(v) for v in args.size.lower().split("x"))
    frames = load_frames(args.data_root, (height, width))
    real_frames = (Path(args.data_root) / "val.txt").is_file()
    counts = sorted(set(args.cameras))

    directory = Path(tempfile.mkdtemp(prefix="multi_camera_",
                                      dir=os.environ.get("TMPDIR", "/tmp")))
    multi_nodes, single_nodes = start_nodes(args, directory)
    all_nodes = [*multi_nodes.values(), *single_nodes]
    bench = Bench(frames)
    windows: dict[tuple[str, int], list[dict]] = {}
    try:
        layouts = {}
        for count in counts:
            layouts[("multi", count)] = Layout("one node", [
                bench.camera(f"/multi{count}/cam{i}/image_raw",
                             f"/multi{count}/cam{i}/fbsnet/labels", i) for i in range(count)],
                [multi_nodes[count]])
            layouts[("single", count)] = Layout("single nodes", [
                bench.camera(f"/single{i}/camera/image_raw", f"/single{i}/fbsnet/labels", i)
                for i in range(count)], single_nodes[:count])
        wait_until(lambda: all(READY_LINE in node.output for node in all_nodes), all_nodes,
                   "every node's start")
        log.info("all %d nodes started (logs in %s)", len(all_nodes), directory)
        for index in range(args.rounds):
            for count in counts:
                order = ("multi", "single") if index % 2 == 0 else ("single", "multi")
                for kind in order:
                    layout = layouts[(kind, count)]
                    if not layout.warm:
                        warm_up(bench, layout, args)
                    window = measure(bench, layout, args)
                    windows.setdefault((kind, count), []).append(window)
                    log.info("round %d/%d, %s: %.2f labels/s, RSS %s", index + 1, args.rounds,
                             layout.name, window["labels_per_s"],
                             megabytes(window["rss_bytes"]))
        node_ready = ready_line(multi_nodes[counts[-1]])
    finally:
        bench.close()
        for node in all_nodes:
            node.stop()

    comparisons = []
    for count in counts:
        multi, single = pooled(windows[("multi", count)]), pooled(windows[("single", count)])
        rounds = [comparison(m, s) for m, s in zip(windows[("multi", count)],
                                                   windows[("single", count)], strict=True)]
        comparisons.append({"cameras": count, "multi": multi, "single": single,
                            **comparison(multi, single),
                            "efficiency_ratio": efficiency_ratio(multi, single),
                            "rounds": rounds})
    result = {
        "machine": machine_summary(), "ros_domain_id": domain, "frame_size": [height, width],
        "frames": "CamVid val frames" if real_frames else "random frames",
        "rate_hz": args.rate_hz, "seconds": args.seconds, "rounds": args.rounds,
        "device": args.device, "backend": args.backend, "max_rate_hz": 0.0,
        "node_ready_line": node_ready, "comparisons": comparisons,
        "targets": {"cameras": 4, "throughput_ratio_at_least": TARGET_THROUGHPUT_RATIO,
                    "memory_ratio_at_most": TARGET_MEMORY_RATIO},
    }
    print(format_result(result), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
