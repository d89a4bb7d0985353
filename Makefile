# Two commands for a fresh clone: `make demo` and `make test`. Everything lives in .venv/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# DDS stays on this machine: no multicast discovery beyond localhost.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export RMW_IMPLEMENTATION := rmw_fastrtps_cpp

.PHONY: install demo test lint soak clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: install
	$(BIN)/fbsnet-ros demo

test: install
	$(BIN)/python -m pytest -q test

lint: install
	$(BIN)/ruff check fbsnet_ros test launch setup.py

clean:
	rm -rf $(VENV) build install log demo_output .pytest_cache
