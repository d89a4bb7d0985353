#!/usr/bin/env bash
# On a lent GPU machine (device tool), from the repo root: a GPU recipe on the packed CamVid
# (scripts/device/pack_camvid.py), fitted to BUDGET minutes.
#   bash scripts/device/train_gpu.sh BUDGET [RECIPE [--key value ...]]
# RECIPE defaults to config/train/camvid_gpu.yaml; the overrides follow it (a later
# --data_root replaces .devdata/a, where part a's list files are).
set -u
BUDGET=${1:-6.5}
RECIPE=${2:-config/train/camvid_gpu.yaml}
shift $(( $# < 2 ? $# : 2 ))
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
out=${OUT:+$OUT/run}
out=${out:-runs/camvid_gpu}
mkdir -p "$out"
python3 -m fbsnet_ros.cli train --config "$RECIPE" --data_root .devdata/a \
    --time_budget_minutes "$BUDGET" --out_dir "$out" "$@" 2>&1 | tr '\r' '\n' \
    | grep -v "it/s\]" | tee "$out/train.log" | tail -n 60
ls -la "$out"
