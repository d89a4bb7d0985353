"""The `fbsnet-ros` command: each subcommand is a thin layer over library functions.

Exit status: 0 when everything asked for was done; 1 when the run finished but some inputs
failed (each named in a warning, counted in the summary) or nothing could be scored; 2 when
the command could not start: a missing or unusable file, folder or option value, reported in
one line on stderr naming it. Bugs still show a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import contextmanager
from pathlib import Path

from fbsnet_ros.data.locations import CAMVID_BESIDE_PROJECT, default_camvid_root
from fbsnet_ros.errors import InvalidValue, UserError
from fbsnet_ros.ros.names import (
    CAMERA_TOPIC,
    COMPRESSED_SUFFIX,
    GROUND_TRUTH_TOPIC,
    LABELS_TOPIC,
    OVERLAY_TOPIC,
)

EXIT_SOME_FAILED = 1
EXIT_USER_ERROR = 2


@contextmanager
def _invalid_values(option: str = ""):
    """Around a call that only validates (a recipe, a backend name, a start time): its
    ValueError is the user's. Never around work, where a ValueError is a bug."""
    try:
        yield
    except ValueError as error:
        raise InvalidValue(f"{option}: {error}" if option else str(error)) from None


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (like every other user error), exit 2."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def _checked(convert, accept, requirement: str):
    """An argparse type: `convert(text)` (int or float) for which `accept` holds."""
    kind = "whole number" if convert is int else "number"

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value
    return parse


def _count(minimum: int):
    return _checked(int, lambda value: value >= minimum, f"at least {minimum}")


_positive_number = _checked(float, lambda value: 0 < value < float("inf"), "a number > 0")
_fraction = _checked(float, lambda value: 0 <= value <= 1, "within [0, 1]")


