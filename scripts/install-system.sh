#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages cloudpanel needs, only those that are missing.
#   scripts/install-system.sh run    -> Redis, libvirt + QEMU, build headers for libvirt-python
#   scripts/install-system.sh test   -> the same plus Chromium for browser tests and the
#                                       guest image's build tools
#   scripts/install-system.sh image  -> only what scripts/build-guest-image.sh needs
set -euo pipefail

# What scripts/build-guest-image.sh (make guest-image) builds the Debian guest image with.
image_tools=(mmdebstrap syslinux syslinux-common mtools dosfstools fdisk e2fsprogs qemu-utils
             util-linux)
packages=(redis-server libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
          qemu-system-x86 qemu-utils libvirt-dev pkg-config python3-venv python3-dev dnsmasq-base
          iptables util-linux procps passwd ovmf)  # ovmf: images with firmware "uefi"
# The tests run the capacity lock's test on PostgreSQL at 127.0.0.1:5432 (as in CI, where the
# server is already there): install it only where nothing answers on that port.
postgres_answers() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if [[ "${1:-run}" == "image" ]]; then
    packages=("${image_tools[@]}")
elif [[ "${1:-run}" == "test" ]]; then
    packages+=(chromium openssh-client "${image_tools[@]}")  # ssh: the real-guest test logs in
    postgres_answers || packages+=(postgresql)
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

# A PostgreSQL installed here for the tests is set up as CI's is: user postgres may connect
# over 127.0.0.1 without a password (the tests' postgres://postgres@127.0.0.1:5432/...).
# Only a server this script has just installed is changed; one installed before is left as
# its admin set it up.
if [[ " ${missing[*]} " == *" postgresql "* ]]; then
    for hba in /etc/postgresql/*/*/pg_hba.conf; do
        [[ -f $hba ]] || continue
        $SUDO grep -q '^# Added by cloudpanel' "$hba" && continue
        tmp=$(mktemp)
        {
            echo "# Added by cloudpanel (scripts/install-system.sh test): the tests' server, as in CI."
            echo "host all postgres 127.0.0.1/32 trust"
            $SUDO cat "$hba"
        } >"$tmp"
        $SUDO install -o postgres -g postgres -m 0640 "$tmp" "$hba"
        rm -f "$tmp"
        # The package may have started the cluster already: have it read the new rule.
        cluster=${hba#/etc/postgresql/}
        cluster=${cluster%/pg_hba.conf}
        $SUDO pg_ctlcluster "${cluster%%/*}" "${cluster#*/}" reload 2>/dev/null || true
    done
fi
