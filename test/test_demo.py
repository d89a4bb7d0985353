"""`fbsnet-ros demo` as a user runs it: the real node in its own process, a few frames."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
FBSNET_ROS = Path(sys.executable).with_name("fbsnet-ros")
FRAMES = 3


def run_demo(*arguments: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(FBSNET_ROS), "demo", *arguments], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_demo_answers_every_frame_and_writes_them(tmp_path):
    output = tmp_path / "demo_output"
    completed = run_demo("--frames", str(FRAMES), "--output", str(output))

    assert completed.returncode == 0, completed.stdout + completed.stderr
    frame_lines = [line for line in completed.stdout.splitlines() if line.startswith("frame ")]
    assert len(frame_lines) == FRAMES, completed.stdout
    # Sizes read height x width, as everywhere else (the synthetic scene is 360x480).
    assert all(re.match(rf"frame \d/{FRAMES}: 360x480,", line) for line in frame_lines)
    for index in range(FRAMES):
        assert (output / f"frame_{index:04d}_overlay.png").is_file()
        assert (output / f"frame_{index:04d}_labels.png").is_file()


def test_demo_refuses_a_file_that_is_no_video_in_one_line(tmp_path):
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("these are not frames")

    completed = run_demo("--video", str(not_a_video), "--output", str(tmp_path / "out"),
                         timeout=120)

    assert completed.returncode != 0
    assert completed.stderr.strip().count("\n") == 0 and str(not_a_video) in completed.stderr
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "out").exists()
