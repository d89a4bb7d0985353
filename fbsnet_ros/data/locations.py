"""Where the project's data lives by default (no heavy imports: the command line uses it)."""

from __future__ import annotations

from pathlib import Path

# Where CamVid lives beside a checkout (README), relative to the project folder.
CAMVID_BESIDE_PROJECT = Path("..") / "shared" / "datasets" / "camvid"


def default_camvid_root() -> Path:
    """CamVid beside the checkout this package runs from, whatever the current folder.

    An installed (not editable) package has no checkout, and looks beside the current folder.
    """
    beside_checkout = (Path(__file__).resolve().parents[2] / CAMVID_BESIDE_PROJECT).resolve()
    return beside_checkout if beside_checkout.is_dir() else CAMVID_BESIDE_PROJECT
