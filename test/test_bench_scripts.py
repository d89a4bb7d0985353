"""The bench scripts run end to end: node_overhead (engine blocks, the real node flooded and paced
over DDS), dds_large_messages, multi_camera (one node with two cameras against two nodes),
wait_policy (the benchmark under each OMP_WAIT_POLICY setting).

Only that they measure what they say is asserted here; their ratios are figures for the README,
taken on a quiet machine, not pass/fail conditions of a shared test run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_node_overhead_measures_engine_and_node(random_checkpoint, camvid_root, tmp_path):
    report_path = tmp_path / "node_overhead.json"
    environment = {**os.environ, "TMPDIR": str(tmp_path), "OMP_WAIT_POLICY": "PASSIVE"}
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "node_overhead.py"),
         "--weights", str(random_checkpoint), "--backend", "torch", "--size", "240x320",
         "--rounds", "2", "--seconds", "3", "--data-root", str(camvid_root),
         "--domain-id", os.environ["ROS_DOMAIN_ID"], "--json", str(report_path)],
        capture_output=True, text=True, timeout=300, env=environment)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(report_path.read_text())
    # The thread settings it ran under, in its header and its report.
    assert completed.stdout.startswith("machine: ")
    assert "OMP_WAIT_POLICY=PASSIVE" in completed.stdout.splitlines()[0]
    assert report["machine"]["thread_variables"] == {
        "OMP_NUM_THREADS": environment.get("OMP_NUM_THREADS"), "OMP_WAIT_POLICY": "PASSIVE"}
    assert report["backend"] == "torch:fp32" and report["frame_size"] == [240, 320]
    assert len(report["rounds"]) == 2

    engine, flooded, paced = report["engine"], report["node_flooded"], report["node_paced"]
    assert engine["frames"] > 0 and engine["median_ms"] > 0
    # The flood offers more frames than the node answers, and it answers many of them.
    assert flooded["frames"] > flooded["labels"] > 0
    # The node's own counters (from /diagnostics) agree with what the probe saw: it received
    # no more frames than the probe published, each one processed or replaced in the mailbox,
    # and the probe got a label for each processed frame.
    accounting = flooded["accounting"]
    assert 0 < accounting["received"] <= accounting["published"]
    assert accounting["received"] == accounting["processed"] + accounting["replaced"]
    assert accounting["processed"] == flooded["labels"] > 0
    assert "flooded frames:" in completed.stdout
    # Where the cores went: the engine busy in its block, the node and the probe in the flood.
    cores = os.cpu_count()
    assert 0.2 < engine["cpu_cores"] <= cores + 0.1
    assert 0.2 < flooded["node_cpu_cores"] <= cores + 0.1
    assert 0.0 < flooded["probe_cpu_cores"] <= cores + 0.1
    assert f"the node {flooded['node_cpu_cores']:.2f} and this probe" in completed.stdout
    # ... and by the node's threads: inference did the work, the frames came in on the intake
    # thread (every frame the node received went through it, none through the executor's),
    # and the threads add up to the process.
    threads = flooded["node_thread_cores"]
    assert set(threads) == {"inference", "intake", "executor", "results", "DDS"}
    assert threads["inference"] > 0.5 * flooded["node_cpu_cores"]
    assert threads["intake"] > 0
    assert sum(threads.values()) == pytest.approx(flooded["node_cpu_cores"], abs=0.05)
    assert "the node's cores by thread: inference " in completed.stdout
    # Paced frames are answered and matched to their stamps (how many of them depends on the
    # load a shared test run puts on the machine; the README's figures come from a quiet one).
    assert paced["frames"] > 0 and paced["answered"] >= 0.5 * paced["frames"]
    assert 0 < paced["p50_ms"] <= paced["p99_ms"] <= paced["max_ms"]
    assert report["engine_paced"]["frames"] > 0
    # The ratios the README quotes are printed as reported.
    for printed in (f"node/engine throughput {report['throughput_ratio']:.3f}",
                    f"p99 / engine median {report['p99_over_engine_median']:.2f}",
                    f"node p99 / paced engine median "
                    f"{report['p99_over_paced_engine_median']:.2f}"):
        assert printed in completed.stdout


def test_dds_large_messages_counts_what_arrives_with_the_profile_on_the_writer():
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "dds_large_messages.py"), "--bytes",
         "2000000", "--count", "3", "--timeout", "5", "--profile", "writer"],
        capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "profile loaded by writer: 3/3 arrived" in completed.stdout


def test_multi_camera_compares_one_node_with_single_nodes(random_weights_built, camvid_root,
                                                          tmp_path):
    report_path = tmp_path / "multi_camera.json"
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "multi_camera.py"), "--cameras", "2",
         "--seconds", "3", "--warmup-seconds", "1", "--weights", str(random_weights_built),
         "--data-root", str(camvid_root), "--domain-id", os.environ["ROS_DOMAIN_ID"],
         "--json", str(report_path)],
        capture_output=True, text=True, timeout=240,
        env={**os.environ, "TMPDIR": str(tmp_path)})
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.startswith("machine: ")
    report = json.loads(report_path.read_text())
    assert report["backend"] == "auto" and report["max_rate_hz"] == 0.0
    assert "unbounded" in completed.stdout
    # The multi-camera node really served two cameras, batched or in turn.
    assert "/multi2/cam0/image_raw" in report["node_ready_line"]
    assert "/multi2/cam1/image_raw" in report["node_ready_line"]
    [comparison] = report["comparisons"]
    assert comparison["cameras"] == 2
    for layout, processes in (("multi", 1), ("single", 2)):
        measured = comparison[layout]
        assert measured["processes"] == processes
        # Both layouts measured on two cameras, each one answered, and their memory read.
        assert len(measured["cameras"]) == 2
        assert all(camera["labels_per_s"] > 0 for camera in measured["cameras"])
        assert measured["rss_bytes"] > 0 and measured["pss_bytes"] > 0
    # The ratios are printed as reported.
    assert (f"throughput {comparison['throughput_ratio']:.2f}x, memory (RSS) "
            f"{comparison['memory_ratio']:.2f}x") in completed.stdout


def test_wait_policy_runs_the_benchmark_under_each_setting(random_checkpoint, camvid_root,
                                                            tmp_path):
    # The suite runs under OMP_WAIT_POLICY=PASSIVE (Makefile): the "unset" process must not
    # inherit it (the script checks the setting each benchmark process reports it ran under).
    report_path = tmp_path / "wait_policy.json"
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "wait_policy.py"), "--backends", "torch",
         "--size", "96x128", "--iterations", "2", "--rounds", "1",
         "--weights", str(random_checkpoint), "--json", str(report_path)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "TMPDIR": str(tmp_path)})
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.startswith("machine: ")
    report = json.loads(report_path.read_text())
    assert report["rounds"] == 1 and report["size"] == "96x128"
    [(backend, figures)] = report["backends"].items()
    assert backend == "torch:fp32"
    assert figures["unset_ms"] > 0 and figures["passive_ms"] > 0
    assert figures["round_ratios"] == [figures["passive_ms"] / figures["unset_ms"]]
    assert f"{figures['ratio']:.2f}x" in completed.stdout
