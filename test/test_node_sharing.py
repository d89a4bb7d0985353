"""A node that shares the machine: inference_threads and max_rate_hz (issue 15, item 5).

max_rate_hz bounds the network runs per second (frames above it are dropped as the mailbox
drops them, and counted); it can change while the node runs. inference_threads bounds the
threads of torch and of the backend's own runtime.
"""

from __future__ import annotations

import time

import pytest
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from ros_helpers import (
    READY_LINE,
    NodeProcess,
    camera_image,
    remapped,
    wait_for_answer,
    wait_until,
    write_params_file,
)
from sensor_msgs.msg import Image

from fbsnet_ros.inference import Segmenter
from fbsnet_ros.inference.backends import available_backends

CPU = torch.device("cpu")


def test_max_rate_bounds_the_answers_and_changes_while_running(
        weights_params_file, probe, tmp_path):
    namespace = "/rate_test"
    camera_topic = f"{namespace}/camera/image_raw"
    settings = write_params_file(tmp_path / "rate.yaml", {"max_rate_hz": 2.0})
    node = NodeProcess(tmp_path / "node.log", [weights_params_file, settings],
                       remapped(namespace, camera_topic))
    try:
        node.wait_for_output(READY_LINE)
        assert "at most 2 runs/s" in node.output
        publisher = probe.publisher(Image, camera_topic)
        labels = probe.recorder(Image, f"{namespace}/fbsnet/labels")
        diagnostics = probe.recorder(DiagnosticArray, "/diagnostics")
        wait_until(lambda: publisher.get_subscription_count() > 0, what="node subscription")
        frame = camera_image(120, 160, "rgb8")
        stamp = probe.new_stamp(frame)
        wait_for_answer(labels, stamp, lambda: publisher.publish(frame))

        def answers_to_a_flood(seconds: float = 3.0, rate_hz: float = 20.0) -> int:
            before = len(labels)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                probe.new_stamp(frame)
                publisher.publish(frame)
                time.sleep(1 / rate_hz)
            time.sleep(1.0)  # the last run's answer
            return len(labels) - before

        # A small frame takes well under 0.5 s here: only the rate bounds the answers.
        bounded = answers_to_a_flood()
        assert 2 <= bounded <= 2 * 3 + 2, bounded

        def counters(array) -> dict:
            return next(({v.key: v.value for v in status.values} for status in array.status
                         if status.name.startswith("fbsnet")), {"frames dropped": "0"})

        # The frames above the rate are dropped (replaced while waiting), not "lost in
        # transport": a reliable camera faster than the node is no transport fault.
        report = diagnostics.wait_for(lambda array: int(counters(array)["frames dropped"]) >= 30)
        assert report is not None
        assert counters(report)["frames lost in transport"] == "0"
        assert all(status.level == DiagnosticStatus.OK for status in report.status), report

        result = probe.set_parameter(f"{namespace}/fbsnet", "max_rate_hz", 0.0)
        assert result.successful, result.reason
        unbounded = answers_to_a_flood()
        assert unbounded > 2 * bounded, (bounded, unbounded)
        assert not probe.set_parameter(f"{namespace}/fbsnet", "max_rate_hz", -1.0).successful
    finally:
        node.stop()


@pytest.mark.parametrize("backend", [b for b in available_backends(CPU)
                                     if b.split(":")[0] in ("torch", "openvino", "onnxruntime")
                                     and not b.endswith(":int8")])
def test_inference_threads_bound_torch_and_the_runtime(random_checkpoint, backend):
    threads_before = torch.get_num_threads()
    try:
        segmenter = Segmenter.from_checkpoint(random_checkpoint, device="cpu", backend=backend,
                                              threads=1)
        assert torch.get_num_threads() == 1
        engine = segmenter.backend
        if backend.startswith("openvino"):
            compiled = engine._frame_graphs.get((120, 160)).get_compiled_model()
            assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1
        if backend.startswith("onnxruntime"):
            options = engine.session.get_session_options()
            assert options.intra_op_num_threads == 1
    finally:
        torch.set_num_threads(threads_before)


def test_inference_threads_out_of_range_is_refused(weights_params_file, tmp_path):
    settings = write_params_file(tmp_path / "bad.yaml", {"inference_threads": -1})
    node = NodeProcess(tmp_path / "node.log", [weights_params_file, settings])
    try:
        assert node.wait() != 0
        lines = [line for line in node.output.splitlines() if "inference_threads" in line]
        assert len(lines) == 1, node.output
        assert "Traceback" not in node.output
    finally:
        node.stop()
