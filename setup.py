from glob import glob

from setuptools import find_packages, setup

package_name = "fbsnet_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={package_name: ["weights/*.pt"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml")),
        ("share/" + package_name + "/config/train", glob("config/train/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="fbsnet_ros maintainers",
    maintainer_email="fbsnet-ros@example.com",
    description="FBSNet real-time semantic segmentation for ROS 2",
    license="MIT",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "segmentation_node = fbsnet_ros.ros.segmentation_node:main",
            "fbsnet-ros = fbsnet_ros.cli:main",
        ],
    },
)