def _output_file(option: str, path: str | Path, *, overwrite: bool = True,
                 inputs: tuple = ()) -> Path:
    """A file a command will write: not a folder, not one of its inputs, and (unless
    overwrite) not an existing file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path}: is a folder; give a file name")
    for source in inputs:
        if source is not None and path.exists() and path.resolve() == Path(source).resolve():
            raise UserError(f"{option} {path}: is the input file; give another name")
    if path.exists() and not overwrite:
        raise UserError(f"{option} {path}: already exists; pass --overwrite to replace it")
    return path


def _add_engine_options(parser: argparse.ArgumentParser, default_backend: str = "torch") -> None:
    """--weights, --device, --input-size, --upsample, --backend (scoring commands default to
    the eager fp32 reference; commands that only produce labels to the fastest, auto)."""
    from fbsnet_ros.inference.frames import UPSAMPLE_MODES

    parser.add_argument("--weights", default=None,
                        help="checkpoint file (default: the package's shipped CamVid weights)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="inference size (default: the checkpoint's)")
    parser.add_argument("--upsample", choices=UPSAMPLE_MODES, default="bilinear",
                        help="logits back to frame size (bilinear, accurate) "
                             "or labels (nearest, fast)")
    parser.add_argument("--backend", default=default_backend, metavar="NAME[:PRECISION]",
                        help="inference runtime: torch (eager, the reference), torch-opt, "
                             "onnxruntime, openvino, openvino:bf16, openvino:int8, ... or auto "
                             "(the fastest installed one that passes its accuracy test); "
                             f"default {default_backend}")


def _check_engine_options(args) -> None:
    """Device, input size and backend, checked without loading anything: a typo is reported
    before the weights load and before any file is looked at."""
    from fbsnet_ros.devices import resolve_device
    from fbsnet_ros.inference.backends import AUTO, BACKENDS, BackendSpec
    from fbsnet_ros.inference.engine import check_input_size

    device = resolve_device(args.device)
    if args.input_size is not None:
        check_input_size(args.input_size)
    with _invalid_values("--backend"):
        spec = BackendSpec.parse(args.backend)
    if spec.name != AUTO:
        backend_type = BACKENDS[spec.name]
        backend_type.check(device, spec.precision or backend_type.default_precision(device))


def _segmenter(args):
    from fbsnet_ros.inference import Segmenter

    _check_engine_options(args)
    return Segmenter.from_checkpoint(args.weights, device=args.device,
                                     input_size=args.input_size, upsample=args.upsample,
                                     backend=args.backend)


def _parse_overrides(extra: list[str]) -> dict:
    """`--key value` pairs after the known options become training-config overrides."""
    overrides, index = {}, 0
    while index < len(extra):
        key = extra[index]
        if not key.startswith("--") or index + 1 >= len(extra):
            raise UserError(f"training override {key!r} must be written '--key value'")
        overrides[key[2:].replace("-", "_")] = extra[index + 1]
        index += 2
    return overrides


def cmd_train(args, extra) -> int:
    from fbsnet_ros.devices import resolve_device
    from fbsnet_ros.training.config import load_train_config
    from fbsnet_ros.training.loop import check_runs_here, train

    with _invalid_values():
        config = load_train_config(args.config, _parse_overrides(extra))
        check_runs_here(config, resolve_device(config.device))
    summary = train(config)
    logging.getLogger("fbsnet_ros").info(
        "done: best val mIoU %.2f%% after %d epochs (%.1f min this run), %s",
        100 * summary["best_val_miou"], summary["epochs"], summary["minutes_this_run"],
        summary["checkpoint"])
    return 0


def cmd_evaluate(args, extra) -> int:
    from tqdm import tqdm

    from fbsnet_ros.data.datasets import SegmentationDataset, camvid, read_list_file
    from fbsnet_ros.evaluation.scoring import (
        check_plot_folder,
        format_report,
        report_for,
        score_frames,
        write_plots,
        write_report,
    )

    if args.plots:
        check_plot_folder(args.plots)
    if args.report:
        _output_file("--report", args.report)
    # The frames are found before the weights load: a wrong path fails at once.
    if args.list:
        # Relative entries: against --data-root when given, else the list file's folder.
        pairs = read_list_file(args.list, args.data_root)
    else:
        dataset = camvid(args.data_root or default_camvid_root(), args.split)
    segmenter = _segmenter(args)
    if args.list:
        dataset = SegmentationDataset(pairs, segmenter.class_names, segmenter.metadata.palette)
    if tuple(dataset.class_names) != tuple(segmenter.class_names):
        raise UserError(f"--weights classes {list(segmenter.class_names)} do not match the "
                        f"dataset's {list(dataset.class_names)}")
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    frames = (dataset.load(index) for index in range(count))
    with tqdm(total=count, desc="evaluate", disable=not sys.stderr.isatty()) as progress:
        confusion, scored = score_frames(segmenter, frames, progress,
                                         args.confidence_threshold)
    report = report_for(confusion, segmenter.class_names, scored)
    report["backend"] = segmenter.backend_name
    report["confidence_threshold"] = args.confidence_threshold
    print(f"backend {segmenter.backend_name} on {segmenter.device}")
    print(format_report(report))
    if args.report:
        write_report(report, args.report)
    if args.plots:
        write_plots(confusion.matrix.numpy(), segmenter.class_names, args.plots, scored,
                    title=f"evaluate {Path(args.list).name if args.list else args.split}")
    return 0


def cmd_predict(args, extra) -> int:
    import cv2
    from tqdm import tqdm

    from fbsnet_ros.inference import colorize, overlay
    from fbsnet_ros.inference.predict_files import EXTRA_OUTPUTS, plan_predict, run_predict

    extras = tuple(suffix for option, suffix in EXTRA_OUTPUTS.items() if getattr(args, option))
    _check_engine_options(args)
    plan = plan_predict(args.input, args.output, extras=extras, overwrite=args.overwrite)
    segmenter = _segmenter(args)

    def write(path: Path, image) -> None:
        if not cv2.imwrite(str(path), image):
            raise OSError(f"{path}: could not be written")

    def write_outputs(name: str, image, labels) -> None:
        write(plan.output_dir / f"{name}.png", labels)
        if args.color or args.overlay:
            mask = colorize(labels, segmenter.palette)
            if args.color:
                write(plan.output_dir / f"{name}{EXTRA_OUTPUTS['color']}.png", mask[:, :, ::-1])
            if args.overlay:
                blended = overlay(image, mask, args.alpha)
                write(plan.output_dir / f"{name}{EXTRA_OUTPUTS['overlay']}.png",
                      blended[:, :, ::-1])

    with tqdm(total=len(plan.inputs), desc="predict", unit="file",
              disable=not sys.stderr.isatty()) as progress:
        summary = run_predict(segmenter, plan, write_outputs, progress)
    print(f"backend {segmenter.backend_name} on {segmenter.device}")
    print(summary.line(plan.output_dir))
    return EXIT_SOME_FAILED if summary.failed else 0


def cmd_export(args, extra) -> int:
    from fbsnet_ros.checkpoint import load_model, save_inference_checkpoint

    _output_file("--output", args.output, overwrite=args.overwrite, inputs=(args.weights,))
    model, metadata = load_model(args.weights)
    if args.format == "checkpoint":
        save_inference_checkpoint(model, metadata, args.output)
    elif args.format == "onnx":
        from fbsnet_ros.inference.export import write_onnx

        write_onnx(model, metadata, args.output)
    print(f"wrote {args.output}")
    return 0


def cmd_quantize(args, extra) -> int:
    from fbsnet_ros.checkpoint import load_model, save_inference_checkpoint
    from fbsnet_ros.inference import default_weights_path
    from fbsnet_ros.inference.quantize import add_int8_model

    weights = args.weights or default_weights_path()
    _output_file("--output", args.output, overwrite=args.overwrite, inputs=(weights,))
    data_root = args.data_root or default_camvid_root()
    model, metadata = load_model(weights)
    result = add_int8_model(model, metadata, data_root, calibration_frames=args.calibration_frames,
                            gate_frames=args.gate_frames,
                            progress=logging.getLogger("fbsnet_ros.quantize").info)
    save_inference_checkpoint(model, metadata, args.output)
    verdict = "passed" if result.passed else "FAILED (auto will not choose openvino:int8)"
    print(f"INT8 accuracy gate {verdict}: CamVid val mIoU {result.int8_miou:.2f} % "
          f"(openvino:int8) vs {result.fp32_miou:.2f} % (torch:fp32) on {result.frames} "
          f"frames, drop {result.drop:+.2f} points (at most {result.max_drop})")
    print(f"wrote {args.output}")
    return 0 if result.passed else EXIT_SOME_FAILED


def _frame_size(text: str) -> tuple[int, int]:
    """'HxW' (e.g. 360x480) to (height, width)."""
    height, separator, width = text.lower().partition("x")
    if not separator or not height.isdigit() or not width.isdigit():
        raise argparse.ArgumentTypeError(f"size {text!r} must be written HxW, e.g. 360x480")
    return int(height), int(width)


def _benchmark_model(weights: str | None):
    """The checkpoint's model, or for 'random' (or no shipped weights) a random CamVid FBSNet."""
    from fbsnet_ros.checkpoint import load_model, random_camvid_model
    from fbsnet_ros.inference import default_weights_path

    if weights is None and default_weights_path().is_file():
        weights = str(default_weights_path())
    if weights not in (None, "random"):
        return load_model(weights)
    logging.getLogger("fbsnet_ros").warning("timing a randomly initialised CamVid FBSNet")
    return random_camvid_model()


