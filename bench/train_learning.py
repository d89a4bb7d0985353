"""Do the faster training settings learn as well as fp32? Short CamVid runs, side by side.

    python bench/train_learning.py [--recipe config/train/camvid_cpu.yaml] [--epochs 6]
                                   [--eval-every 2] [--runs NAME ...] [--out runs/learning]

Each run is `fbsnet-ros train` on the recipe from scratch, the same seed, data order and
initial weights, changed only by its speed option (`fp32`, `bf16`, `bf16+compile`), plus
fp32 with another seed (`fp32-seed2`): the spread between the two fp32 runs is the noise the
other settings are judged against (issue 14: "loss and val mIoU within noise of fp32"). The
table prints each run's training loss by epoch and val mIoU at each evaluation, read from its
checkpoint history, and each setting's difference to fp32 next to fp32's seed spread.

Runs resume (each keeps its out_dir), so a killed comparison carries on where it stopped.
Compiling takes minutes and is counted in the wall time. Speed is not the point here, so the
runs may share the machine; bench/train_step.py times a step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from fbsnet_ros.checkpoint import safe_load
from fbsnet_ros.evaluation.benchmark import format_machine

# name: recipe keys that differ from the recipe's own (the compared settings leave the rest);
# fp32-seed2 also takes --seed2 as its seed.
RUNS = {
    "fp32": {"amp": "false", "compile": "false"},
    "fp32-seed2": {"amp": "false", "compile": "false"},
    "bf16": {"amp": "true", "amp_dtype": "bfloat16", "compile": "false"},
    "bf16+compile": {"amp": "true", "amp_dtype": "bfloat16", "compile": "true"},
}


def run(name: str, args) -> dict:
    """Train one setting to the end (or resume it) and return its history and wall time."""
    out_dir = Path(args.out) / name
    keys = {"epochs": str(args.epochs), "eval_every": str(args.eval_every),
            "out_dir": str(out_dir), "channels_last": "false", **RUNS[name]}
    if name == "fp32-seed2":
        keys["seed"] = str(args.seed2)
    command = [sys.executable, "-m", "fbsnet_ros.cli", "train", "--config", args.recipe]
    for key, value in keys.items():
        command += [f"--{key}", value]
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(out_dir / "train.log", "a") as log:
        print(f"[{name}] {' '.join(command[1:])}", flush=True)
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    payload = safe_load(out_dir / "last.pt")
    return {"history": payload["history"], "wall_s_this_call": wall}


def table(results: dict) -> str:
    names = list(results)
    epochs = max(len(result["history"]) for result in results.values())
    lines = ["epoch  " + "".join(f"{name:>22}" for name in names),
             "       " + "".join(f"{'loss  val mIoU':>22}" for _ in names)]
    for epoch in range(epochs):
        cells = []
        for name in names:
            history = results[name]["history"]
            if epoch >= len(history):
                cells.append(f"{'-':>22}")
                continue
            record = history[epoch]
            miou = f"{100 * record['val_miou']:.2f}%" if "val_miou" in record else ""
            cells.append(f"{record['loss']:>14.4f}{miou:>8}")
        lines.append(f"{epoch + 1:>5}  " + "".join(cells))
    return "\n".join(lines)


def final(result: dict) -> tuple[float, float]:
    """The last epoch's loss and the last val mIoU (%)."""
    history = result["history"]
    scored = [record for record in history if "val_miou" in record]
    return history[-1]["loss"], 100 * scored[-1]["val_miou"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="config/train/camvid_cpu.yaml")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--eval-every", type=int, default=2)
    parser.add_argument("--seed2", type=int, default=2, help="fp32-seed2's seed")
    parser.add_argument("--runs", nargs="+", choices=tuple(RUNS), default=list(RUNS))
    parser.add_argument("--out", default="runs/learning")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    print(format_machine())
    print(f"{args.recipe} from scratch, {args.epochs} epochs, val every {args.eval_every}; "
          f"runs: {', '.join(args.runs)}", flush=True)
    results = {name: run(name, args) for name in args.runs}
    print(table(results))
    if "fp32" in results:
        loss32, miou32 = final(results["fp32"])
        if "fp32-seed2" in results:
            loss2, miou2 = final(results["fp32-seed2"])
            print(f"fp32 seed spread (noise): loss {abs(loss2 - loss32):.4f}, "
                  f"val mIoU {abs(miou2 - miou32):.2f} points")
        for name in results:
            if name.startswith("fp32"):
                continue
            loss, miou = final(results[name])
            print(f"{name} - fp32: loss {loss - loss32:+.4f}, val mIoU {miou - miou32:+.2f} "
                  f"points")
    for name, result in results.items():
        print(f"{name}: wall {result['wall_s_this_call'] / 60:.1f} min this call")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
