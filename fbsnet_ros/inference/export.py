"""ONNX export with dynamic height and width, kept in the artefact cache the runtimes read."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from fbsnet_ros.checkpoint import ModelMetadata, atomic_write
from fbsnet_ros.inference.artefacts import cache_dir, entry_name, runtime_versions
from fbsnet_ros.inference.fusion import inference_network
from fbsnet_ros.model import OUTPUT_STRIDE

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
# Bumped when the exported graph changes for the same weights, so stale cache entries are not used.
# 2: the batch dimension is dynamic too (several cameras in one run).
# 3: the channel shuffles are folded into the weights (fusion.without_channel_shuffles).
# 4: the classifier is a 1x1 conv and a pixel shuffle (fusion.PixelShuffleClassifier).
EXPORT_FORMAT = 4
# Tracing size: any multiple of the output stride works, small keeps the export quick.
TRACE_SIZE = (96, 128)


def export_onnx(model: nn.Module, path: str | Path, metadata: ModelMetadata | None = None, *,
                rewritten: bool = True) -> Path:
    """Write `model` as ONNX: input 'image' Nx3xHxW float32 normalised, output 'logits' NxKxHxW.

    N, H and W are dynamic (H and W any multiple of 8). The checkpoint's metadata (class names,
    palette, mean, std, input size) goes into the file's metadata_props as JSON, so a runtime
    without fbsnet_ros can still pre-process frames the same way. The graph is
    fusion.inference_network's (no channel shuffles, the classifier as a 1x1 conv and a pixel
    shuffle: same logits to float rounding, faster in OpenVINO); `rewritten=False` exports the
    checkpoint's network as it is, as before (benchmark baselines).
    """
    model = (inference_network(model) if rewritten
             else copy.deepcopy(model).eval()).to(device="cpu", dtype=torch.float32)
    height_blocks = torch.export.Dim("height_blocks", min=1, max=1024)
    width_blocks = torch.export.Dim("width_blocks", min=1, max=1024)
    batch = torch.export.Dim("batch", min=1, max=64)
    # Two frames: the exporter would fix a dimension traced at size 1.
    example = torch.zeros(2, 3, *TRACE_SIZE)
    # The exporter prints its progress, logs every graph pass and warns about torchvision ops
    # FBSNet never uses: none of it is news to a user.
    with _quiet_exporter():
        program = torch.onnx.export(
            model, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes={"image": {0: batch, 2: OUTPUT_STRIDE * height_blocks,
                                      3: OUTPUT_STRIDE * width_blocks}},
            dynamo=True, optimize=True, verbose=False)
    proto = program.model_proto
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        dims[0].dim_param, dims[2].dim_param, dims[3].dim_param = "batch", "height", "width"
    if metadata is not None:
        _set_metadata(proto, metadata)
    proto.doc_string = "FBSNet semantic segmentation exported by fbsnet_ros"
    return _write(proto, path)


def write_onnx(model: nn.Module, metadata: ModelMetadata, path: str | Path) -> Path:
    """`fbsnet-ros export --format onnx`: these weights' export from the artefact cache
    (exported first when absent) with their metadata, written atomically to `path`."""
    import onnx

    proto = onnx.load(str(cached_onnx(model, metadata)))
    _set_metadata(proto, metadata)
    return _write(proto, path)


def _set_metadata(proto, metadata: ModelMetadata) -> None:
    del proto.metadata_props[:]
    for key, entry in metadata.to_dict().items():
        if key in ("class_names", "palette", "mean", "std", "input_size", "dataset"):
            proto.metadata_props.add(key=key, value=json.dumps(entry))


def _write(proto, path: str | Path) -> Path:
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda stream: stream.write(proto.SerializeToString()))
    onnx.checker.check_model(str(path))
    return path


@contextlib.contextmanager
def _quiet_exporter():
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnx_ir", "onnxscript")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def cached_onnx(model: nn.Module, metadata: ModelMetadata | None = None, *,
                rewritten: bool = True) -> Path:
    """The ONNX file for these weights, exported on first use (tens of seconds) and then reused.

    Keyed by the weights and the exporter's versions (the graph has dynamic sizes, and every
    backend and precision reads the same file); an entry that does not load is exported again.
    """
    import onnx

    name = entry_name(model, f"onnx-{EXPORT_FORMAT}" + ("" if rewritten else "-shuffles"),
                      runtime_versions("onnx", "onnxscript"))
    path = cache_dir() / "onnx" / f"{name}.onnx"
    if path.is_file():
        try:
            onnx.checker.check_model(str(path))
        except Exception as error:  # any damage (truncated, garbage) means: export it again
            log.warning("cached ONNX export %s is unreadable (%s); exporting again", path,
                        str(error).splitlines()[0] if str(error) else type(error).__name__)
        else:
            log.debug("using cached ONNX export %s", path)
            return path
    log.info("exporting the model to ONNX (once for these weights) -> %s", path)
    return export_onnx(model, path, metadata, rewritten=rewritten)