def cmd_benchmark(args, extra) -> int:
    import json

    from fbsnet_ros.devices import resolve_device
    from fbsnet_ros.evaluation.benchmark import (
        REPORT_FOOTNOTE,
        benchmark_size,
        format_machine,
        format_size,
        report_dict,
    )
    from fbsnet_ros.inference.backends import BackendSpec, available_backends
    from fbsnet_ros.inference.engine import check_input_size

    if args.json:
        _output_file("--json", args.json)
    if args.input_size:
        check_input_size(args.input_size)
    model, metadata = _benchmark_model(args.weights)
    device = resolve_device(args.device)
    backends = args.backends or available_backends(device)
    for option, names in (("--backends", backends), ("--host-pre-post", args.host_pre_post)):
        for name in names:
            with _invalid_values(option):
                BackendSpec.parse(name)
    if any(not name.startswith("openvino") for name in args.host_pre_post):
        raise InvalidValue("--host-pre-post: only openvino backends run pre- and "
                           "post-processing in their graph")
    log = logging.getLogger("fbsnet_ros.benchmark")
    results = []
    print(format_machine(), flush=True)
    for frame_size in args.sizes:
        results.append(benchmark_size(
            model, metadata, backends, frame_size, args.input_size, device=args.device,
            iterations=args.iterations, warmup=args.warmup, upsample=args.upsample,
            data_root=args.data_root or default_camvid_root(), host_pre_post=args.host_pre_post,
            progress=log.info))
        # Each size's table as soon as it is measured: a long sweep interrupted keeps them.
        print(f"\n{format_size(results[-1])}", flush=True)
    print(f"\n{REPORT_FOOTNOTE}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report_dict(results), indent=2) + "\n")
    return 0


def cmd_model_info(args, extra) -> int:
    from fbsnet_ros.evaluation.benchmark import model_complexity
    from fbsnet_ros.model import build_fbsnet, count_parameters

    model = build_fbsnet(num_classes=args.num_classes, variant=args.variant)
    print(f"FBSNet '{args.variant}', {args.num_classes} classes: "
          f"{count_parameters(model):,} parameters")
    for height, width in args.sizes:
        cost = model_complexity(model, (height, width))
        print(f"  {height}x{width}: {cost['macs'] / 1e9:.3f} G multiply-adds, "
              f"{cost['flops'] / 1e9:.3f} GFLOPs (FLOPs = 2 x MACs)")
    return 0


def cmd_bag_eval(args, extra) -> int:
    from tqdm import tqdm

    from fbsnet_ros.evaluation.scoring import check_plot_folder, write_plots, write_report
    from fbsnet_ros.ros.bag_eval import check_bag, evaluate_bag, format_bag_report, nothing_done

    # Every option and the bag before the weights load.
    check_bag(args.bag, args.image_topic, args.gt_topic, args.out_bag)
    if args.plots:
        check_plot_folder(args.plots)
    if args.report:
        _output_file("--report", args.report, inputs=(args.bag,))
    segmenter = _segmenter(args)
    with tqdm(desc="bag-eval", unit="frame", disable=not sys.stderr.isatty()) as progress:
        report, confusion = evaluate_bag(
            segmenter, args.bag, args.image_topic, gt_topic=args.gt_topic, gt_dir=args.gt_dir,
            ignore_label=args.ignore_label, out_bag=args.out_bag, out_storage=args.out_storage,
            overlay_alpha=args.alpha if args.overlay else None, progress=progress)
    print(format_bag_report(report))
    if args.report:
        write_report(report, args.report)
    problem = nothing_done(report)
    if problem:
        logging.getLogger("fbsnet_ros.bag_eval").warning(
            "%s%s", problem, "; no plots written" if args.plots else "")
        return EXIT_SOME_FAILED
    if args.plots:
        write_plots(confusion, segmenter.class_names, args.plots, report["frames_scored"],
                    title=f"bag-eval {Path(args.bag).name} {args.image_topic}")
    return 0


def cmd_bag_from_images(args, extra) -> int:
    import time

    from fbsnet_ros.ros.bag_tools import images_to_bag, parse_start_time

    with _invalid_values("--start-time"):
        start_ns = parse_start_time(args.start_time) if args.start_time else time.time_ns()
    gt_dir = args.gt_dir or (f"{args.out.rstrip('/')}_gt" if args.labels else None)
    summary = images_to_bag(args.images, args.out, args.rate, labels=args.labels, gt_dir=gt_dir,
                            encoding=args.encoding, storage=args.storage, start_ns=start_ns,
                            frame_id=args.frame_id)
    labels = (f" and {summary['labels']} labels on {summary['ground_truth_topic']}"
              if summary["labels"] else "")
    failed = summary["failed"]
    reasons = "; ".join(f"{reason}: {count}" for reason, count in failed.items())
    print(f"wrote {summary['frames']} frames on {summary['camera_topic']}{labels} to "
          f"{summary['bag']} ({summary['storage']}, {args.rate:g} Hz from stamp "
          f"{summary['first_stamp_ns']} ns), {sum(failed.values())} failed"
          + (f" ({reasons})" if failed else ""))
    if summary["gt_dir"]:
        print(f"wrote ground-truth PNGs named <stamp_ns>.png to {summary['gt_dir']}")
    return EXIT_SOME_FAILED if failed else 0


def cmd_bag_play(args, extra) -> int:
    from fbsnet_ros.ros.bag_play import format_play_summary, play_bag

    summary = play_bag(args.bag, rate=args.rate, topics=args.topics, clock_hz=args.clock,
                       record=args.record, record_topics=args.record_topics,
                       record_storage=args.record_storage, wait_s=args.wait,
                       linger_s=args.linger)
    print(format_play_summary(summary))
    return 0


def cmd_demo(args, extra) -> int:
    from fbsnet_ros.ros.demo import run_demo

    height, width = args.size
    return run_demo(weights=args.weights, images=args.images, video=args.video,
                    frames=args.frames, output=args.output, size=(height, width),
                    params_file=args.params_file, backend=args.backend)


def _train_parser(commands) -> None:
    train = commands.add_parser("train", help="train FBSNet from a YAML recipe",
                                description="Train; any '--key value' after the options "
                                            "overrides that key of the recipe.")
    train.add_argument("--config", required=True,
                       help="YAML recipe, e.g. config/train/camvid_cpu.yaml")
    train.set_defaults(handler=cmd_train, accepts_overrides=True)


def _evaluate_parser(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="score a checkpoint on a labelled split")
    _add_engine_options(evaluate)
    evaluate.add_argument("--data-root", default=None,
                          help=f"CamVid folder for --split (default: "
                               f"{CAMVID_BESIDE_PROJECT} beside the project, from any "
                               "folder); with --list, what its relative paths start from "
                               "(default: "
                               "the list file's folder)")
    evaluate.add_argument("--split", default="val", help="CamVid split list <root>/<split>.txt")
    evaluate.add_argument("--list", default=None,
                          help="any 'image label' list file instead (absolute paths or "
                               "relative ones)")
    evaluate.add_argument("--limit", type=_count(1), default=None,
                          help="score the first N frames")
    evaluate.add_argument("--report", default=None, help="write the JSON report here")
    evaluate.add_argument("--plots", default=None, help="write PNG plots to this folder")
    evaluate.add_argument("--confidence-threshold", type=_fraction, default=0.0,
                          help="pixels whose top class probability is below this are "
                               "predicted as no class (as the node's confidence_threshold "
                               "publishes them) and count as wrong; 0 (default) is off")
    evaluate.set_defaults(handler=cmd_evaluate)


def _predict_parser(commands) -> None:
    predict = commands.add_parser(
        "predict", help="label maps for a folder of images, one image or a video",
        description="Writes OUTPUT/<name>.png (uint8 class ids at the input's size) for each "
                    "input; a video's frames become <name>_000000.png, ... Inputs sharing a "
                    "name (x.jpg, x.png) become x_jpg.png and x_png.png. Nothing is written "
                    "over an input; existing outputs only with --overwrite. An unreadable "
                    "input is reported and skipped; exit status 1 if any failed.")
    _add_engine_options(predict, default_backend="auto")
    predict.add_argument("--input", required=True,
                         help="folder of images, one image file, or one video file")
    predict.add_argument("--output", required=True,
                         help="folder for <name>.png label maps (not the input folder)")
    predict.add_argument("--color", action="store_true", help="also write <name>_color.png")
    predict.add_argument("--overlay", action="store_true", help="also write <name>_overlay.png")
    predict.add_argument("--alpha", type=_fraction, default=0.5, help="overlay opacity")
    predict.add_argument("--overwrite", action="store_true",
                         help="replace outputs left by an earlier run (inputs never)")
    predict.set_defaults(handler=cmd_predict)


def _export_parser(commands) -> None:
    export = commands.add_parser("export", help="write an inference checkpoint (or ONNX)")
    export.add_argument("--weights", required=True, help="training or inference checkpoint")
    export.add_argument("--format", choices=("checkpoint", "onnx"), default="checkpoint",
                        help="onnx: input 'image' 1x3xHxW normalised, output 'logits', H and W "
                             "dynamic (multiples of 8); metadata in the file's metadata_props")
    export.add_argument("--output", required=True, help="file to write (not a folder)")
    export.add_argument("--overwrite", action="store_true",
                        help="replace an existing --output (never the --weights file)")
    export.set_defaults(handler=cmd_export)


def _quantize_parser(commands) -> None:
    quantize = commands.add_parser(
        "quantize", help="add an INT8 model (openvino:int8) to a checkpoint, with its accuracy "
                         "gate",
        description="Post-training INT8 quantization (OpenVINO + NNCF) calibrated on CamVid "
                    "train frames; writes a copy of --weights holding the INT8 model and its "
                    "accuracy gate (CamVid val mIoU of openvino:int8 within 0.5 points of eager "
                    "fp32), which backend auto requires. Exit status 1 when the gate fails: the "
                    "file is written, but auto will not choose it.")
    quantize.add_argument("--weights", default=None,
                          help="checkpoint (default: the package's shipped CamVid weights)")
    quantize.add_argument("--output", required=True, help="file to write (not --weights)")
    quantize.add_argument("--overwrite", action="store_true",
                          help="replace an existing --output (never the --weights file)")
    quantize.add_argument("--data-root", default=None,
                          help=f"CamVid folder (default: {CAMVID_BESIDE_PROJECT} beside the "
                               "project)")
    quantize.add_argument("--calibration-frames", type=_count(1), default=None,
                          help="CamVid train frames to calibrate on, spread over the split "
                               "(default: NNCF's 300)")
    quantize.add_argument("--gate-frames", type=_count(1), default=None,
                          help="CamVid val frames the gate scores (default: all)")
    quantize.set_defaults(handler=cmd_quantize)


def _benchmark_parser(commands) -> None:
    from fbsnet_ros.inference.frames import UPSAMPLE_MODES

    benchmark = commands.add_parser(
        "benchmark", help="latency of every backend side by side, params and FLOPs",
        description="Times each backend against eager fp32 (torch:fp32) in one interleaved run "
                    "and prints medians, p99, FPS and the ratio to eager fp32.")
    benchmark.add_argument("--weights", default=None,
                           help="checkpoint (default: the shipped weights; 'random': a random "
                                "CamVid FBSNet)")
    benchmark.add_argument("--backends", nargs="+", default=None, metavar="NAME[:PRECISION]",
                           help="backends to time (default: every one installed here)")
    benchmark.add_argument("--sizes", nargs="+", type=_frame_size, default=[(360, 480)],
                           metavar="HxW", help="camera frame sizes, any (default 360x480)")
    benchmark.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                           help="fixed network input (default: each frame size rounded to a "
                                "multiple of 8)")
    benchmark.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    benchmark.add_argument("--upsample", choices=UPSAMPLE_MODES, default="bilinear")
    benchmark.add_argument("--iterations", type=_count(1), default=30,
                           help="timed calls per backend")
    benchmark.add_argument("--warmup", type=_count(0), default=3,
                           help="untimed calls per backend")
    benchmark.add_argument("--data-root", default=None,
                           help=f"CamVid frames to time on (default: "
                                f"{CAMVID_BESIDE_PROJECT} beside the project; random frames "
                                "when absent)")
    benchmark.add_argument("--host-pre-post", nargs="+", default=[], metavar="NAME[:PRECISION]",
                           help="also time these OpenVINO backends as they ran before issue 15: "
                                "pre- and post-processing on the host, outside their graph, and "
                                "the network with its channel shuffles; e.g. openvino:bf16")
    benchmark.add_argument("--json", default=None, help="also write the results here")
    benchmark.set_defaults(handler=cmd_benchmark)


