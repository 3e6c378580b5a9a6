#!/usr/bin/env bash
# Starts what cloudpanel runs on, if it is not running already: Redis, virtlogd, libvirtd;
# with `test` (make test) also the PostgreSQL cluster on port 5432 the tests use.
# No systemd is assumed (containers, CI): daemons are started directly. Run as root (or
# with sudo) these daemons are set up so the panel itself never needs root: Redis runs as
# user redis, and libvirtd lets members of group libvirt use qemu:///system.
set -uo pipefail

SUDO=""
[[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null && SUDO="sudo"
as_root() { [[ $(id -u) -eq 0 || -n $SUDO ]]; }

LIBVIRTD_CONF=/etc/libvirt/libvirtd.conf
LIBVIRTD_PIDFILE=/run/libvirtd.pid          # libvirtd's own default (lab hosts use theirs)
OURS_PIDFILE=/run/cloudpanel-libvirtd.pid  # the libvirtd this script started, if any

# The pid in a daemon's pid file, if that process is alive and has that name. (pgrep would
# also find the libvirt lab's daemons, which run under the same names.)
daemon_pid() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ && $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]] && echo "$pid"
}

start_redis() {
    local redis_url="${REDIS_URL:-redis://127.0.0.1:6379/0}"
    redis-cli -u "$redis_url" ping >/dev/null 2>&1 && return 0
    echo "Starting Redis on 127.0.0.1:6379"
    local args=(--daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no)
    if as_root && getent passwd redis >/dev/null; then
        # Debian's own user and directories: Redis never runs as root.
        $SUDO install -d -o redis -g redis -m 0750 /var/lib/redis /run/redis
        $SUDO install -d -o redis -g adm -m 2750 /var/log/redis
        $SUDO setpriv --reuid=redis --regid=redis --init-groups --inh-caps=-all \
            redis-server "${args[@]}" --dir /var/lib/redis \
            --pidfile /run/redis/redis-server.pid --logfile /var/log/redis/redis-server.log
    else
        local dir="${CLOUDPANEL_VAR_DIR:-$PWD/var}/redis"
        mkdir -p -m 0700 "$dir"
        redis-server "${args[@]}" --dir "$dir" --logfile "$dir/redis.log"
    fi
    for _ in $(seq 50); do redis-cli -u "$redis_url" ping >/dev/null 2>&1 && break; sleep 0.1; done
}

# Without a polkit daemon (no systemd, no D-Bus) Debian's libvirtd refuses every non-root
# client of its read-write socket (auth_unix_rw defaults to "polkit"). Then members of group
# libvirt get the socket instead, as on a libvirt built without polkit. Prints "changed" if
# it rewrote the file. The lab copies this file for its hosts, which root reaches anyway.
configure_libvirtd_socket() {
    pgrep -x polkitd >/dev/null && return 0
    getent group libvirt >/dev/null || return 0
    [[ -f $LIBVIRTD_CONF ]] || return 0
    local setting='^[[:space:]]*(auth_unix_rw|unix_sock_group|unix_sock_rw_perms)[[:space:]]*='
    local current
    current=$(grep -E "$setting" "$LIBVIRTD_CONF" | tr -d ' \t' | sort | tr '\n' ' ')
    [[ $current == 'auth_unix_rw="none" unix_sock_group="libvirt" unix_sock_rw_perms="0770" ' ]] \
        && return 0
    # An admin's own choice (sasl, none with other perms, ...) is kept.
    if grep -Eq '^[[:space:]]*auth_unix_rw[[:space:]]*=' "$LIBVIRTD_CONF" \
        && ! grep -Eq '^[[:space:]]*auth_unix_rw[[:space:]]*=[[:space:]]*"polkit"' "$LIBVIRTD_CONF"; then
        return 0
    fi
    if ! as_root; then
        echo "warning: cannot edit $LIBVIRTD_CONF without root: group libvirt gets no access" >&2
        return 0
    fi
    echo "Configuring libvirtd: group libvirt may use qemu:///system (no polkit runs here)" >&2
    local tmp
    tmp=$(mktemp)
    # The first occurrence of a key wins in libvirt's parser: comment out earlier ones.
    sed -E "s/$setting/#&/" "$LIBVIRTD_CONF" >"$tmp"
    cat >>"$tmp" <<'EOF'

# Added by cloudpanel (scripts/start-services.sh): no polkit daemon runs on this machine,
# so members of group libvirt get read-write access through the socket's permissions.
unix_sock_group = "libvirt"
unix_sock_rw_perms = "0770"
auth_unix_rw = "none"
EOF
    [[ -e $LIBVIRTD_CONF.before-cloudpanel ]] || $SUDO cp -p "$LIBVIRTD_CONF" "$LIBVIRTD_CONF.before-cloudpanel"
    $SUDO install -m 0644 "$tmp" "$LIBVIRTD_CONF.new" && $SUDO mv "$LIBVIRTD_CONF.new" "$LIBVIRTD_CONF"
    rm -f "$tmp"
    echo changed
}

