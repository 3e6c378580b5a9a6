#!/usr/bin/env bash
# Runs cloudpanel as an unprivileged service user; what `make run` and `make setup` use.
#   scripts/launch.sh setup       migrate the database and do the first-run setup
#   scripts/launch.sh run         setup, then every Procfile process in the foreground (honcho)
#   scripts/launch.sh exec CMD..  any command as the service user, e.g.
#                                 scripts/launch.sh exec .venv/bin/python manage.py changepassword admin
# As root (or through sudo) it creates the system user $CLOUDPANEL_USER (default cloudpanel)
# once, in group libvirt so it may use qemu:///system, hands it the var directory, and drops
# to it with no capabilities left. Started by any other user, it runs as that user.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/.venv/bin
SERVICE_USER=${CLOUDPANEL_USER:-cloudpanel}
export CLOUDPANEL_VAR_DIR
CLOUDPANEL_VAR_DIR=$(realpath -m "${CLOUDPANEL_VAR_DIR:-$ROOT/var}")
VAR=$CLOUDPANEL_VAR_DIR
IMAGES=$(realpath -m "${IMAGE_STORE:-$VAR/images}")
# New files: no access for others; secrets are tightened below.
umask 027

die() { echo "error: $*" >&2; exit 1; }

# setpriv, then env without what would point the service user at root's home or session.
AS_USER=(setpriv --reuid="$SERVICE_USER" --regid="$SERVICE_USER" --init-groups
         --inh-caps=-all --bounding-set=-all --no-new-privs --
         env -u XDG_RUNTIME_DIR -u XDG_CONFIG_HOME -u XDG_CACHE_HOME -u XDG_DATA_HOME -u MAIL
         HOME="$VAR" USER="$SERVICE_USER" LOGNAME="$SERVICE_USER")
as_service_user() { "${AS_USER[@]}" "$@"; }

create_service_user() {
    if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
        echo "Creating system user $SERVICE_USER (home $VAR, no login shell)" >&2
        useradd --system --user-group --no-create-home --home-dir "$VAR" \
            --shell /usr/sbin/nologin --comment "cloudpanel service" "$SERVICE_USER"
    elif [[ $(getent passwd "$SERVICE_USER" | cut -d: -f6) != "$VAR" ]]; then
        usermod --home "$VAR" "$SERVICE_USER"  # a moved var dir (ssh looks there for .ssh)
    fi
    # libvirtd's read-write socket is for group libvirt (see scripts/start-services.sh).
    # Not kvm: QEMU is started by libvirtd, the panel never opens /dev/kvm.
    if getent group libvirt >/dev/null && ! id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx libvirt; then
        usermod -a -G libvirt "$SERVICE_USER"
    fi
}

# Fail early, with what to do, if the service user cannot read the code it is to run.
check_checkout_readable() {
    local python
    python=$(readlink -f "$BIN/python")
    as_service_user test -r "$ROOT/manage.py" -a -r "$ROOT/Procfile" \
        -a -r "$ROOT/cloudpanel/settings.py" -a -r "$BIN/honcho" 2>/dev/null \
        || die "user $SERVICE_USER cannot read the checkout $ROOT or its .venv (is it under a" \
               "private directory such as /root?). Put the checkout where other users may read" \
               "it (e.g. /opt/cloudpanel, then 'make run' there), or let them in: 'chmod o+x' on" \
               "every parent directory of $ROOT and 'chmod -R o+rX $ROOT'."
    as_service_user "$BIN/python" -c "import django, celery, uvicorn, honcho, libvirt" 2>/dev/null \
        || die "user $SERVICE_USER cannot run the venv's Python $python with its packages (an" \
               "interpreter under a private directory such as /root, e.g. pyenv?). Rebuild the" \
               "venv with Debian's Python: 'rm -rf $ROOT/.venv && make run' (the Makefile" \
               "prefers /usr/bin/python3)."
}