def _bag_eval_parser(commands) -> None:
    from fbsnet_ros.data.classes import IGNORE_INDEX

    bag_eval = commands.add_parser(
        "bag-eval", help="segment and score every camera frame of a rosbag2 bag",
        description="Run every frame of an Image or CompressedImage topic (sqlite3 or mcap "
                    "bag) through the model, score it against ground truth matched by header "
                    "stamp, and optionally write the labels back as a bag.")
    bag_eval.add_argument("--bag", required=True, help="rosbag2 bag folder (or .db3/.mcap file)")
    bag_eval.add_argument("--image-topic", required=True,
                          help=f"sensor_msgs/Image or CompressedImage topic, e.g. {CAMERA_TOPIC}")
    truth = bag_eval.add_mutually_exclusive_group()
    truth.add_argument("--gt-topic", default=None,
                       help=f"mono8 label topic in the same bag, e.g. {GROUND_TRUTH_TOPIC}")
    truth.add_argument("--gt-dir", default=None,
                       help="folder of label PNGs named <header stamp in ns>.png")
    bag_eval.add_argument("--ignore-label", type=int, default=IGNORE_INDEX,
                          help=f"ground-truth id left out of the metrics (default "
                               f"{IGNORE_INDEX}; ids past the class list always are)")
    _add_engine_options(bag_eval)
    bag_eval.add_argument("--out-bag", default=None,
                          help=f"write {LABELS_TOPIC} (mono8, each frame's header) to this new "
                               "bag")
    bag_eval.add_argument("--out-storage", choices=("sqlite3", "mcap"), default=None,
                          help="storage of --out-bag (default: the input's)")
    bag_eval.add_argument("--overlay", action="store_true",
                          help=f"also write {OVERLAY_TOPIC} to --out-bag")
    bag_eval.add_argument("--alpha", type=_fraction, default=0.5, help="overlay opacity")
    bag_eval.add_argument("--report", default=None, help="write the JSON report here")
    bag_eval.add_argument("--plots", default=None, help="write PNG plots to this folder")
    bag_eval.set_defaults(handler=cmd_bag_eval)


