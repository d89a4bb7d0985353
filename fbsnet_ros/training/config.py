"""Training configuration: YAML recipes with `--key value` overrides, validated in one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml


@dataclass
class TrainConfig:
    dataset: str = "camvid"  # camvid | cityscapes | folder
    data_root: str = "../shared/datasets/camvid"
    train_split: str = "train"
    val_split: str = "val"
    class_file: str = ""  # folder datasets: one class name per line (optionally `name r g b`)
    variant: str = "authors"  # named FBSNet configuration
    crop_size: tuple[int, int] = (360, 480)  # training crop (height, width)
    base_size: tuple[int, int] | None = None  # frames are first resized to this; None = as stored
    scale_range: tuple[float, float] = (0.75, 2.0)
    input_size: tuple[int, int] = (360, 480)  # whole-frame size the model sees at val/inference
    jitter: float = 0.0  # photometric jitter strength, 0 = off
    batch_size: int = 6
    epochs: int = 100
    optimizer: str = "adam"  # adam | sgd
    lr: float = 1e-3
    weight_decay: float = 2e-4
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    poly_power: float = 0.9
    loss: str = "ce"  # ce | ohem
    class_weights: str = "enet"  # enet | none
    ohem_threshold: float = 0.7
    ohem_min_kept: int = 100_000
    eval_every: int = 1  # epochs between validations
    workers: int = 2
    seed: int = 1
    out_dir: str = "runs/camvid"
    amp: bool = True  # mixed precision, CUDA only
    sync_bn: bool = False  # CUDA DDP only
    init_weights: str = ""  # start from this checkpoint's weights (fine-tuning phases)
    cache: bool = True  # keep decoded frames in RAM
    device: str = "auto"
    max_steps_per_epoch: int = 0  # 0 = whole epoch; tests use a few steps

    def to_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}


def _coerce(name: str, current, raw):
    """Parse an override string (or YAML value) into the type of the field's default."""
    value = yaml.safe_load(raw) if isinstance(raw, str) else raw
    if isinstance(current, tuple) or name in ("base_size",):
        if value is None:
            return None
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"training config '{name}' expects a list, got {raw!r}")
        return tuple(value)
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ValueError(f"training config '{name}' expects true/false, got {raw!r}")
        return value
    if isinstance(current, (int, float)) and not isinstance(value, (int, float)):
        raise ValueError(f"training config '{name}' expects a number, got {raw!r}")
    if isinstance(current, int) and not isinstance(current, bool):
        if float(value) != int(value):
            raise ValueError(f"training config '{name}' expects an integer, got {raw!r}")
        return int(value)
    if isinstance(current, float):
        return float(value)
    return str(value) if value is not None else ""


def load_train_config(path: str | Path | None, overrides: dict | None = None) -> TrainConfig:
    values: dict = {}
    if path:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: training config not found")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: training config must be a mapping")
        values.update(loaded)
    values.update(overrides or {})
    defaults = TrainConfig()
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown training config key(s): {', '.join(unknown)}")
    parsed = {name: _coerce(name, getattr(defaults, name), raw) for name, raw in values.items()}
    return TrainConfig(**parsed)
