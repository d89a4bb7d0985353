#!/usr/bin/env bash
# On a lent GPU machine (device tool), from the repo root: the CUDA tests and the GPU
# benchmark. CamVid comes packed by scripts/device/pack_camvid.py under .devdata/a.
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
mkdir -p ../shared/datasets && ln -sfn "$PWD/.devdata/a" ../shared/datasets/camvid
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
timeout 100 python3 -m pytest -q -rs -p no:cacheprovider test/test_backends.py test/test_engine.py \
    -k "cuda" 2>&1 | tail -n 25
timeout 120 python3 -m fbsnet_ros.cli benchmark --device cuda --sizes 360x480 512x1024 1024x2048 \
    --backends torch:fp32 torch:fp16 torch-opt:fp16 --iterations 50 --warmup 10 \
    --json "${OUT:-/tmp}/gpu_benchmark.json" 2>&1 | tail -n 30