# Hands the service user what root (or another user) left in var/ (`make test`, an older run,
# manage.py run by hand): only cloudpanel's own entries, only directories and files with a
# single link, chowned from inside their directory (-execdir, chown -h), so that a link
# planted in var/ cannot make root chown a file elsewhere.
hand_over() {
    local entries=()
    if [[ -d $VAR && $(stat -c %U "$VAR") != "$SERVICE_USER" && -n $(ls -A "$VAR") ]] \
        && ! [[ -e $VAR/secret_key || -d $VAR/images || -d $VAR/keys || -d $VAR/staticfiles ]] \
        && ! compgen -G "$VAR/*.sqlite3" >/dev/null; then
        die "CLOUDPANEL_VAR_DIR=$VAR is not empty and holds no cloudpanel data:" \
            "refusing to give it to user $SERVICE_USER. Use a new directory."
    fi
    if [[ $IMAGES != "$VAR"/* && -d $IMAGES && $(stat -c %U "$IMAGES") != "$SERVICE_USER" ]]; then
        die "IMAGE_STORE=$IMAGES belongs to $(stat -c %U "$IMAGES"): 'chown -R" \
            "$SERVICE_USER: $IMAGES' if it is cloudpanel's, or choose another directory."
    fi
    mkdir -p "$VAR"
    entries=("$VAR"/{secret_key,keys,images,staticfiles,redis,celerybeat-schedule*} "$VAR"/*.sqlite3*)
    [[ $IMAGES != "$VAR"/* ]] && entries+=("$IMAGES")
    PATH=/usr/sbin:/usr/bin:/sbin:/bin find "$VAR" -maxdepth 0 ! -user "$SERVICE_USER" -execdir chown -h "$SERVICE_USER:$SERVICE_USER" {} +
    local entry
    for entry in "${entries[@]}"; do
        [[ -e $entry ]] || continue
        PATH=/usr/sbin:/usr/bin:/sbin:/bin find "$entry" -xdev ! -user "$SERVICE_USER" \
            \( -type d -o \( -type f -links 1 \) \) \
            -execdir chown -h "$SERVICE_USER:$SERVICE_USER" {} +
    done
}

# The libvirtd everyone else uses must accept the service user too; else the local host
# would be registered unreachable (or as the demo driver).
check_libvirt_access() {
    command -v virsh >/dev/null || return 0
    virsh -c qemu:///system uri >/dev/null 2>&1 || return 0  # no libvirtd here: demo host
    local err
    err=$(as_service_user virsh -c qemu:///system uri 2>&1 >/dev/null) && return 0
    die "user $SERVICE_USER (group libvirt) cannot connect to qemu:///system: ${err//$'\n'/ }." \
        "Without a polkit daemon, libvirtd must give its socket to group libvirt:" \
        "scripts/start-services.sh sets that in /etc/libvirt/libvirtd.conf; restart a libvirtd" \
        "it did not start yourself (kill \$(cat /run/libvirtd.pid); make run)."
}

# Data and secrets with the tightest modes that work (run as the owner).
tighten_modes() {
    mkdir -p "$VAR" "$IMAGES" "$VAR/keys"
    chmod 0750 "$VAR" "$IMAGES"
    chmod 0700 "$VAR/keys"
    find "$VAR/keys" -type f -exec chmod 0600 {} +
    local f
    for f in "$VAR/secret_key" "$VAR"/*.sqlite3 "$VAR"/*.sqlite3-wal "$VAR"/*.sqlite3-shm; do
        [[ -f $f && ! -L $f ]] && chmod 0600 "$f"
    done
    [[ -d $VAR/redis ]] && chmod 0700 "$VAR/redis"
    # Nothing of ours in var/ for other users (what root made under umask 022, say).
    find "$VAR" "$IMAGES" -xdev -user "$(id -u)" ! -type l -perm /o=rwx -exec chmod o-rwx {} +
    return 0
}

mode=${1:-run}
[[ $mode == run || $mode == setup || $mode == exec ]] || die "usage: $0 run|setup|exec CMD..."

if [[ $(id -u) -eq 0 ]]; then
    getent passwd "$SERVICE_USER" >/dev/null || command -v useradd >/dev/null \
        || die "useradd is missing (Debian package passwd)"
    create_service_user
    check_checkout_readable
    hand_over
    [[ $mode == exec ]] || check_libvirt_access
    echo "Running as user $SERVICE_USER, not root" >&2
    exec "${AS_USER[@]}" "$ROOT/scripts/launch.sh" "$@"
fi

if [[ $mode == exec ]]; then
    shift
    exec "$@"
fi
if [[ $(id -un) != "$SERVICE_USER" ]]; then
    echo "Started by $(id -un), not root: cloudpanel runs as $(id -un) (as root it would run as $SERVICE_USER)"
fi
tighten_modes
"$BIN/python" manage.py migrate --noinput
"$BIN/python" manage.py cloudpanel_setup
tighten_modes  # the first migrate creates the database and the secret key
[[ $mode == run ]] || exit 0
echo "cloudpanel on http://${CLOUDPANEL_HOST:-127.0.0.1}:${CLOUDPANEL_PORT:-8000}/  (Ctrl-C stops everything)"
exec "$BIN/honcho" start -f Procfile
