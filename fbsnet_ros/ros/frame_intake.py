"""The cameras' frames taken on a thread of the node's own instead of by the executor.

rclpy's executor spends about a millisecond of Python on every message it hands to a callback
(it gathers the node's entities and builds a new wait set each time): in bench/node_overhead.py's
flood (360x480 frames at 50 Hz, README "Speed"), the node's executor thread took 0.042-0.043
cores taking the frames; this thread takes 0.016, and the executor is left 0.002. On a two-core
computer that difference is taken from inference while the camera is faster than the node.
So the image subscriptions and their QoS events (frames lost, incompatible QoS) live in a
callback group no executor runs (`IntakeGroup`), and `FrameIntake` waits on them, takes each
frame and runs the subscription's callback (the node's mailbox) and event callbacks on its
thread. Everything else (timers, services, camera_info, lifecycle transitions) stays with the
executor.

The wait set is rclpy's own (`_rclpy.WaitSet`, as `rclpy.wait_for_message` and the executors
use it; the same on Jazzy and Kilted), and entities are held as the executor holds them, so a
subscription destroyed meanwhile by another thread (the input's reliability switched) is
released once this thread lets go of it.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack

from rclpy.callback_groups import CallbackGroup
from rclpy.exceptions import InvalidHandle
from rclpy.guard_condition import GuardCondition
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.waitable import NumberOfEntities

from fbsnet_ros.ros.node_core import INTAKE_THREAD, named_thread

# The thread looks at the context and its stop flag at least this often (ns).
WAIT_TIMEOUT_NS = 500_000_000
# After an unexpected error in the wait itself, this long before trying again (s).
ERROR_RETRY_S = 0.1


class IntakeGroup(CallbackGroup):
    """Entities no executor runs or waits on: `FrameIntake` does."""

    def can_execute(self, entity) -> bool:
        return False

    def beginning_execution(self, entity) -> bool:
        return False

    def ending_execution(self, entity) -> None:
        pass


def _run_coroutine(coroutine) -> None:
    """Run a waitable's execute() to its end (an event callback never awaits anything)."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError("an event callback awaited; FrameIntake runs callbacks synchronously")


class FrameIntake:
    """One thread taking the messages of a set of subscriptions (created in an IntakeGroup).

    `on_error(reason, details)` hears about an exception from a callback (the thread goes on).
    `replace` swaps a subscription while running; `stop` returns once the thread has let go of
    every subscription, so they may be destroyed. Each start runs with state of its own (stop
    flag, wake-up guard condition, subscriptions), so a thread that outlived its stop's timeout
    can never take frames for the next start.
    """

    def __init__(self, context, on_error: Callable[[str, str], None],
                 name: str = INTAKE_THREAD) -> None:
        self._context = context
        self._on_error = on_error
        self._name = name
        self._run: _IntakeRun | None = None
        self._thread: threading.Thread | None = None

    def start(self, subscriptions: list) -> None:
        if self._thread is not None:
            raise RuntimeError("FrameIntake started twice")
        self._run = _IntakeRun(self._context, subscriptions)
        self._thread = named_thread(self._name, self._serve_run, self._run)
        self._thread.start()

    def replace(self, old, new) -> None:
        """Take `new` instead of `old` from now on (the caller destroys `old`)."""
        run = self._run
        if run is None:
            return
        with run.lock:
            run.subscriptions = [new if subscription is old else subscription
                                 for subscription in run.subscriptions]
        run.trigger()

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._thread is None:
            return
        run, thread = self._run, self._thread
        self._run = self._thread = None
        run.stopping.set()
        run.trigger()
        thread.join(timeout=timeout_s)
        run.wake.destroy()  # deferred by rclpy while a thread still waits on it

    def _serve_run(self, run: _IntakeRun) -> None:
        while not run.stopping.is_set() and self._context.ok():
            with run.lock:
                subscriptions = list(run.subscriptions)
            try:
                self._serve(run, subscriptions)
            except InvalidHandle:
                # A subscription or one of its events was destroyed under the wait (replaced
                # by another thread): gather the set again; the destroyed ones are left out.
                continue
            except Exception as error:  # the thread must outlive any one error
                if run.stopping.is_set() or not self._context.ok():
                    return  # stopping: the context or the entities went away under the wait
                self._on_error(repr(error), traceback.format_exc())
                time.sleep(ERROR_RETRY_S)

    def _serve(self, run: _IntakeRun, subscriptions: list) -> None:
        """Wait on these subscriptions and their events until the set changes or stops."""
        with ExitStack() as held:
            taken = []
            for subscription in subscriptions:
                try:
                    held.enter_context(subscription.handle)
                except InvalidHandle:
                    continue  # destroyed meanwhile; a replacement follows with a wake
                taken.append(subscription)
            events = []
            for subscription in taken:
                for handler in subscription.event_handlers:
                    try:
                        held.enter_context(handler)
                    except InvalidHandle:
                        continue
                    events.append(handler)
            held.enter_context(run.wake.handle)
            held.enter_context(self._context.handle)
            count = NumberOfEntities(num_subs=len(taken), num_gcs=1)
            for handler in events:
                count += handler.get_num_entities()
            wait_set = _rclpy.WaitSet(
                count.num_subscriptions, count.num_guard_conditions, count.num_timers,
                count.num_clients, count.num_services, count.num_events, self._context.handle)
            while not run.stopping.is_set():
                wait_set.clear_entities()
                for subscription in taken:
                    wait_set.add_subscription(subscription.handle)
                for handler in events:
                    handler.add_to_wait_set(wait_set)
                wait_set.add_guard_condition(run.wake.handle)
                wait_set.wait(WAIT_TIMEOUT_NS)
                if not self._context.ok():
                    return
                if wait_set.get_ready_entities("guard_condition"):
                    return  # replaced, or stopping: gather the set again
                ready = wait_set.get_ready_entities("subscription")
                for subscription in taken:
                    if subscription.handle.pointer in ready:
                        self._take(subscription)
                for handler in events:
                    if handler.is_ready(wait_set):
                        self._call(_run_coroutine, handler.execute(handler.take_data()))

    def _take(self, subscription) -> None:
        message_and_info = subscription.handle.take_message(subscription.msg_type,
                                                            subscription.raw)
        if message_and_info is not None:
            self._call(subscription.callback, message_and_info[0])

    def _call(self, function, *args) -> None:
        try:
            function(*args)
        except Exception as error:  # one bad callback must not stop the intake
            self._on_error(repr(error), traceback.format_exc())


class _IntakeRun:
    """What one start of a FrameIntake runs with."""

    def __init__(self, context, subscriptions: list) -> None:
        self.lock = threading.Lock()
        self.subscriptions = list(subscriptions)
        self.stopping = threading.Event()
        self.wake = GuardCondition(None, None, context=context)

    def trigger(self) -> None:
        try:
            self.wake.trigger()
        except InvalidHandle:
            pass  # the context is gone; the thread sees it at its next timeout
