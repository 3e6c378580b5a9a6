#!/usr/bin/env bash
# Starts what cloudpanel runs on, if it is not running already: Redis, virtlogd, libvirtd.
# No systemd is assumed (containers, CI): daemons are started directly.
set -uo pipefail

SUDO=""
[[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null && SUDO="sudo"

redis_url="${REDIS_URL:-redis://127.0.0.1:6379/0}"
if ! redis-cli -u "$redis_url" ping >/dev/null 2>&1; then
    echo "Starting Redis on 127.0.0.1:6379"
    mkdir -p var/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir "$PWD/var/redis" --logfile "$PWD/var/redis/redis.log"
    for _ in $(seq 50); do redis-cli -u "$redis_url" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

# What udev does on an ordinary host: let QEMU (group kvm) open /dev/kvm.
if [[ -e /dev/kvm ]] && getent group kvm >/dev/null; then
    $SUDO chgrp kvm /dev/kvm && $SUDO chmod 660 /dev/kvm
fi

if [[ -x /usr/sbin/libvirtd ]]; then
    pgrep -x virtlogd >/dev/null || $SUDO /usr/sbin/virtlogd -d
    if ! pgrep -x libvirtd >/dev/null; then
        $SUDO /usr/sbin/libvirtd -d
        for _ in $(seq 50); do
            virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.2
        done
    fi
    # Instance disks and image copies go to the pool named 'default' (what virt-manager
    # creates on first use; a fresh libvirt has none).
    if ! virsh -c qemu:///system pool-info default >/dev/null 2>&1; then
        $SUDO mkdir -p /var/lib/libvirt/images
        virsh -c qemu:///system pool-define-as default dir --target /var/lib/libvirt/images >/dev/null
        virsh -c qemu:///system pool-autostart default >/dev/null
    fi
    virsh -c qemu:///system pool-start default >/dev/null 2>&1 || true
    # The default NAT network gives guests DHCP addresses; fine if it cannot start here.
    if virsh -c qemu:///system net-info default >/dev/null 2>&1; then
        virsh -c qemu:///system net-start default >/dev/null 2>&1 || true
    fi
fi
exit 0
