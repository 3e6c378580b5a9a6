#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages cloudpanel needs, only those that are missing.
#   scripts/install-system.sh run    -> Redis, libvirt + QEMU, build headers for libvirt-python
#   scripts/install-system.sh test   -> the same plus Chromium for browser tests
set -euo pipefail

packages=(redis-server libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
          qemu-system-x86 qemu-utils libvirt-dev pkg-config python3-venv python3-dev dnsmasq-base
          iptables util-linux procps passwd)
if [[ "${1:-run}" == "test" ]]; then
    packages+=(chromium)
fi

missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "Need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO="sudo"
fi
echo "Installing system packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
