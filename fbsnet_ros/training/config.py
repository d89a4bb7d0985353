"""Training configuration: YAML recipes with `--key value` overrides, validated in one place."""

from __future__ import annotations

import math
import types
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from fbsnet_ros.data.locations import CAMVID_BESIDE_PROJECT
from fbsnet_ros.model import NAMED_CONFIGS, OUTPUT_STRIDE

# The values a string field may take, where it is a choice.
CHOICES = {
    "dataset": ("camvid", "cityscapes", "folder"),
    "optimizer": ("adam", "sgd"),
    "loss": ("ce", "ohem"),
    "class_weights": ("enet", "none"),
    "amp_dtype": ("float16", "bfloat16"),
}

# Colour augmentations that only the on-device batch pipeline (data_on_device) draws.
DEVICE_ONLY_AUGMENTATIONS = ("brightness", "contrast", "saturation", "blur_probability")


@dataclass
class TrainConfig:
    dataset: str = "camvid"  # camvid | cityscapes | folder (layouts: fbsnet_ros/data/datasets.py)
    data_root: str = str(CAMVID_BESIDE_PROJECT)
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
    amp: bool = True  # mixed precision: float16 on CUDA only, bfloat16 on CUDA or the CPU
    amp_dtype: str = "float16"  # float16 (with a gradient scaler) | bfloat16 (no scaler needed)
    channels_last: bool = False  # NHWC activations: faster convolutions on CUDA and on AMX CPUs
    compile: bool = False  # torch.compile the training forward (minutes of compiling first)
    cuda_graph: bool = False  # CUDA: replay the training forward and backward as CUDA graphs
    data_on_device: bool = False  # decode the train set once onto the device, augment in batches
    time_budget_minutes: float = 0.0  # > 0: fit this run's epochs (<= epochs) into the budget
    brightness: float = 0.0  # data_on_device: brightness factor drawn from [1 - b, 1 + b]
    contrast: float = 0.0  # data_on_device: contrast factor, likewise
    saturation: float = 0.0  # data_on_device: saturation factor, likewise
    blur_probability: float = 0.0  # data_on_device: chance of a 3x3 Gaussian blur per sample
    sync_bn: bool = False  # CUDA DDP only
    init_weights: str = ""  # start from this checkpoint's weights (fine-tuning phases)
    cache: bool = True  # keep decoded frames in RAM
    device: str = "auto"
    max_steps_per_epoch: int = 0  # 0 = whole epoch; tests use a few steps
    warmup_ratio: float = 0.1  # lr factor at the first warm-up step (the authors' code: 1/3)

    def to_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}

    def validate(self) -> None:
        """Raise ValueError naming the first key whose value cannot work."""
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"training config '{name}' must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        if self.variant not in NAMED_CONFIGS:
            raise ValueError(f"training config 'variant' must be one of "
                             f"{', '.join(sorted(NAMED_CONFIGS))}, got {self.variant!r}")
        for name in ("crop_size", "input_size"):
            if any(v <= 0 or v % OUTPUT_STRIDE for v in getattr(self, name)):
                raise ValueError(f"training config '{name}' must be positive multiples of "
                                 f"{OUTPUT_STRIDE}, got {list(getattr(self, name))}")
        if self.base_size is not None and any(v <= 0 for v in self.base_size):
            raise ValueError(f"training config 'base_size' must be positive, got {self.base_size}")
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"training config 'scale_range' must be 0 < low <= high, "
                             f"got {list(self.scale_range)}")
        for name in ("batch_size", "epochs", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"training config '{name}' must be at least 1")
        for name in ("workers", "max_steps_per_epoch", "ohem_min_kept"):
            if getattr(self, name) < 0:
                raise ValueError(f"training config '{name}' must not be negative")
        for name in ("lr", "weight_decay", "momentum", "warmup_epochs", "poly_power", "jitter"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
                raise ValueError(f"training config '{name}' must be a finite number "
                                 f"{'> 0' if name == 'lr' else '>= 0'}, got {value}")
        for name in ("time_budget_minutes", *DEVICE_ONLY_AUGMENTATIONS):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"training config '{name}' must be a finite number >= 0, "
                                 f"got {value}")
        if not self.data_on_device:
            for name in DEVICE_ONLY_AUGMENTATIONS:
                if getattr(self, name):
                    raise ValueError(f"training config '{name}' needs data_on_device: true "
                                     f"(the CPU data loader does not draw it)")
        if self.cuda_graph and self.compile:
            raise ValueError("training config 'cuda_graph' and 'compile' exclude each other "
                             "(choose one way to cut the kernel launches)")
        if self.blur_probability > 1:
            raise ValueError("training config 'blur_probability' must be in [0, 1]")
        for name in ("ohem_threshold", "warmup_ratio"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"training config '{name}' must be in (0, 1]")


def _type_error(name: str, expected: str, raw) -> ValueError:
    return ValueError(f"training config '{name}' expects {expected}, got {raw!r}")


def _scalar(name: str, kind: type, value, raw):
    """One value of a field (or of a pair's element) as `kind`; numbers may come as text."""
    if kind is bool:
        if not isinstance(value, bool):
            raise _type_error(name, "true or false", raw)
        return value
    if kind in (int, float):
        if isinstance(value, str):
            # YAML 1.1 reads "1e-3" as text, a common way to write a learning rate.
            try:
                value = float(value)
            except ValueError:
                raise _type_error(name, "a number", raw) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(name, "a number", raw)
        if kind is int:
            if not float(value).is_integer():
                raise _type_error(name, "an integer", raw)
            return int(value)
        return float(value)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _type_error(name, "text", raw)
    return str(value)


def _coerce(name: str, hint, raw):
    """Parse an override string (or YAML value) into the field's declared type."""
    value = yaml.safe_load(raw) if isinstance(raw, str) else raw
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        optional, hint = True, members[0]
    if typing.get_origin(hint) is tuple:
        if value is None and optional:
            return None
        element = typing.get_args(hint)[0]
        length = len(typing.get_args(hint))
        expected = f"a list of {length} {'integers' if element is int else 'numbers'}"
        if not isinstance(value, (list, tuple)) or len(value) != length:
            raise _type_error(name, expected + (" or null" if optional else ""), raw)
        try:
            return tuple(_scalar(name, element, item, raw) for item in value)
        except ValueError:
            raise _type_error(name, expected, raw) from None
    return _scalar(name, hint, value, raw)


def load_train_config(path: str | Path | None, overrides: dict | None = None) -> TrainConfig:
    """The YAML recipe at `path` (if any) with `overrides` applied, type-checked and validated."""
    values: dict = {}
    if path:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: training config not found")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML ({error})") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: training config must be a mapping")
        values.update(loaded)
    values.update(overrides or {})
    hints = typing.get_type_hints(TrainConfig)
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(str(key) for key in set(values) - known)
    if unknown:
        raise ValueError(f"unknown training config key(s): {', '.join(unknown)}")
    config = TrainConfig(**{name: _coerce(name, hints[name], raw) for name, raw in values.items()})
    config.validate()
    return config
