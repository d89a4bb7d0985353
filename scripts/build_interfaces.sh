#!/usr/bin/env bash
# Build the interface packages under interfaces/ (vision_msgs) into a venv that holds the ROS 2
# wheels, with the rosidl toolchain wheels: vision_msgs has no wheel on PyPI.
#   scripts/build_interfaces.sh VENV
# The toolchain wheels' exported CMake files name the Python and NumPy include folders of the
# machine that built them (/opt/python/cp3XX-...); they are pointed at the venv's own first.
set -euo pipefail
venv=$(cd "$1" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
python="$venv/bin/python"
python_include=$("$python" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
numpy_include=$("$python" -c "import numpy; print(numpy.get_include())")
for exported in "$venv"/share/*/cmake/export_*__rosidl_generator_pyExport.cmake; do
  sed -i -E "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#${python_include}#g; \
s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#${numpy_include}#g" \
    "$exported"
done
for package in "$repo"/interfaces/*/; do
  name=$(basename "$package")
  build="$venv/build-interfaces/$name"
  mkdir -p "$venv/build-interfaces"
  cmake -S "$package" -B "$build" -DCMAKE_PREFIX_PATH="$venv" -DCMAKE_INSTALL_PREFIX="$venv" \
    -DPython3_EXECUTABLE="$python" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release > "$build.log" 2>&1 \
    || { tail -n 30 "$build.log"; echo "building $name failed: $build.log" >&2; exit 1; }
  cmake --build "$build" -j 2 >> "$build.log" 2>&1 && cmake --install "$build" >> "$build.log" 2>&1 \
    || { tail -n 30 "$build.log"; echo "building $name failed: $build.log" >&2; exit 1; }
  echo "built $name into $venv"
done
