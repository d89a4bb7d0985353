"""Pack CamVid for a GPU machine that takes at most 64 MiB of files per call.

The SegNet PNGs are ~120 MB; lossless WebP of the same frames is ~80 MB, and decodes to the
same pixels (checked here for every frame). The frames are split into parts that each fit
one call; `<out>/a/` holds the list files, which name the other parts' files relatively, so
`data_root: <out>/a` reads the whole set once every part has arrived.

    python scripts/device/pack_camvid.py --camvid ../shared/datasets/camvid --out .devdata
"""

from __future__ import annotations

import argparse
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from fbsnet_ros.data.datasets import read_list_file

# Most bytes per part: 64 MiB per call, less the repository that travels with it.
PART_BUDGET = 52 * 2**20
WEBP_LOSSLESS = [cv2.IMWRITE_WEBP_QUALITY, 101]  # quality above 100 selects lossless WebP


def encode(image_path: Path, target: Path) -> int:
    pixels = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    ok, buffer = cv2.imencode(".webp", pixels, WEBP_LOSSLESS)
    if not ok or not np.array_equal(cv2.imdecode(buffer, cv2.IMREAD_COLOR), pixels):
        raise SystemExit(f"{image_path}: lossless WebP did not round-trip")
    target.write_bytes(buffer.tobytes())
    return len(buffer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camvid", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    splits = {split: read_list_file(args.camvid / f"{split}.txt", args.camvid)
              for split in ("val", "train")}
    part, used, lists = 0, 0, {split: [] for split in splits}
    jobs = []
    for split, pairs in splits.items():
        for image_path, label_path in pairs:
            size = image_path.stat().st_size * 0.75 + label_path.stat().st_size  # WebP ~0.7x
            if used + size > PART_BUDGET:
                part, used = part + 1, 0
            used += size
            folder = args.out / "abcdefgh"[part] / split
            folder.mkdir(parents=True, exist_ok=True)
            image_target = folder / f"{image_path.stem}.webp"
            label_target = folder / f"{label_path.stem}_label.png"
            shutil.copyfile(label_path, label_target)
            jobs.append((image_path, image_target))
            relative = Path("..") / image_target.relative_to(args.out)
            lists[split].append(f"{relative} {Path('..') / label_target.relative_to(args.out)}")
    with ThreadPoolExecutor(2) as pool:
        total = sum(pool.map(lambda job: encode(*job), jobs))
    for split, lines in lists.items():
        (args.out / "a" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    for folder in sorted(args.out.iterdir()):
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        print(f"{folder}: {size / 2**20:.1f} MiB")
    print(f"{len(jobs)} frames, {total / 2**20:.1f} MiB of lossless WebP")


if __name__ == "__main__":
    main()
