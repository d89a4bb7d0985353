"""`fbsnet-ros predict` over files: which inputs, which output names, and never over a file
the user already has.

Everything that can be checked is checked before the first file is written: an output folder
that is the input folder, an output that would replace an input, existing outputs (replaced
only when asked), two inputs that would share an output name. Then each input is segmented on
its own: one that cannot be read is reported, counted and skipped, and the run goes on.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fbsnet_ros.data.frame_sources import VIDEO_SUFFIXES, video_frames
from fbsnet_ros.data.io import IMAGE_SUFFIXES, DatasetError, read_rgb
from fbsnet_ros.errors import UserError

log = logging.getLogger("fbsnet_ros.predict")

# What each input produces, besides <name>.png: option -> file name suffix.
EXTRA_OUTPUTS = {"color": "_color", "overlay": "_overlay"}
# Frames of a video become <video stem>_<frame index>.png, the index zero-padded to this width.
FRAME_INDEX_DIGITS = 6
# Existing files a run would replace are named in the error, up to this many.
NAMES_SHOWN = 3


@dataclass
class PredictInput:
    path: Path
    name: str  # output stem: <name>.png, <name>_color.png, ...
    is_video: bool = False


@dataclass
class PredictPlan:
    inputs: list[PredictInput]
    output_dir: Path
    extras: tuple[str, ...]  # file name suffixes beyond the label map, e.g. ("_color",)
    skipped: dict[str, str] = field(default_factory=dict)  # file name -> why it is not an input
    single_file: bool = False  # --input named one file: if it fails, nothing was done


@dataclass
class PredictSummary:
    written: int = 0  # label maps (one per image, one per video frame)
    skipped: Counter = field(default_factory=Counter)  # reason -> files in the folder left alone
    failed: Counter = field(default_factory=Counter)  # reason -> inputs that could not be done

    def line(self, output_dir: Path) -> str:
        """'3 label maps written to out, 1 skipped (not an image: 1), 1 failed (...: 1)'."""
        plural = "" if self.written == 1 else "s"
        return (f"{self.written} label map{plural} written to {output_dir}, "
                f"{_counted(self.skipped, 'skipped')}, {_counted(self.failed, 'failed')}")


def _counted(reasons: Counter, what: str) -> str:
    total = sum(reasons.values())
    if not total:
        return f"0 {what}"
    return f"{total} {what} ({'; '.join(f'{reason}: {n}' for reason, n in reasons.items())})"


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None


def collect_inputs(input_path: str | Path) -> tuple[list[Path], dict[str, str]]:
    """The images (or one image or video) to segment, and the files of a folder left alone."""
    input_path = Path(input_path)
    if input_path.is_file():
        if _kind(input_path) is None:
            raise UserError(f"--input {input_path}: not an image "
                            f"({'/'.join(sorted(IMAGE_SUFFIXES))}) or a video "
                            f"({'/'.join(sorted(VIDEO_SUFFIXES))})")
        return [input_path], {}
    if not input_path.is_dir():
        raise UserError(f"--input {input_path}: no such file or folder")
    images, skipped = [], {}
    for path in sorted(input_path.iterdir()):
        if path.name.startswith(".") or path.is_dir():
            continue  # hidden files and subfolders are not the user's frames
        if _kind(path) == "image":
            images.append(path)
        else:
            skipped[path.name] = "not an image"
    if not images:
        raise UserError(f"--input {input_path}: no {'/'.join(sorted(IMAGE_SUFFIXES))} images")
    return images, skipped


def output_names(paths: list[Path]) -> dict[Path, str]:
    """Each input's output stem: its own stem, or stem_<extension> where several inputs share
    a stem (x.jpg and x.png become x_jpg and x_png, so neither overwrites the other)."""
    stems = Counter(path.stem.casefold() for path in paths)
    names = {}
    for path in paths:
        shared = stems[path.stem.casefold()] > 1
        names[path] = f"{path.stem}_{path.suffix[1:].lower()}" if shared else path.stem
    return names


def plan_predict(input_path: str | Path, output_dir: str | Path, *, extras: tuple[str, ...] = (),
                 overwrite: bool = False) -> PredictPlan:
    """Inputs and output names, refusing (UserError) anything that would destroy a file."""
    output_dir = Path(output_dir)
    paths, skipped = collect_inputs(input_path)
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"--output {output_dir}: exists and is not a folder")
    input_folder = Path(input_path) if Path(input_path).is_dir() else Path(input_path).parent
    if output_dir.resolve() == input_folder.resolve():
        raise UserError(f"--output {output_dir}: is the input's folder; label maps would be "
                        f"written among (and over) the images, give another folder")
    names = output_names(paths)
    plan = PredictPlan(
        inputs=[PredictInput(path, names[path], _kind(path) == "video") for path in paths],
        output_dir=output_dir, extras=extras, skipped=skipped,
        single_file=Path(input_path).is_file())
    planned = planned_outputs(plan)
    inputs = {path.resolve() for path in paths}
    for output, sources in planned.items():
        if len(sources) > 1:
            raise UserError(f"inputs {' and '.join(map(str, sources))} would both be written "
                            f"to {output}; rename one of them")
        if output.resolve() in inputs:
            raise UserError(f"--output {output_dir}: the label map of {sources[0]} would "
                            f"replace the input {output}")
    existing = [output for output in planned if output.exists()]
    existing += _existing_video_frames(plan)
    if existing and not overwrite:
        shown = ", ".join(path.name for path in existing[:NAMES_SHOWN])
        more = f" and {len(existing) - NAMES_SHOWN} more" if len(existing) > NAMES_SHOWN else ""
        raise UserError(f"--output {output_dir}: {len(existing)} output file(s) already exist "
                        f"({shown}{more}); pass --overwrite to replace them")
    return plan


def planned_outputs(plan: PredictPlan) -> dict[Path, list[Path]]:
    """Output file -> the inputs that would write it, for images (a video's frame count is
    not known before it is read)."""
    outputs: dict[Path, list[Path]] = {}
    for entry in plan.inputs:
        if entry.is_video:
            continue
        for suffix in ("", *plan.extras):
            outputs.setdefault(plan.output_dir / f"{entry.name}{suffix}.png", []).append(
                entry.path)
    return outputs


def _existing_video_frames(plan: PredictPlan) -> list[Path]:
    if not plan.output_dir.is_dir():
        return []
    existing = []
    for entry in plan.inputs:
        if entry.is_video:
            pattern = re.compile(rf"{re.escape(entry.name)}_\d{{{FRAME_INDEX_DIGITS}}}"
                                 rf"({'|'.join(map(re.escape, plan.extras))})?\.png")
            existing += sorted(path for path in plan.output_dir.iterdir()
                               if pattern.fullmatch(path.name))
    return existing


def frames_of(entry: PredictInput) -> Iterator[tuple[str, np.ndarray]]:
    """(output stem, RGB frame) for an image, or for every frame of a video."""
    if not entry.is_video:
        yield entry.name, read_rgb(entry.path)
        return
    count = 0
    for count, frame in enumerate(video_frames(entry.path), start=1):
        yield f"{entry.name}_{count - 1:0{FRAME_INDEX_DIGITS}d}", frame
    if count == 0:
        raise DatasetError(f"{entry.path}: no frame could be read (not a video?)")


def run_predict(segmenter, plan: PredictPlan, write_outputs, progress=None) -> PredictSummary:
    """Segment every input and hand (stem, image, labels) to `write_outputs`; an input that
    fails is logged with its reason, counted, and the run goes on."""
    summary = PredictSummary(skipped=Counter(plan.skipped.values()))
    try:
        plan.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--output {plan.output_dir}: cannot create the folder "
                        f"({error.strerror})") from None
    for entry in plan.inputs:
        try:
            for name, image in frames_of(entry):
                write_outputs(name, image, segmenter.predict(image))
                summary.written += 1
        except (DatasetError, OSError) as error:
            if plan.single_file and not summary.written:
                raise UserError(f"--input {error}") from None
            reason = str(error).removeprefix(f"{entry.path}: ")
            log.warning("%s: %s", entry.path, reason)
            summary.failed[reason] += 1
        if progress is not None:
            progress.update(1)
    return summary
