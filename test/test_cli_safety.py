"""The command-line tools as a user meets them (issue 16): run as `fbsnet-ros` subprocesses,
they never write over the user's files, finish what they can, and fail in one line.

Exit statuses: 0 all done, 1 finished but some inputs failed (or nothing could be scored),
2 a user error, reported as one line on stderr naming the file or option.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fbsnet_ros.cli import EXIT_SOME_FAILED, EXIT_USER_ERROR

FBSNET_ROS = str(Path(sys.executable).with_name("fbsnet-ros"))
# One torch thread: the CI machine is small and shared, and these models are tiny.
THREADS = {"OMP_NUM_THREADS": "1"}
FRAME_SIZE = (48, 64)  # height, width of the test images: quick to segment


def fbsnet_ros(*argv, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([FBSNET_ROS, *map(str, argv)], capture_output=True, text=True,
                          timeout=300, check=False, cwd=cwd,
                          env={**os.environ, **THREADS})  # as now: the run's artefact cache


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one line a user error prints; fails the test when there is more (or a traceback)."""
    assert result.returncode == EXIT_USER_ERROR, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (name -> SHA-256): what must not change."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def scene(seed: int) -> np.ndarray:
    """A small BGR image (what cv2.imwrite takes) with some structure to segment."""
    generator = np.random.default_rng(seed)
    image = np.zeros((*FRAME_SIZE, 3), np.uint8)
    image[: FRAME_SIZE[0] // 2] = (200, 160, 120)  # sky-ish
    image[FRAME_SIZE[0] // 2:] = generator.integers(60, 120, 3)
    return image


@pytest.fixture
def photos(tmp_path) -> Path:
    """A user's folder: a.png, x.jpg and x.png (one stem), z.png, a truncated PNG, a note."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed, name in enumerate(("a.png", "x.jpg", "x.png", "z.png")):
        cv2.imwrite(str(folder / name), scene(seed))
    (folder / "broken.png").write_bytes((folder / "a.png").read_bytes()[:200])
    (folder / "notes.txt").write_text("shot on the ring road\n")
    return folder


# --- 1, 3: never over the user's files; unique output names ---------------------------------

def test_predict_refuses_to_write_into_its_input_folder(photos, random_checkpoint):
    before = snapshot(photos)
    line = error_line(fbsnet_ros("predict", "--weights", random_checkpoint, "--input", photos,
                                 "--output", photos))
    assert f"--output {photos}" in line and "input" in line
    single = error_line(fbsnet_ros("predict", "--weights", random_checkpoint,
                                   "--input", photos / "a.png", "--output", photos,
                                   "--overwrite"))
    assert f"--output {photos}" in single
    assert snapshot(photos) == before


def test_predict_folder_finishes_past_a_broken_image_with_distinct_names(photos,
                                                                         random_checkpoint,
                                                                         tmp_path):
    before = snapshot(photos)
    out = tmp_path / "labels"
    result = fbsnet_ros("predict", "--weights", random_checkpoint, "--input", photos,
                        "--output", out, "--color")
    assert result.returncode == EXIT_SOME_FAILED, result.stderr
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and f"{photos / 'broken.png'}" in warnings[0]
    # The images after the broken one (x.*, z.png) were written too, x.jpg and x.png apart.
    written = sorted(path.name for path in out.iterdir())
    assert written == ["a.png", "a_color.png", "x_jpg.png", "x_jpg_color.png", "x_png.png",
                       "x_png_color.png", "z.png", "z_color.png"]
    assert cv2.imread(str(out / "x_jpg.png"), cv2.IMREAD_UNCHANGED).shape == FRAME_SIZE
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"4 label maps written to {out}")
    assert "1 skipped (not an image: 1)" in summary and "1 failed" in summary
    assert snapshot(photos) == before


def test_predict_replaces_earlier_outputs_only_with_overwrite(photos, random_checkpoint,
                                                              tmp_path):
    (photos / "broken.png").unlink()
    out = tmp_path / "labels"
    assert fbsnet_ros("predict", "--weights", random_checkpoint, "--input", photos,
                      "--output", out).returncode == 0
    (out / "z.png").write_bytes(b"the user's own z.png")
    earlier = snapshot(out)
    line = error_line(fbsnet_ros("predict", "--weights", random_checkpoint, "--input", photos,
                                 "--output", out))
    assert f"--output {out}" in line and "--overwrite" in line
    assert snapshot(out) == earlier
    result = fbsnet_ros("predict", "--weights", random_checkpoint, "--input", photos,
                        "--output", out, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert cv2.imread(str(out / "z.png"), cv2.IMREAD_UNCHANGED).shape == FRAME_SIZE


# --- 9: one image, one video, progress and summary -----------------------------------------

def test_predict_takes_one_image_or_one_video(photos, random_checkpoint, tmp_path):
    result = fbsnet_ros("predict", "--weights", random_checkpoint, "--input",
                        photos / "z.png", "--output", tmp_path / "one")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(
        f"1 label map written to {tmp_path / 'one'}, 0 skipped, 0 failed")
    assert [path.name for path in (tmp_path / "one").iterdir()] == ["z.png"]

    video = tmp_path / "drive.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0,
                             (FRAME_SIZE[1], FRAME_SIZE[0]))
    for seed in range(3):
        writer.write(scene(seed))
    writer.release()
    result = fbsnet_ros("predict", "--weights", random_checkpoint, "--input", video,
                        "--output", tmp_path / "frames")
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in (tmp_path / "frames").iterdir()) == [
        "drive_000000.png", "drive_000001.png", "drive_000002.png"]

    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    result = fbsnet_ros("predict", "--weights", random_checkpoint, "--input", not_a_video,
                        "--output", tmp_path / "none")
    assert result.returncode == EXIT_USER_ERROR
    assert f"--input {not_a_video}" in result.stderr.strip().splitlines()[-1]


# --- 4: one line, exit 2, nothing touched ---------------------------------------------------

def test_output_options_naming_the_wrong_thing_fail_in_one_line(photos, random_checkpoint,
                                                                tmp_path):
    existing_file = tmp_path / "existing.txt"
    existing_file.write_text("keep me\n")
    folder = tmp_path / "a_folder"
    folder.mkdir()
    weights = tmp_path / "weights.pt"
    weights.write_bytes(random_checkpoint.read_bytes())
    before = {**snapshot(tmp_path)}
    cases = {
        "predict --output file": (
            ["predict", "--weights", weights, "--input", photos, "--output", existing_file],
            f"--output {existing_file}"),
        "evaluate --plots file": (
            ["evaluate", "--weights", weights, "--plots", existing_file],
            f"--plots {existing_file}"),
        "evaluate --limit 0": (["evaluate", "--limit", "0"], "--limit"),
        "evaluate --limit -3": (["evaluate", "--limit", "-3"], "--limit"),
        "export --output folder": (
            ["export", "--weights", weights, "--output", folder], f"--output {folder}"),
        "export over its weights": (
            ["export", "--weights", weights, "--output", weights, "--overwrite"],
            f"--output {weights}"),
        "benchmark --iterations 0": (["benchmark", "--iterations", "0"], "--iterations"),
    }
    for name, (argv, expected) in cases.items():
        line = error_line(fbsnet_ros(*argv))
        assert expected in line, (name, line)
        assert line.startswith(f"fbsnet-ros {argv[0]}: error: "), (name, line)
    assert snapshot(tmp_path) == before


def test_export_refuses_an_existing_output_unless_told(random_checkpoint, tmp_path):
    output = tmp_path / "exported.pt"
    output.write_bytes(b"an older export")
    line = error_line(fbsnet_ros("export", "--weights", random_checkpoint, "--output", output))
    assert f"--output {output}" in line and "--overwrite" in line
    assert output.read_bytes() == b"an older export"
    assert fbsnet_ros("export", "--weights", random_checkpoint, "--output", output,
                      "--overwrite").returncode == 0
    assert output.read_bytes() != b"an older export"


# --- 5: "not a checkpoint" is not "a checkpoint that holds code" ----------------------------

def test_a_file_that_is_no_checkpoint_is_named_as_such(photos, tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n")
    jpeg = tmp_path / "photo.pt"
    jpeg.write_bytes((photos / "x.jpg").read_bytes())
    for weights, what in ((text, "text file"), (jpeg, "image")):
        line = error_line(fbsnet_ros("export", "--weights", weights,
                                     "--output", tmp_path / "out.pt"))
        assert f"{weights}: not a PyTorch checkpoint" in line and what in line, line
        assert "weights_only" not in line and "could run code" not in line


class RunsCode:
    """Unpickling this would call print: a checkpoint that holds code."""

    def __reduce__(self):
        return (print, ("ran",))


def test_checkpoint_messages_tell_the_cases_apart(random_checkpoint, tmp_path):
    import torch

    from fbsnet_ros.checkpoint import CheckpointError, safe_load

    holds_code = tmp_path / "holds_code.pt"
    torch.save({"state_dict": {"weight": RunsCode()}, "metadata": {}}, holds_code)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(random_checkpoint.read_bytes()[:4096])
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    expected = {holds_code: "refused, the checkpoint holds pickled Python objects",
                truncated: "damaged or truncated checkpoint",
                empty: "not a PyTorch checkpoint (the file is empty)"}
    for path, message in expected.items():
        with pytest.raises(CheckpointError) as caught:
            safe_load(path)
        text = str(caught.value)
        assert text.startswith(f"{path}: {message}"), text
        assert "\n" not in text and "weights_only" not in text and "Re-running" not in text


# --- 6: paths -------------------------------------------------------------------------------

def test_evaluate_reads_absolute_list_paths_and_finds_camvid_from_any_folder(
        camvid_root, random_checkpoint, tmp_path):
    first = (camvid_root / "val.txt").read_text().splitlines()[0].split()
    listing = tmp_path / "absolute.txt"
    listing.write_text(f"{camvid_root / first[0]} {camvid_root / first[1]}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = fbsnet_ros("evaluate", "--weights", random_checkpoint, "--list", listing,
                        cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert "(1 frames)" in result.stdout
    result = fbsnet_ros("evaluate", "--weights", random_checkpoint, "--split", "val",
                        "--limit", "1", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert "(1 frames)" in result.stdout


# --- 2, 7, 8: bags --------------------------------------------------------------------------

def test_bag_from_images_leaves_out_a_broken_frame_and_bag_eval_warns_without_truth(
        photos, random_checkpoint, tmp_path):
    from bag_helpers import read_topic, stamp_ns

    from fbsnet_ros.ros.names import CAMERA_TOPIC

    (photos / "x.jpg").unlink()
    bag = tmp_path / "bag"
    result = fbsnet_ros("bag-from-images", "--images", photos, "--out", bag, "--rate", "5",
                        "--start-time", "1")
    assert result.returncode == EXIT_SOME_FAILED, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and f"{photos / 'broken.png'}" in warnings[0]
    assert "wrote 3 frames" in result.stdout and "1 failed" in result.stdout
    # a.png, [broken.png], x.png, z.png: the broken frame's slot stays empty.
    stamps = [stamp_ns(message) for _, message in read_topic(bag, CAMERA_TOPIC)]
    assert stamps == [1_000_000_000, 1_400_000_000, 1_600_000_000]

    empty_truth = tmp_path / "truth"
    empty_truth.mkdir()
    plots = tmp_path / "plots"
    result = fbsnet_ros("bag-eval", "--bag", bag, "--image-topic", CAMERA_TOPIC,
                        "--weights", random_checkpoint, "--gt-dir", empty_truth,
                        "--plots", plots)
    assert result.returncode == EXIT_SOME_FAILED, result.stderr
    assert "no frame was scored" in result.stderr
    assert "not writable" not in result.stderr  # rgb8 frames are read-only buffers
    assert not plots.exists()


def test_bag_from_images_never_writes_over_ground_truth_files(tmp_path):
    images, labels, truth = tmp_path / "images", tmp_path / "labels", tmp_path / "truth"
    for folder in (images, labels, truth):
        folder.mkdir()
    cv2.imwrite(str(images / "f0.png"), scene(0))
    cv2.imwrite(str(labels / "f0.png"), np.zeros(FRAME_SIZE, np.uint8))
    (truth / "1000000000.png").write_bytes(b"someone's label")
    line = error_line(fbsnet_ros("bag-from-images", "--images", images, "--labels", labels,
                                 "--gt-dir", truth, "--out", tmp_path / "bag", "--rate", "5",
                                 "--start-time", "1"))
    assert f"{truth}" in line and "already" in line
    assert (truth / "1000000000.png").read_bytes() == b"someone's label"
    assert not (tmp_path / "bag").exists()


# --- 8: benchmark, engine -------------------------------------------------------------------

def test_benchmark_times_any_frame_size_and_prints_each_table_once(random_checkpoint,
                                                                   tmp_path):
    result = fbsnet_ros("benchmark", "--weights", random_checkpoint, "--device", "cpu",
                        "--backends", "torch", "--sizes", "100x100", "--iterations", "1",
                        "--warmup", "0", "--data-root", tmp_path)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert output.count("frames 100x100, network input 96x96") == 1, output
    # The header says what the figures were timed under: torch took OMP_NUM_THREADS=1.
    (machine,) = [line for line in result.stdout.splitlines() if line.startswith("machine:")]
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    assert f"(1 threads; OMP_NUM_THREADS=1, OMP_WAIT_POLICY={wait_policy})" in machine


def test_segmenter_names_an_empty_frame(random_checkpoint):
    from fbsnet_ros.inference import Segmenter

    segmenter = Segmenter.from_checkpoint(random_checkpoint, device="cpu")
    with pytest.raises(ValueError, match="empty"):
        segmenter.predict(np.zeros((0, 64, 3), np.uint8))


# --- the user-error path: one class, and bugs keep their traceback --------------------------

def test_a_bug_keeps_its_traceback(monkeypatch):
    from fbsnet_ros import cli

    def broken(args, extra):
        raise ValueError("a bug, not the user's mistake")

    monkeypatch.setattr(cli, "cmd_model_info", broken)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["model-info"])


# --- 10: plots people can read --------------------------------------------------------------

def test_plots_carry_the_score_the_numbers_and_absent_classes(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from fbsnet_ros.errors import UserError
    from fbsnet_ros.evaluation.scoring import confusion_figure, iou_figure, plot_title, write_plots

    names = ["road", "car", "tree", "boat"]
    # Rows ground truth, columns prediction. "car" is predicted but never in the ground truth
    # (IoU 0); "boat" is in neither (no IoU, left out of the mean).
    matrix = np.array([[8, 2, 0, 0], [0, 0, 0, 0], [1, 0, 9, 0], [0, 0, 0, 0]])
    title = plot_title(matrix, 3, "val")
    assert title == f"val: mIoU {(100 * 8 / 11 + 0 + 90) / 3:.2f} % over 3 frames"

    confusion = confusion_figure(matrix, names, title)
    cells = [text.get_text() for text in confusion.axes[0].texts]
    assert sorted(cells) == sorted(["80", "20", "10", "90"] + ["absent from the ground truth"] * 2)
    assert confusion.axes[0].get_title().startswith(title)

    bars = iou_figure(matrix, names, title)
    labels = [text.get_text() for text in bars.axes[0].texts]
    assert labels == [f"{100 * 8 / 11:.1f}", "0.0", "90.0", "absent"]
    assert bars.axes[0].get_title().startswith(title)

    not_a_folder = tmp_path / "plots"
    not_a_folder.write_text("keep")
    with pytest.raises(UserError, match=f"--plots {not_a_folder}"):
        write_plots(matrix, names, not_a_folder, 3)
    assert not_a_folder.read_text() == "keep"
