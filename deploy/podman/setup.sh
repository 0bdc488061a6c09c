#!/bin/sh
# Podman for machines without Docker (and without an image registry): installs and configures podman and
# podman-compose, then builds the local base images the compose override (docker-compose.podman.yml) names.
# Idempotent and cached: a second run takes seconds. Run as root (apt-get, /etc/containers):
#
#   sh deploy/podman/setup.sh [PYTHON]        # PYTHON: where podman-compose is pip-installed (default python3)
#
# Images (rebuilt only when missing):
#   localhost/debian:bookworm      debootstrap --variant=minbase from the Debian mirror apt already uses
#   localhost/python:3.11-bookworm Debian's python3 + venv, this machine's extra CA certificates
#   localhost/redis:bookworm       Debian's redis-server
#   localhost/prometheus:bookworm  Debian's prometheus
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
PYTHON=${1:-python3}
export DEBIAN_FRONTEND=noninteractive

need_apt=""
for tool in podman runc debootstrap iptables; do command -v "$tool" >/dev/null 2>&1 || need_apt=1; done
[ -x /usr/libexec/podman/catatonit ] || need_apt=1  # `init: true` in the compose file
if [ -n "$need_apt" ]; then
  apt-get update -qq -o DPkg::Lock::Timeout=600
  apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends \
    podman runc netavark aardvark-dns iptables catatonit debootstrap uidmap >/dev/null
fi
"$PYTHON" -m pip show podman-compose 2>/dev/null | grep -q '^Version: 1\.6' \
  || "$PYTHON" -m pip install --quiet 'podman-compose>=1.6,<1.7'

# crun refuses hybrid cgroups here; setting RLIMIT_NOFILE is not permitted in these sandboxes; netavark (not
# CNI, whose plugins Debian's podman does not pull in) gives the compose network its DNS (aardvark-dns).
mkdir -p /etc/containers
if ! grep -q 'pose3d deploy/podman/setup.sh' /etc/containers/containers.conf 2>/dev/null; then
  cat >>/etc/containers/containers.conf <<'CONF'
# pose3d deploy/podman/setup.sh
[containers]
default_ulimits = []

[engine]
runtime = "runc"

[network]
network_backend = "netavark"
CONF
fi

has_image() { podman image exists "$1"; }

if ! has_image localhost/debian:bookworm; then
  mirror=$(sed -n 's/^URIs: *\([^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
  rootfs=$(mktemp -d)
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import - localhost/debian:bookworm >/dev/null
  rm -rf "$rootfs"
fi

# the machine's extra CA certificates (e.g. a proxy's) go into every image so pip and apt inside them work
certs=$(mktemp -d)
trap 'rm -rf "$certs"' EXIT
cp /usr/local/share/ca-certificates/*.crt "$certs"/ 2>/dev/null || true
touch "$certs/.keep"
for image in python:3.11-bookworm redis:bookworm prometheus:bookworm; do
  name=${image%%:*}
  has_image "localhost/$image" || podman build --quiet --network host --format docker \
    -f "$HERE/Containerfile.$name" -t "localhost/$image" "$certs" >/dev/null
done
echo "podman ready: $(podman --version), podman-compose $("$PYTHON" -m pip show podman-compose | sed -n 's/^Version: //p')"