def _bag_from_images_parser(commands) -> None:
    from_images = commands.add_parser(
        "bag-from-images", help="build a camera bag from a folder of frames",
        description=f"Frames in name order become {CAMERA_TOPIC} (or "
                    f"{CAMERA_TOPIC}{COMPRESSED_SUFFIX} for jpeg/png), stamped 1/rate apart; "
                    f"labels of the same name become {GROUND_TRUTH_TOPIC} (mono8).")
    from_images.add_argument("--images", required=True, help="folder of frames")
    from_images.add_argument("--labels", default=None,
                             help="folder of label PNGs named like the frames")
    from_images.add_argument("--out", required=True, help="new bag folder")
    from_images.add_argument("--rate", type=_positive_number, required=True,
                             help="frame rate in Hz")
    from_images.add_argument("--encoding", choices=("rgb8", "bgr8", "jpeg", "png"),
                             default="rgb8", help="Image encoding, or CompressedImage codec")
    from_images.add_argument("--storage", choices=("sqlite3", "mcap"), default="mcap")
    from_images.add_argument("--start-time", default=None,
                             help="first stamp, seconds since the epoch (default: now)")
    from_images.add_argument("--frame-id", default="camera", help="header frame_id")
    from_images.add_argument("--gt-dir", default=None,
                             help="with --labels, also write <stamp_ns>.png here "
                                  "(default: <out>_gt; files there are never replaced)")
    from_images.set_defaults(handler=cmd_bag_from_images)


