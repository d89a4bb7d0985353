# Two commands for a fresh clone: `make demo` and `make test`. Everything lives in .venv/.
# DISTRO picks the ROS 2 wheels: kilted (default, .venv/) or jazzy (.venv-jazzy/); each distro
# has its own venv and requirements-$(DISTRO).txt, so neither can see the other's ROS packages.
PYTHON ?= python3
DISTRO ?= kilted
DISTROS := kilted jazzy
ifeq ($(filter $(DISTRO),$(DISTROS)),)
$(error DISTRO=$(DISTRO): the distros with wheels here are $(DISTROS) (Humble: README, "On a ROS 2 install"))
endif
# setup.py's pip extras: every optional backend and the training tools, so all tests run.
EXTRAS := onnxruntime,openvino,training
VENV := $(if $(filter kilted,$(DISTRO)),.venv,.venv-$(DISTRO))
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# DDS stays on this machine: no multicast discovery beyond localhost.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export RMW_IMPLEMENTATION := rmw_fastrtps_cpp
# torch's OpenMP threads sleep instead of spinning when they wait, only where processes share
# the cores: the suite (test runner, node, training subprocesses) and the soak (camera beside
# the node), where spinning made steps up to 10x slower. Not for the demo or the benchmarks:
# eager PyTorch alone takes 1.75x as long with it on an Intel Xeon and 1.77x on an AMD EPYC
# (`bench/wait_policy.py`, README "Thread settings"); inference benchmarks print the setting.
test test-ros soak: export OMP_WAIT_POLICY := PASSIVE

# The ROS-facing part of the suite (node, lifecycle, bags, bag replay, demo, launch config,
# packaging): what .ci/run repeats on the second distro.
ROS_TESTS = $(sort $(wildcard test/test_node*.py test/test_lifecycle*.py test/test_bag*.py \
	test/test_demo*.py test/test_launch*.py test/test_compat.py test/test_colcon.py \
	test/test_packaging.py test/test_python310.py test/test_ament_linters.py))

.PHONY: install demo test test-ros lint soak bench clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-$(DISTRO).txt requirements-dev.txt setup.py \
	scripts/build_interfaces.sh $(wildcard interfaces/*/msg/*.msg)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt -r requirements-$(DISTRO).txt \
		-r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-build-isolation -e ".[$(EXTRAS)]"
	scripts/build_interfaces.sh $(VENV)
	touch $(STAMP)

demo: install
	$(BIN)/fbsnet-ros demo

# -rs prints why a test was skipped (the CUDA tests, on machines without a GPU); --durations
# lists the slowest tests, to keep the suite under its 20 minutes.
test: install
	$(BIN)/python -m pytest -q -rs --durations=30 test

test-ros: install
	$(BIN)/python -m pytest -q -rs $(ROS_TESTS)

# ruff, then ament_flake8 and ament_pep257 as `colcon test` runs them (same configuration).
lint: install
	$(BIN)/ruff check fbsnet_ros test launch bench setup.py
	$(BIN)/python -m pytest -q test/test_ament_linters.py

# Speed figures for the README: every backend against eager fp32, then the node's own cost.
bench: install
	$(BIN)/fbsnet-ros benchmark --sizes 360x480 512x1024 --json bench/results.json
	$(BIN)/fbsnet-ros benchmark --sizes 1080x1920 --input-size 360 480 --json bench/results_1080.json
	$(BIN)/python bench/node_overhead.py --backend auto --rounds 10 --json bench/node_overhead.json

# 1080x1920 frames at 30 Hz into the node for 10 minutes: up, bounded latency, < 50 MB growth.
soak: install
	$(BIN)/python bench/soak.py --seconds 600 --json bench/soak.json

clean:
	rm -rf .venv .venv-jazzy build install log demo_output .pytest_cache
