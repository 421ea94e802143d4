#!/usr/bin/env bash
# Wheels for the lent GPU machine (`make gpu-wheels`, issue 17), which has no network. Its image has Python 3.12
# with a CUDA build of JAX (0.11.x), flax, optax, orbax, h5py, pandas, scipy, seaborn, click, pyyaml, tqdm,
# etils and absl-py (the device tool's package list, read 2026-11-17), and lacks the packages below: the ones the
# throughput path imports (found by importing it here and subtracting that list). Rendering (glfw, PyOpenGL,
# mujoco-studio) is optional in mujoco and not needed. Versions are requirements.lock's; --no-deps, because the
# image provides the rest. About 21 MB: the whole working tree that travels must stay under 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.whl}
PY=${PYTHON:-python3}
NAMES=(mujoco mujoco-core mujoco-mjx brax jaxopt trimesh pydantic pydantic_core annotated-types typing-inspection)

pins=()
for n in "${NAMES[@]}"; do
  line=$(grep -i -E "^${n}==" requirements.lock) || { echo "gpu-wheels: $n is not pinned in requirements.lock" >&2; exit 1; }
  pins+=("$line")
done
mkdir -p "$DEST"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" -d "$DEST" "${pins[@]}"
echo "gpu-wheels: ${#pins[@]} wheels in $DEST ($(du -sh "$DEST" | cut -f1)): ${pins[*]}"
