"""Stop signals for the node processes, from the first line of the console script on.

SIGINT and SIGTERM are taken over before the node imports anything heavy: a signal that
arrives while torch, OpenVINO or rclpy load is only recorded (Python's own KeyboardInterrupt,
raised inside a C++ library's initialisation, was seen to be swallowed there, or to abort the
process), and the node stops as soon as it is ready to (`arm`). From then on a stop signal
raises KeyboardInterrupt in the main thread once. Whatever the main thread is doing, a watchdog
ends the process STOP_GRACE_S after the first stop signal if it is still running (the main
thread stuck in native code: a backend build, a large inference).

Imports nothing but the standard library and `names`: the console scripts enter here.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from fbsnet_ros.ros.names import NODE_NAME

# After a stop signal the process ends within this long, whatever the main thread is doing.
STOP_GRACE_S = 5.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _StopSignals:
    def __init__(self) -> None:
        self.installed = False
        self.armed = False
        self.received = threading.Event()
        self.raised = False

    def install(self) -> None:
        if self.installed:
            return
        self.installed = True
        wakeup_read, wakeup_write = os.pipe()
        os.set_blocking(wakeup_write, False)
        signal.set_wakeup_fd(wakeup_write)  # written from the C handler, whatever Python does

        def exit_if_stuck():
            # Each byte is the number of a signal Python handles; only a stop signal counts.
            while os.read(wakeup_read, 1)[0] not in STOP_SIGNALS:
                pass
            time.sleep(STOP_GRACE_S)
            os.write(2, f"[{NODE_NAME}] still busy {STOP_GRACE_S:g} s after the stop signal: "
                        "exiting without clean-up\n".encode())
            os._exit(0)

        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)
        threading.Thread(target=exit_if_stuck, name="fbsnet-stop-watchdog", daemon=True).start()

    def _handle(self, signum, frame) -> None:
        self.received.set()
        if self.armed:
            self._raise_once()

    def _raise_once(self) -> None:
        if not self.raised:  # a second signal must not interrupt the clean-up
            self.raised = True
            raise KeyboardInterrupt

    def arm(self) -> None:
        """From now on a stop signal raises KeyboardInterrupt; one that came before does so
        now."""
        self.install()
        self.armed = True
        if self.received.is_set():
            self._raise_once()


_STOP = _StopSignals()


def install() -> None:
    """Take over SIGINT and SIGTERM: record them, start the watchdog (idempotent)."""
    _STOP.install()


def arm() -> None:
    """Stop signals raise KeyboardInterrupt from now on (at once, if one already came)."""
    _STOP.arm()


def stop_requested() -> bool:
    """Whether a stop signal has come."""
    return _STOP.received.is_set()


def segmentation_node() -> int:
    """The `segmentation_node` console script."""
    install()
    from fbsnet_ros.ros.segmentation_node import main

    return main()


def segmentation_lifecycle_node() -> int:
    """The `segmentation_lifecycle_node` console script."""
    install()
    from fbsnet_ros.ros.lifecycle_node import main

    return main()


if __name__ == "__main__":
    sys.exit(segmentation_node())
