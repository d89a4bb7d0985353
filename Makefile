# Two commands for a fresh clone: `make demo` and `make test`. Everything lives in .venv/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# DDS stays on this machine: no multicast discovery beyond localhost.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export RMW_IMPLEMENTATION := rmw_fastrtps_cpp
# torch's OpenMP threads sleep instead of spinning when they wait: on a shared CPU (the node
# beside other nodes, or beside the tests) spinning made every step up to 10x slower.
export OMP_WAIT_POLICY := PASSIVE

.PHONY: install demo test lint soak bench clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: install
	$(BIN)/fbsnet-ros demo

# -rs prints why a test was skipped (the CUDA tests, on machines without a GPU).
test: install
	$(BIN)/python -m pytest -q -rs test

lint: install
	$(BIN)/ruff check fbsnet_ros test launch setup.py

# Speed figures for the README: every backend against eager fp32, then the node's own cost.
bench: install
	$(BIN)/fbsnet-ros benchmark --sizes 360x480 512x1024 --json bench/results.json
	$(BIN)/fbsnet-ros benchmark --sizes 1080x1920 --input-size 360 480 --json bench/results_1080.json
	$(BIN)/python bench/node_overhead.py --backend auto --rounds 5 --json bench/node_overhead.json

# 1080x1920 frames at 30 Hz into the node for 10 minutes: up, bounded latency, < 50 MB growth.
soak: install
	$(BIN)/python bench/soak.py --seconds 600 --json bench/soak.json

clean:
	rm -rf $(VENV) build install log demo_output .pytest_cache