start_libvirtd() {
    $SUDO /usr/sbin/libvirtd -d
    for _ in $(seq 50); do
        virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.2
    done
    local pid
    pid=$(daemon_pid "$LIBVIRTD_PIDFILE" libvirtd) && echo "$pid" | $SUDO tee "$OURS_PIDFILE" >/dev/null
}

# Restart the running libvirtd so it reads the new config, but only if this script started
# it: someone else's daemon is theirs to restart.
restart_libvirtd() {
    local pid ours
    pid=$(daemon_pid "$LIBVIRTD_PIDFILE" libvirtd) || { start_libvirtd; return; }
    ours=$(cat "$OURS_PIDFILE" 2>/dev/null)
    if [[ $pid != "$ours" ]]; then
        echo "warning: libvirtd (pid $pid) was not started by cloudpanel; restart it to apply" \
             "$LIBVIRTD_CONF (running domains keep running)" >&2
        return 0
    fi
    echo "Restarting libvirtd (pid $pid) for its new socket settings"
    $SUDO kill "$pid"
    for _ in $(seq 100); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
    start_libvirtd
}

# The tests' PostgreSQL (127.0.0.1:5432, see scripts/install-system.sh): a local cluster on
# that port is started if it is down. pg_ctlcluster works without systemd.
postgres_answers() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
start_postgres() {
    postgres_answers && return 0
    if ! command -v pg_lsclusters >/dev/null; then
        echo "warning: nothing answers on 127.0.0.1:5432 and PostgreSQL is not installed" >&2
        return 0
    fi
    local ver name port status
    while read -r ver name port status _; do
        [[ $port == 5432 && $status == down* ]] || continue
        echo "Starting PostgreSQL $ver/$name on port 5432"
        $SUDO pg_ctlcluster "$ver" "$name" start
    done < <(pg_lsclusters -h 2>/dev/null)
    for _ in $(seq 100); do postgres_answers && return 0; sleep 0.1; done
    echo "warning: PostgreSQL does not answer on 127.0.0.1:5432" >&2
}

start_redis
[[ ${1:-} == test ]] && start_postgres

# What udev does on an ordinary host: let QEMU (group kvm) open /dev/kvm.
if [[ -e /dev/kvm ]] && getent group kvm >/dev/null; then
    $SUDO chgrp kvm /dev/kvm && $SUDO chmod 660 /dev/kvm
fi

if [[ -x /usr/sbin/libvirtd ]]; then
    changed=$(configure_libvirtd_socket)
    daemon_pid /run/virtlogd.pid virtlogd >/dev/null || $SUDO /usr/sbin/virtlogd -d
    if ! daemon_pid "$LIBVIRTD_PIDFILE" libvirtd >/dev/null; then
        start_libvirtd
    elif [[ $changed == changed ]]; then
        restart_libvirtd
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
