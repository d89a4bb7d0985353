"""The managed (lifecycle) FBSNet node: the same parameters and topics, driven by transitions.

Unconfigured at start, not subscribed to the camera. configure loads the weights and builds the
backend (a failure fails the transition with one line naming the setting); activate subscribes
and serves; deactivate stops serving and keeps the model; cleanup frees the model (and CUDA
memory); shutdown works from any state. weights, device, input_size and backend may change
while unconfigured and apply at the next configure.

    segmentation_lifecycle_node [--autostart true|false] --ros-args ...

--autostart true configures and activates at once (the launch file's default); otherwise a
lifecycle manager (Nav2's lifecycle_manager, `ros2 lifecycle set`) drives it.
"""

from __future__ import annotations

import sys

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from fbsnet_ros.ros.node_base import NODE_NAME, SegmentationNodeBase, run_node
from fbsnet_ros.ros.node_core import ConfigurationError


class SegmentationLifecycleNode(SegmentationNodeBase, LifecycleNode):
    """The segmentation node under lifecycle management (model loaded at configure)."""

    managed = True

    def __init__(self, **node_options) -> None:
        """node_options go to rclpy's LifecycleNode: context, cli_args, parameter_overrides..."""
        super().__init__(NODE_NAME, **node_options)
        self.declare_settings()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.core.load(self.segmenter_settings())
        except ConfigurationError as error:
            self.get_logger().error(f"configure failed: {error}")
            return TransitionCallbackReturn.FAILURE
        self.open_outputs()
        segmenter = self.core.segmenter
        self.get_logger().info(
            f"configured: {segmenter.backend_name} on {segmenter.device}, network input "
            f"{segmenter.input_size}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.start_serving()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_serving()
        self.get_logger().info("deactivated: not serving, model kept")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        self.get_logger().info("cleaned up: model released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        self.get_logger().info("shut down")
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        if hasattr(self, "core"):
            self.stop_serving()
        super().destroy_node()


def _autostart(node: SegmentationLifecycleNode) -> None:
    # A failed configure leaves the node unconfigured (its one line is logged), waiting for a
    # manager or a user to fix the parameters and configure again.
    if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
        node.trigger_activate()


def autostart_option(arguments: list[str]) -> tuple[bool, list[str]]:
    """--autostart true|false before any --ros-args, and the arguments without it."""
    rest, autostart = list(arguments), False
    end = rest.index("--ros-args") if "--ros-args" in rest else len(rest)
    if "--autostart" in rest[:end]:
        index = rest.index("--autostart")
        value = rest[index + 1] if index + 1 < len(rest) else ""
        if value not in ("true", "false"):
            raise SystemExit(f"segmentation_lifecycle_node: --autostart takes true or false, "
                             f"got {value!r}")
        autostart = value == "true"
        del rest[index:index + 2]
    return autostart, rest


def main(args=None) -> int:
    """Console-script entry point; returns the process exit status."""
    autostart, arguments = autostart_option(sys.argv if args is None else args)
    return run_node(SegmentationLifecycleNode, arguments, ros_args=arguments,
                    after_start=_autostart if autostart else None)


if __name__ == "__main__":
    sys.exit(main())
