"""The torch device a command, the node or training runs on (torch only, no other imports)."""

from __future__ import annotations

import torch

from fbsnet_ros.errors import InvalidValue


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; an explicit 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidValue(
            f"device '{name}' requested but CUDA is not available; use 'auto' or 'cpu'")
    try:
        return torch.device(name)
    except RuntimeError:
        raise InvalidValue(
            f"device '{name}' is not a torch device; use auto, cpu or cuda[:N]") from None
