from glob import glob
from os.path import isfile

from setuptools import find_packages, setup

package_name = "fbsnet_ros"

# What rosdep cannot install (package.xml): optional backends and training tools as pip extras,
# e.g. `pip install ".[openvino]"`. The code imports each only where it is used.
ONNX_EXPORT = ["onnx>=1.23.2", "onnxscript>=0.7.2"]
EXTRAS = {
    # `fbsnet-ros export`: the ONNX file that both ONNX backends run.
    "onnx": ONNX_EXPORT,
    # backend: onnxruntime (CPU).
    "onnxruntime": ["onnxruntime>=1.32.0", *ONNX_EXPORT],
    # backend: openvino (Intel CPU/GPU); nncf makes the INT8 model (`fbsnet-ros quantize`),
    # which openvino:int8 then runs without it.
    "openvino": ["openvino>=2026.4.1", "nncf>=3.4.0", *ONNX_EXPORT],
    # Training and evaluation: plots, TensorBoard logs, Cityscapes label table.
    "training": ["matplotlib>=3.8", "tensorboard>=2.15", "cityscapesscripts==2.3.0"],
    # colcon test picks its pytest step from this extra (tests_require is no longer read).
    "test": ["pytest"],
}

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={package_name: ["weights/*.pt"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        # Every shipped configuration file (parameters, DDS profiles, training recipes).
        *((f"share/{package_name}/{folder}", [p for p in glob(f"{folder}/*") if isfile(p)])
          for folder in ("config", "config/train")),
    ],
    install_requires=["setuptools"],
    extras_require=EXTRAS,
    zip_safe=False,
    maintainer="fbsnet_ros maintainers",
    maintainer_email="fbsnet-ros@example.com",
    description="FBSNet real-time semantic segmentation for ROS 2",
    license="MIT",
    entry_points={
        "console_scripts": [
            # Entered through stop_signals: Ctrl-C is handled from the first line on.
            "segmentation_node = fbsnet_ros.ros.stop_signals:segmentation_node",
            "segmentation_lifecycle_node = fbsnet_ros.ros.stop_signals:segmentation_lifecycle_node",
            "fbsnet-ros = fbsnet_ros.cli:main",
        ],
    },
)
