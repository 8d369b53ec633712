#!/usr/bin/env bash
# Install what colopp needs on a fresh Debian 12 host: system packages, then a venv.
# Idempotent; re-running after a pyproject change re-installs the package.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (apt-get, network namespaces, QEMU)" >&2
  exit 1
fi

packages=(
  debootstrap busybox-static iperf3 wrk redis-tools curl cpio e2fsprogs kmod iproute2 iputils-ping
  gcc libc6-dev libvirt-dev pkg-config openssh-client openssh-server
  postgresql prometheus nodejs
  chromium chromium-driver
  libvirt-daemon-system libvirt-clients
  etcd-server etcd-client
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: apt-get install ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PYTHON="${PYTHON:-python3}"
stamp=.venv/.colopp-setup
want="$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: python venv (.venv) with colopp and its test tools"
  "$PYTHON" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev,bench]'
  echo "$want" > "$stamp"
fi
