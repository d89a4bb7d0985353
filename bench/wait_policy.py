"""OMP_WAIT_POLICY on this machine: `fbsnet-ros benchmark` with the variable unset and PASSIVE.

    python bench/wait_policy.py [--backends torch openvino:int8] [--rounds 4] [--json FILE]

OpenMP reads the variable once, when a process starts, so each measurement is a fresh
`fbsnet-ros benchmark` process; the two settings alternate round by round (and which goes
first alternates too), so a machine whose speed drifts weighs on both alike. Figures are the
medians of the per-process medians, and the PASSIVE / unset ratio of each round.

Why it matters: with PASSIVE, torch's OpenMP threads sleep when they wait instead of spinning.
That saves training and the tests when other processes share the cores, and on an Intel Xeon
here it halved eager PyTorch alone (issue 15). The Makefile sets it only for `test`,
`test-ros` and `soak`, where processes share the cores; not for `demo` or `bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from fbsnet_ros.evaluation.benchmark import format_machine, machine_summary

POLICIES = (None, "PASSIVE")  # None: the variable unset, OpenMP's default


def policy_name(policy: str | None) -> str:
    return policy or "unset"


def benchmark_once(policy: str | None, args, report: Path) -> dict[str, float]:
    """One `fbsnet-ros benchmark` process under `policy`: each backend's e2e median in ms."""
    environment = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if policy is not None:
        environment["OMP_WAIT_POLICY"] = policy
    command = [sys.executable, "-m", "fbsnet_ros.cli", "benchmark", "--backends", *args.backends,
               "--sizes", args.size, "--iterations", str(args.iterations),
               "--json", str(report)]
    if args.weights:
        command += ["--weights", args.weights]
    completed = subprocess.run(command, env=environment, capture_output=True, text=True,
                               check=False)
    if completed.returncode:
        raise RuntimeError(f"benchmark under OMP_WAIT_POLICY={policy_name(policy)} failed:\n"
                           f"{completed.stdout[-1500:]}{completed.stderr[-1500:]}")
    result = json.loads(report.read_text())
    ran = result["machine"]["thread_variables"]["OMP_WAIT_POLICY"]
    if ran != policy:
        raise RuntimeError(f"the benchmark ran under OMP_WAIT_POLICY={ran}, not {policy}")
    return {entry["backend"]: entry["end_to_end"]["median_ms"]
            for entry in result["sizes"][0]["backends"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["torch", "openvino:int8"],
                        help="as `fbsnet-ros benchmark --backends` (eager fp32 always runs)")
    parser.add_argument("--size", default="360x480", help="frame size HxW")
    parser.add_argument("--iterations", type=int, default=30, help="timed calls per backend")
    parser.add_argument("--rounds", type=int, default=4,
                        help="rounds, each one process per setting")
    parser.add_argument("--weights", default=None, help="checkpoint (default: shipped)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()

    print(format_machine())
    print(f"fbsnet-ros benchmark --sizes {args.size} --iterations {args.iterations}, "
          f"{args.rounds} rounds of one process per OMP_WAIT_POLICY setting, alternated; "
          "the rest of the environment as above")
    medians: dict[str | None, dict[str, list[float]]] = {policy: {} for policy in POLICIES}
    with tempfile.TemporaryDirectory(prefix="fbsnet_wait_policy_") as scratch:
        for index in range(args.rounds):
            order = POLICIES if index % 2 == 0 else POLICIES[::-1]
            for policy in order:
                figures = benchmark_once(policy, args, Path(scratch) / "report.json")
                for backend, median in figures.items():
                    medians[policy].setdefault(backend, []).append(median)
            print(f"  round {index + 1}: " + ", ".join(
                f"{backend} {medians[None][backend][-1]:.1f} / "
                f"{medians['PASSIVE'][backend][-1]:.1f} ms" for backend in medians[None]))

    print(f"{'backend':<24} {'unset':>9} {'PASSIVE':>9} {'PASSIVE/unset':>14}   by round")
    summary = {}
    for backend, unset in medians[None].items():
        passive = medians["PASSIVE"][backend]
        ratios = [p / u for p, u in zip(passive, unset, strict=True)]
        summary[backend] = {"unset_ms": statistics.median(unset),
                            "passive_ms": statistics.median(passive),
                            "ratio": statistics.median(passive) / statistics.median(unset),
                            "round_ratios": ratios}
        print(f"{backend:<24} {summary[backend]['unset_ms']:>7.1f}ms "
              f"{summary[backend]['passive_ms']:>7.1f}ms {summary[backend]['ratio']:>13.2f}x   "
              + " ".join(f"{ratio:.2f}" for ratio in ratios))
    print("e2e medians (frame to labels) of each process, median over the rounds; "
          "PASSIVE/unset > 1: slower with PASSIVE")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_summary(), "size": args.size,
                                         "iterations": args.iterations, "rounds": args.rounds,
                                         "backends": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
