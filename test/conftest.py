"""Shared fixtures: a private DDS domain per test run, CamVid location, a random checkpoint,
and for the ROS tests a parameter file and a probe node.

Imported wherever the tests run, also where ROS is absent: rclpy and the ROS test helpers are
imported inside the fixtures that need them, never here at the top.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CAMVID_ROOT = REPO_ROOT.parent / "shared" / "datasets" / "camvid"

# Every test run gets its own DDS domain, and discovery never leaves this machine.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)


@pytest.fixture(scope="session", autouse=True)
def artefact_cache(tmp_path_factory):
    """Exported and compiled models (ONNX, OpenVINO) go to this run's own cache, shared by its
    tests and the nodes they start: no test reads an entry from another run or writes into the
    user's cache, and each set of weights is exported once per run, as on a fresh machine."""
    from fbsnet_ros.inference.artefacts import CACHE_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("artefact_cache")))
        yield


@pytest.fixture(scope="session")
def camvid_root() -> Path:
    """The real CamVid frames; CI always has them, so there a missing folder fails loudly."""
    if not (CAMVID_ROOT / "val.txt").is_file():
        message = f"CamVid not found at {CAMVID_ROOT} (expected ../shared/datasets/camvid)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CAMVID_ROOT


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised CamVid FBSNet inference checkpoint, written the real way."""
    from fbsnet_ros.checkpoint import random_camvid_model, save_inference_checkpoint

    model, metadata = random_camvid_model(input_size=(96, 128), dataset="random-test", seed=0,
                                          training={"note": "random weights for tests"})
    path = tmp_path_factory.mktemp("weights") / "random_camvid.pt"
    save_inference_checkpoint(model, metadata, path)
    return path


@pytest.fixture(scope="session")
def small_random_checkpoint(tmp_path_factory) -> Path:
    """A random CamVid FBSNet with one or two BRUs per stage instead of 32 in all (every kind
    of block still there), for tests about what happens around a network rather than about
    the paper's: its ONNX export took 13.8 s against the full network's 44.0 s (`cached_onnx`
    on each, 2-core AMD EPYC), and its compiles are shorter too. Its classifier bias is zeroed:
    a fresh FBSNet's bias gives one class everywhere, which any working graph reproduces; this
    one gives 7 classes on the damaged-cache test's random frame."""
    from dataclasses import replace

    import torch

    from fbsnet_ros.checkpoint import random_camvid_model, save_inference_checkpoint
    from fbsnet_ros.model import FBSNet, StageSpec

    _, metadata = random_camvid_model(input_size=(96, 128), dataset="random-test", seed=0,
                                      training={"note": "small random weights for tests"})
    config = replace(metadata.config,
                     encoder=(StageSpec(16, (1,)), StageSpec(64, (2,)), StageSpec(128, (5, 17))),
                     decoder=(StageSpec(64, (1,)), StageSpec(32, (1,))))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = FBSNet(config=config).eval()
    with torch.no_grad():
        model.classifier.bias.zero_()
    path = tmp_path_factory.mktemp("weights") / "small_random_camvid.pt"
    save_inference_checkpoint(model, replace(metadata, config=config), path)
    return path


@pytest.fixture(scope="session")
def random_weights_built(random_checkpoint) -> Path:
    """The random checkpoint, with what the node's default backend derives from it (the ONNX
    export: about a minute here) built into this run's artefact cache, which the nodes the
    tests start share: as on a robot that has run the node before, a node configures in
    seconds, within what a test waits for. In a whole run the export is there already."""
    from fbsnet_ros.inference import Segmenter

    Segmenter.from_checkpoint(random_checkpoint, device="cpu", backend="auto")
    return random_checkpoint


@pytest.fixture(scope="module")
def weights_params_file(random_weights_built, tmp_path_factory) -> Path:
    """Node parameters: the random checkpoint on the CPU whatever the machine."""
    from ros_helpers import cpu_weights_params_file

    return cpu_weights_params_file(tmp_path_factory.mktemp("params"), random_weights_built)


@pytest.fixture(scope="module")
def probe(request):
    """A test-side ROS node of the module's own (own context, spun in a thread)."""
    from ros_helpers import RosProbe

    module = request.module.__name__.rpartition(".")[2]
    with RosProbe(f"fbsnet_probe_{module}") as ros_probe:
        yield ros_probe