def _bag_play_parser(commands) -> None:
    bag_play = commands.add_parser(
        "bag-play", help="replay a bag over DDS (and record the node's answers)",
        description="Publish a rosbag2 bag's topics at their recorded rate (times --rate), "
                    "optionally with /clock, and record the node's outputs to a new bag: "
                    "`ros2 bag play` and `ros2 bag record` for machines without them.")
    bag_play.add_argument("--bag", required=True, help="rosbag2 bag folder (or .db3/.mcap file)")
    bag_play.add_argument("--rate", type=_positive_number, default=1.0,
                          help="playback speed, a multiple of the recorded rate")
    bag_play.add_argument("--topics", nargs="+", default=None,
                          help="play only these topics (default: all)")
    # 40 Hz: what `ros2 bag play --clock` uses unless told otherwise.
    bag_play.add_argument("--clock", type=_positive_number, nargs="?", const=40.0, default=None,
                          metavar="HZ", help="publish the bag's time on /clock (default 40 Hz) "
                                             "for nodes with use_sim_time")
    bag_play.add_argument("--record", default=None,
                          help="record --record-topics to this new bag while playing")
    bag_play.add_argument("--record-topics", nargs="+", default=[LABELS_TOPIC],
                          help=f"topics to record (default: {LABELS_TOPIC})")
    bag_play.add_argument("--record-storage", choices=("sqlite3", "mcap"), default=None,
                          help="storage of --record (default: the played bag's)")
    bag_play.add_argument("--wait", type=float, default=5.0,
                          help="seconds to wait for subscribers (and recorded topics' "
                               "publishers) before playing")
    bag_play.add_argument("--linger", type=float, default=2.0,
                          help="seconds to keep recording after the last message")
    bag_play.set_defaults(handler=cmd_bag_play)


