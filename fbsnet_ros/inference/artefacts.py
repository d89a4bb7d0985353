"""The on-disk cache of exported and compiled models, and the keys that name its entries.

Everything a backend derives from the weights (the ONNX export, OpenVINO's compiled graphs,
TensorRT engines) is kept under one folder, `$FBSNET_ROS_CACHE_DIR`, else
`$XDG_CACHE_HOME/fbsnet_ros` (`~/.cache/fbsnet_ros`). Entries are named by a hash of the
weights and of the runtime versions that wrote them, written atomically, and an entry that
cannot be read is rebuilt: deleting the folder is always safe.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from pathlib import Path

import torch
from torch import nn

# Where exported graphs are kept between runs; FBSNET_ROS_CACHE_DIR overrides it.
CACHE_ENV = "FBSNET_ROS_CACHE_DIR"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fbsnet_ros"


def weights_digest(model: nn.Module) -> str:
    """Names, shapes, dtypes and values of the state dict, as a short hash (no versions)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def runtime_versions(*distributions: str) -> str:
    """'torch=2.13.0,onnx=1.23.2,...': what wrote an entry, part of its key."""
    versions = [f"torch={torch.__version__}"]
    for name in distributions:
        try:
            versions.append(f"{name}={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name}=absent")
    return ",".join(versions)


def entry_name(model: nn.Module, *parts: str) -> str:
    """A cache file stem for these weights and `parts` (format, backend, precision, sizes,
    runtime versions): weights digest, then a hash of the rest."""
    rest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]
    return f"fbsnet-{weights_digest(model)}-{rest}"
