#!/bin/sh
# Build the pose3d image with podman from the local base (deploy/podman/setup.sh made it) and the host's
# torch wheel folder, served on a free loopback port for the build only (the build uses the host network).
#
#   sh deploy/podman/build.sh [TAG] [WHEEL_DIR]       # defaults: pose3d:0.1.0, $PIP_FIND_LINKS or /opt/wheels
#
# Layers are cached: an unchanged tree rebuilds in seconds. Without a torch wheel folder, torch comes from
# PyTorch's CPU index as in the main Dockerfile.
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
TAG=${1:-pose3d:0.1.0}
WHEELS=${2:-${PIP_FIND_LINKS:-/opt/wheels}}
set -- --build-arg PYTHON_IMAGE=localhost/python:3.11-bookworm
# One build at a time on this machine; the wheel server's port is fixed, since build arguments are part of the
# layer cache key (a new port each time would reinstall torch on every build).
exec 9>/tmp/pose3d-podman-build.lock
flock 9
if ls "$WHEELS"/torch-2.13.0*.whl >/dev/null 2>&1; then
  port=${POSE3D_WHEEL_PORT:-38765}
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$WHEELS" >/dev/null 2>&1 &
  server=$!
  trap 'kill "$server"' EXIT
  set -- "$@" --build-arg "WHEELHOUSE_URL=http://127.0.0.1:$port/" --build-arg TORCH_INDEX_URL=https://pypi.org/simple
fi
podman build --network host --format docker -f "$REPO/docker/Dockerfile" \
  --ignorefile "$REPO/docker/Dockerfile.dockerignore" -t "$TAG" "$@" "$REPO"