def _model_info_parser(commands) -> None:
    model_info = commands.add_parser("model-info", help="parameters and multiply-adds")
    model_info.add_argument("--variant", default="authors", help="authors or paper-table1")
    model_info.add_argument("--num-classes", type=int, default=19)
    model_info.add_argument("--sizes", nargs="+", type=_frame_size,
                            default=[(360, 480), (512, 1024)], metavar="HxW")
    model_info.set_defaults(handler=cmd_model_info)


def _demo_parser(commands) -> None:
    demo = commands.add_parser("demo", help="the node over DDS on a synthetic road scene")
    demo.add_argument("--weights", default=None, help="checkpoint (default: shipped weights)")
    source = demo.add_mutually_exclusive_group()
    source.add_argument("--images", default=None, help="play a folder of images instead")
    source.add_argument("--video", default=None, help="play a video file instead")
    demo.add_argument("--frames", type=int, default=30, help="stop after this many frames")
    demo.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=(360, 480),
                      help="synthetic frame size")
    demo.add_argument("--output", default="demo_output", help="folder for overlay/label PNGs")
    demo.add_argument("--params-file", default=None,
                      help="node parameters (default: config/segmentation.yaml)")
    demo.add_argument("--backend", default="auto", metavar="NAME[:PRECISION]",
                      help="the node's inference backend, over --params-file's (default auto: "
                           "the fastest that passes its accuracy test)")
    demo.set_defaults(handler=cmd_demo)


# One function per subcommand, in the order `fbsnet-ros --help` lists them.
SUBCOMMAND_PARSERS = (
    _train_parser, _evaluate_parser, _predict_parser, _export_parser, _quantize_parser,
    _benchmark_parser, _bag_eval_parser, _bag_from_images_parser, _bag_play_parser,
    _model_info_parser, _demo_parser,
)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="fbsnet-ros", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    for add_parser in SUBCOMMAND_PARSERS:
        add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    # Only UserError and its subclasses are the user's to fix (one line, exit 2); anything
    # else is a bug and keeps its traceback.
    try:
        return args.handler(args, extra)
    except UserError as error:
        print(f"fbsnet-ros {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
