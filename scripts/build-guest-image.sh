#!/usr/bin/env bash
# Builds a small Debian 12 (bookworm) cloud image with cloud-init, openssh-server and
# qemu-guest-agent, from the Debian archive the machine's own apt sources point to: no image
# download. It boots from its own disk (MBR, syslinux on a FAT boot partition, ext4 root)
# under BIOS firmware, with a virtio disk.
#
#   scripts/build-guest-image.sh          -> builds if needed, prints the image's path
#   scripts/build-guest-image.sh --path   -> prints where the image is (or would be), no build
#
# The image is cached in $GUEST_IMAGE_CACHE (default /var/cache/cloudpanel/guest-images),
# outside the checkout, under a name keyed by a hash of this file: the recipe (packages,
# settings, disk layout) is all here, so editing it gives a new image and an unchanged
# recipe is built once per machine. Everything but the path goes to stderr.
#
# No loop devices and no mounts: the root filesystem is filled straight from a directory
# (mkfs.ext4 -d) and the boot partition is written with mtools, so it works in containers.
set -euo pipefail

CACHE_DIR=${GUEST_IMAGE_CACHE:-/var/cache/cloudpanel/guest-images}
SUITE=bookworm
SOURCES=${GUEST_IMAGE_SOURCES:-/etc/apt/sources.list.d/debian.sources}
PACKAGES=(linux-image-cloud-amd64 systemd-sysv udev cloud-init openssh-server
          qemu-guest-agent systemd-resolved iproute2 netbase sudo e2fsprogs
          cloud-guest-utils fdisk ca-certificates)
DISK_MIB=2048   # virtual size; cloud-init grows the root to fill a bigger instance disk
BOOT_MIB=128    # FAT partition for syslinux, the kernel and the initrd
BOOT_START=2048 # sectors (1 MiB alignment)

self=$(readlink -f "${BASH_SOURCE[0]}")
recipe=$(sha256sum "$self" | cut -c1-16)
image="$CACHE_DIR/debian-12-$recipe.qcow2"

if [[ "${1:-}" == "--path" ]]; then
    echo "$image"
    exit 0
fi
[[ -f "$image" ]] && { echo "$image"; exit 0; }

if [[ $(id -u) -ne 0 ]]; then
    # mmdebstrap --mode=root needs root (it chroots and sets file owners).
    command -v sudo >/dev/null || { echo "Need root or sudo to build the guest image" >&2; exit 1; }
    exec sudo --preserve-env=GUEST_IMAGE_CACHE,GUEST_IMAGE_SOURCES "$self" "$@"
fi
for tool in mmdebstrap sfdisk mkfs.fat mcopy syslinux mkfs.ext4 qemu-img; do
    command -v "$tool" >/dev/null || {
        echo "Missing $tool: run scripts/install-system.sh image" >&2; exit 1; }
done
[[ -f "$SOURCES" ]] || { echo "No apt sources file at $SOURCES" >&2; exit 1; }

mkdir -p "$CACHE_DIR"
# Two builds at once (two test runs, say) would race: the second waits, then finds the image.
exec 9>"$CACHE_DIR/.lock"
flock 9
[[ -f "$image" ]] && { echo "$image"; exit 0; }

work=$(mktemp -d "$CACHE_DIR/.build-XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
started=$SECONDS

echo "Building the Debian $SUITE guest image (recipe $recipe) from $SOURCES ..." >&2
includes=$(IFS=,; echo "${PACKAGES[*]}")
mmdebstrap --variant=minbase --mode=root --quiet \
    --include="$includes" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    "$SUITE" "$root" "$SOURCES" >&2

# --- Guest settings -------------------------------------------------------------------------
# Without the locales package update-locale fails and cloud-init ends in status: error.
echo 'LANG=C.UTF-8' >"$root/etc/default/locale"
# Each instance gets its own machine id and SSH host keys at first boot.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
echo debian >"$root/etc/hostname"
cat >"$root/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
EOF
cat >"$root/etc/fstab" <<'EOF'
LABEL=rootfs	/	ext4	errors=remount-ro	0	1
EOF
# Every Ethernet NIC takes DHCP, whatever the name the guest gives it.
cat >"$root/etc/systemd/network/90-dhcp.network" <<'EOF'
[Match]
Type=ether

[Network]
DHCP=yes
EOF
ln -sf /run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
cat >"$root/etc/cloud/cloud.cfg.d/90-cloudpanel.cfg" <<'EOF'
# The panel hands identity over a NoCloud seed (an ISO labelled cidata); no network probing.
datasource_list: [ NoCloud, ConfigDrive, None ]
EOF
systemctl --root="$root" enable systemd-networkd.service systemd-resolved.service >&2
# Boot waits for one NIC at most 30 s (default: every NIC, 2 min), so a guest whose network
# is slow or absent still reaches cloud-init's later stages and the agent soon.
mkdir -p "$root/etc/systemd/system/systemd-networkd-wait-online.service.d"
cat >"$root/etc/systemd/system/systemd-networkd-wait-online.service.d/any.conf" <<'EOF2'
[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=30
EOF2
# The agent's unit is started by udev when its virtio-serial port appears; enabling it
# where the unit has an [Install] section does no harm.
systemctl --root="$root" enable qemu-guest-agent.service >&2 2>/dev/null || true
# No apt runs behind the user's back (and none at boot holding the dpkg lock).
systemctl --root="$root" mask apt-daily.timer apt-daily-upgrade.timer >&2
rm -rf "$root"/tmp/* "$root"/var/tmp/* "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/*
rm -f "$root"/var/log/*.log "$root"/var/log/apt/*

kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -1)

# --- Disk: MBR, FAT boot partition (syslinux), ext4 root --------------------------------------
raw="$work/disk.raw"
truncate -s "${DISK_MIB}M" "$raw"
boot_sectors=$((BOOT_MIB * 2048))
root_start=$((BOOT_START + boot_sectors))
root_sectors=$((DISK_MIB * 2048 - root_start))
sfdisk --quiet "$raw" <<EOF
label: dos
start=$BOOT_START, size=$boot_sectors, type=c, bootable
start=$root_start, size=$root_sectors, type=83
EOF

boot_offset=$((BOOT_START * 512))
mkfs.fat -F 16 --offset="$BOOT_START" -n BOOT "$raw" $((boot_sectors / 2)) >&2
cat >"$work/syslinux.cfg" <<'EOF'
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND root=LABEL=rootfs rw console=tty0 console=ttyS0,115200n8
EOF
cp "$kernel" "$work/vmlinuz"
cp "$initrd" "$work/initrd.img"
mcopy -i "$raw@@$boot_offset" "$work/vmlinuz" "$work/initrd.img" "$work/syslinux.cfg" ::
syslinux --install --offset "$boot_offset" "$raw"
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$raw" bs=440 count=1 conv=notrunc status=none

mkfs.ext4 -q -L rootfs -d "$root" -E offset=$((root_start * 512)) "$raw" $((root_sectors / 2))k >&2

qemu-img convert -c -O qcow2 "$raw" "$work/disk.qcow2"
chmod 0644 "$work/disk.qcow2"
mv "$work/disk.qcow2" "$image"
echo "Built $image ($(du -h "$image" | cut -f1), $((SECONDS - started)) s)" >&2
echo "$image"
