#!/usr/bin/env bash
# On a lent GPU machine (device tool), from the repo root: config/train/camvid_gpu.yaml on the
# packed CamVid (.devdata/a, scripts/device/pack_camvid.py), fitted to BUDGET minutes.
set -u
BUDGET=${1:-6.5}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
out=${OUT:+$OUT/run}
out=${out:-runs/camvid_gpu}
mkdir -p "$out"
python3 -m fbsnet_ros.cli train --config config/train/camvid_gpu.yaml --data_root .devdata/a \
    --time_budget_minutes "$BUDGET" --out_dir "$out" 2>&1 | tr '\r' '\n' | grep -v "it/s\]" \
    | tee "$out/train.log" | tail -n 60
ls -la "$out"
