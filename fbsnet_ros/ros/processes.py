"""The node as a process of its own, started from its console script as `ros2 run` starts it:
for the demo, the benches and the tests."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

from fbsnet_ros.errors import UserError

# After SIGINT a node has this long to go before it is killed.
STOP_TIMEOUT_S = 15.0


def node_executable(name: str = "segmentation_node") -> str:
    """The installed console script, preferring the one beside this interpreter (a venv's)."""
    beside_interpreter = Path(sys.executable).with_name(name)
    if beside_interpreter.is_file():
        return str(beside_interpreter)
    found = shutil.which(name)
    if found is None:
        raise UserError(f"the {name} console script is not installed "
                        "(run `make install` or `pip install -e .`)")
    return found


def stop_node_process(process: subprocess.Popen, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGINT, as Ctrl-C would; SIGKILL if the node has not gone within timeout_s."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
