"""A lab of isolated libvirt hosts on one machine, for multi-host and migration tests.

Each lab host is its own ``virtlogd`` + ``libvirtd`` running in a private mount namespace
(``unshare --mount --propagation private``) in which the host's own directories are
bind-mounted over the paths libvirt uses::

    BASE/run/libvirt    -> /run/libvirt        (sockets, pid files of domains, status XML)
    BASE/etc/libvirt    -> /etc/libvirt        (a cleaned copy of the real config)
    BASE/lib/libvirt    -> /var/lib/libvirt    (holds the storage pool, see below)
    BASE/cache/libvirt  -> /var/cache/libvirt  (QEMU capabilities cache)
    BASE/log/libvirt    -> /var/log/libvirt    (libvirtd.log, qemu/<domain>.log)

Clients outside the namespace reach a host over TCP (``uri_tcp``) or through its unix socket
at ``BASE/run/libvirt/libvirt-sock`` (``uri_unix``).

Storage: every host's ``default`` pool has the same path as libvirt sees it,
``/var/lib/libvirt/images`` (``LabHost.pool_path``), which lives in a different real
directory per host (``LabHost.pool_dir``). Migration with non-shared storage
(``--copy-storage-all``) keeps the disk's path, and the destination pre-creates the disk in
the pool whose target path holds it, so every host needs a pool at the same path; a path
shared on the real filesystem would make the destination overwrite the source's disk.
Create volumes through libvirt (``vol-create-as``, ``createXML``), or from outside in
``pool_dir`` followed by a pool refresh; never write to ``pool_path`` from outside.

Standard library only: it must run before (and without) Django or libvirt-python.
Test infrastructure, not part of the installed panel. Run as root. CLI:
``python -m lab start|stop|status --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import grp
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DEFAULT_PORT_BASE = 16610  # clear of a system libvirtd's 16509
PORT_SEARCH_END = 17000  # auto-picked TCP ports stay below this (see LabHost.__post_init__)
PORTS_PER_HOST = 10  # VNC and migration ports reserved per host
POOL_PATH = "/var/lib/libvirt/images"  # pool target as every lab host's libvirt sees it
KVM_DEVICE = Path("/dev/kvm")
STATE_FILE = "lab.json"
# libvirt's sockaddr_un path limit is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107

# QEMU capabilities probed by earlier lab hosts, seeded into new ones: probing takes 4-9 s per
# lab and libvirt re-validates a seeded file (QEMU and libvirtd binaries, KVM usability,
# kernel, CPU) and probes again if it is stale. An empty CLOUDPANEL_LAB_CACHE disables it.
CAPS_CACHE = os.environ.get(
    "CLOUDPANEL_LAB_CACHE", str(Path.home() / ".cache/cloudpanel-lab/qemu-capabilities")
)

# (directory under the host's base_dir, path it is bind-mounted over inside the namespace)
BIND_MOUNTS = (
    ("run/libvirt", "/run/libvirt"),
    ("etc/libvirt", "/etc/libvirt"),
    ("lib/libvirt", "/var/lib/libvirt"),
    ("cache/libvirt", "/var/cache/libvirt"),
    ("log/libvirt", "/var/log/libvirt"),
)

# Definitions copied with /etc/libvirt that must not leak into a lab host: the real host's
# domains, networks (virbr0 would clash), pools, secrets, and their autostart links.
COPIED_DEFINITIONS = (
    "qemu/*.xml",
    "qemu/autostart/*",
    "qemu/networks/*.xml",
    "qemu/networks/autostart/*",
    "storage/*.xml",
    "storage/autostart/*",
    "secrets/*",
)

NETWORK_MODES = ("auto", "nat", "isolated", "l2", "none")


class LabError(RuntimeError):
    """A lab host did not start, answer or stop as expected."""


def _env() -> dict[str, str]:
    # Daemons look up iptables, dnsmasq, qemu helpers in PATH; LC_ALL keeps virsh parseable.
    env = dict(os.environ, LC_ALL="C")
    env["PATH"] = env.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
    return env


def virsh(
    uri: str, *args: str, check: bool = True, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``virsh -c URI ARGS``; raise LabError with its stderr on failure if check."""
    cmd = ["virsh", "-q", "-c", uri, *args]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=_env(), check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {shlex.join(cmd)}") from exc
    if check and proc.returncode != 0:
        raise LabError(f"{shlex.join(cmd)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def ensure_kvm_device() -> bool:
    """Give /dev/kvm the group and mode udev would (root:kvm 0660); return whether it exists.

    Without udev the node stays root:root 0600 and QEMU, running as libvirt-qemu (a member
    of group kvm), fails with "Could not access KVM kernel module: Permission denied", while
    libvirt's capabilities still offer the kvm domain type.
    """
    try:
        st = KVM_DEVICE.stat()
    except FileNotFoundError:
        return False
    kvm_gid = grp.getgrnam("kvm").gr_gid
    if st.st_gid != kvm_gid:
        os.chown(KVM_DEVICE, -1, kvm_gid)
    if st.st_mode & 0o660 != 0o660:
        os.chmod(KVM_DEVICE, (st.st_mode & 0o7777) | 0o660)
    return True


def pid_alive(pid: int | None) -> bool:
    """Whether pid runs; a zombie counts as dead (pid 1 here may reap late)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # As libvirtd binds: SO_REUSEADDR ignores TIME_WAIT left by a stopped daemon.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _bridge_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def _tcp_answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def _bridge_name(tcp_port: int) -> str:
    # Interface names are global (no network namespaces here) and at most 15 characters.
    return f"cpl{tcp_port}"


def find_port_base(n_hosts: int, start: int = DEFAULT_PORT_BASE) -> int:
    """First block of n_hosts free TCP ports (with no leftover lab bridge) at or after start."""
    for base in range(start, PORT_SEARCH_END - n_hosts + 1, n_hosts):
        ports = range(base, base + n_hosts)
        if all(_port_free(p) and not _bridge_exists(_bridge_name(p)) for p in ports):
            return base
    raise LabError(f"no {n_hosts} free ports between {start} and {PORT_SEARCH_END}")


def _edit_conf(path: Path, settings: dict[str, str | int | list]) -> None:
    """Set keys in a libvirt .conf file: drop existing lines for them (the first occurrence
    wins in libvirt's parser), then append the new values."""
    keep = []
    for line in path.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if "=" in line and not line.lstrip().startswith("#") and key in settings:
            continue
        keep.append(line)
    keep.append("\n# cloudpanel lab host")
    for key, value in settings.items():
        keep.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(keep) + "\n")


@dataclasses.dataclass
class LabHost:
    """One lab libvirt host. Fields below the line are derived from the ones above it."""

    name: str
    index: int
    base_dir: Path
    tcp_port: int
    kvm: bool
    network_mode: str | None = "auto"  # asked (NETWORK_MODES); after start: what runs
    network_error: str | None = None  # why the 'default' network is not NAT, if it is not
    # --- derived ---
    uri_tcp: str = dataclasses.field(init=False)
    uri_unix: str = dataclasses.field(init=False)
    pool_path: str = dataclasses.field(init=False)  # the pool as libvirt sees it
    pool_dir: Path = dataclasses.field(init=False)  # the same directory seen from outside
    vnc_ports: tuple[int, int] = dataclasses.field(init=False)
    migration_ports: tuple[int, int] = dataclasses.field(init=False)
    bridge: str = dataclasses.field(init=False)
    subnet: str = dataclasses.field(init=False)  # "10.x.y.0/24" of the default network

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir).absolute()
        self.uri_tcp = f"qemu+tcp://127.0.0.1:{self.tcp_port}/system"
        self.uri_unix = "qemu+unix:///system?socket=" + urllib.parse.quote(str(self.socket_path))
        self.pool_path = POOL_PATH
        self.pool_dir = self.base_dir / "lib/libvirt/images"
        # Every other resource is keyed on the TCP port, so labs with different ports (two
        # test runs, a CLI lab beside a test lab) never share VNC/migration ports or bridges.
        # VNC ports must be >= 5900; both ranges stay below Linux's ephemeral ports.
        slot = self.tcp_port % 1000
        vnc = 5900 + slot * PORTS_PER_HOST
        mig = 20000 + slot * PORTS_PER_HOST
        self.vnc_ports = (vnc, vnc + PORTS_PER_HOST - 1)
        self.migration_ports = (mig, mig + PORTS_PER_HOST - 1)
        self.bridge = _bridge_name(self.tcp_port)
        self.subnet = f"10.{200 + (self.tcp_port >> 8) % 50}.{self.tcp_port & 255}.0/24"

    # --- paths -------------------------------------------------------------------------

    @property
    def socket_path(self) -> Path:
        return self.base_dir / "run/libvirt/libvirt-sock"

    @property
    def libvirtd_pidfile(self) -> Path:
        return self.base_dir / "libvirtd.pid"

    @property
    def virtlogd_pidfile(self) -> Path:
        return self.base_dir / "virtlogd.pid"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "log/libvirt/libvirtd.log"

    @property
    def qemu_log_dir(self) -> Path:
        return self.base_dir / "log/libvirt/qemu"

    @property
    def caps_dir(self) -> Path:
        return self.base_dir / "cache/libvirt/qemu/capabilities"

    def _shared_caps_dir(self) -> Path | None:
        return Path(CAPS_CACHE) / ("kvm" if self.kvm else "tcg") if CAPS_CACHE else None

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict) -> LabHost:
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        return cls(**{k: v for k, v in data.items() if k in names})

    # --- processes -----------------------------------------------------------------------

    def pids(self) -> dict[str, list[int]]:
        """Live processes of this host: libvirtd, virtlogd, and others (QEMU, dnsmasq...)."""
        daemons = {
            "libvirtd": self._daemon_pid(self.libvirtd_pidfile),
            "virtlogd": self._daemon_pid(self.virtlogd_pidfile),
        }
        out = {k: [v] if v else [] for k, v in daemons.items()}
        known = set(daemons.values())
        out["other"] = sorted(p for p in self._namespace_pids() if p not in known)
        return out

    def _run_dir_id(self) -> tuple[int, int] | None:
        try:
            st = (self.base_dir / "run/libvirt").stat()
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def _owns(self, pid: int) -> bool:
        """Whether pid sees this host's run dir at /run/libvirt, i.e. runs in one of its
        namespaces. Guards against killing a stranger that reused a pid from a stale file."""
        ident = self._run_dir_id()
        try:
            st = os.stat(f"/proc/{pid}/root/run/libvirt")
        except OSError:
            return False
        return ident == (st.st_dev, st.st_ino) and pid_alive(pid)

    def _daemon_pid(self, pidfile: Path) -> int | None:
        pid = _read_pid(pidfile)
        return pid if pid and self._owns(pid) else None

    def _namespace_pids(self) -> set[int]:
        """QEMU (from run/libvirt/qemu/*.pid) and any other process living in this host's
        namespaces (a scan of /proc also catches QEMU whose pid file is already gone)."""
        pids = {_read_pid(p) for p in (self.base_dir / "run/libvirt/qemu").glob("*.pid")}
        ident = self._run_dir_id()
        if ident is not None:
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    with contextlib.suppress(OSError):
                        st = os.stat(entry / "root/run/libvirt")
                        if (st.st_dev, st.st_ino) == ident:
                            pids.add(int(entry.name))
        return {p for p in pids if p and p != os.getpid() and self._owns(p)}

    def libvirtd_running(self) -> bool:
        return self._daemon_pid(self.libvirtd_pidfile) is not None

    # --- setup ---------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the directories and this host's config (once; restarts reuse it)."""
        if len(str(self.socket_path)) > MAX_SOCKET_PATH:
            raise LabError(f"{self.socket_path} is too long for a unix socket: use a shorter dir")
        if self.kvm and not ensure_kvm_device():
            raise LabError(f"{self.name}: kvm requested but {KVM_DEVICE} does not exist")
        for sub, _ in BIND_MOUNTS:
            if sub != "etc/libvirt":
                (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        # The network driver writes <bridge>.macs there even without dnsmasq, and fails to
        # start domains with NICs if it is missing (the dnsmasq package would create it).
        (self.base_dir / "lib/libvirt/dnsmasq").mkdir(exist_ok=True)
        etc = self.base_dir / "etc/libvirt"
        if etc.exists():
            return
        shutil.copytree("/etc/libvirt", etc, symlinks=True)
        for pattern in COPIED_DEFINITIONS:
            for path in etc.glob(pattern):
                path.unlink()
        _edit_conf(
            etc / "libvirtd.conf",
            {
                "listen_tls": 0,
                "listen_tcp": 1,
                "listen_addr": "127.0.0.1",
                "tcp_port": str(self.tcp_port),
                "auth_tcp": "none",
                # libvirt refuses to migrate between hosts with the same UUID.
                "host_uuid": str(uuid.uuid4()),
                "log_outputs": "3:file:/var/log/libvirt/libvirtd.log",
            },
        )
        qemu_conf: dict[str, str | int | list] = {}
        if not self.kvm:
            # libvirt gives each QEMU a private /dev and moves every mount found under /dev
            # into it; it cannot move our file mount over /dev/kvm ("Unable to move
            # ...kvm mount to /dev/kvm: Invalid argument"), so no-KVM hosts run QEMU
            # without that per-domain namespace.
            qemu_conf["namespaces"] = []
        _edit_conf(
            etc / "qemu.conf",
            qemu_conf
            | {
                "vnc_listen": "127.0.0.1",
                "remote_display_port_min": self.vnc_ports[0],
                "remote_display_port_max": self.vnc_ports[1],
                "migration_port_min": self.migration_ports[0],
                "migration_port_max": self.migration_ports[1],
                # migration_address/migration_host would pin migrations to loopback, but
                # libvirt refuses a local address for either ("must not be the address of
                # the local machine"): migrate with --migrateuri tcp://127.0.0.1
                # --listen-address 127.0.0.1 (VIR_MIGRATE_PARAM_URI/_LISTEN_ADDRESS).
            },
        )
        shared = self._shared_caps_dir()
        if shared is not None and shared.is_dir():
            self.caps_dir.mkdir(parents=True, exist_ok=True)
            for path in shared.glob("*.xml"):
                shutil.copy2(path, self.caps_dir / path.name)
        # Stands in for /dev/kvm on a no-KVM host (see _namespace_script).
        nokvm = self.base_dir / "nokvm"
        nokvm.touch()
        nokvm.chmod(0)

    def _namespace_script(self, with_virtlogd: bool) -> str:
        q = shlex.quote
        lines = ["set -e"]
        for sub, target in BIND_MOUNTS:
            lines.append(f"mkdir -p {target}")
            lines.append(f"mount --bind {q(str(self.base_dir / sub))} {target}")
        if not self.kvm and KVM_DEVICE.exists():
            # Hide KVM from this namespace: an empty mode-0 file over /dev/kvm. libvirt's
            # probe of QEMU then finds no usable KVM, so `virsh capabilities` offers only
            # <domain type='qemu'/> and defining a type='kvm' domain fails ("Emulator ...
            # does not support virt type 'kvm'"), as on a host without KVM. (/dev/null over
            # it hides KVM too. Only the device's mode, shared by all namespaces, would not.)
            lines.append(f"mount --bind {q(str(self.base_dir / 'nokvm'))} {KVM_DEVICE}")
        if with_virtlogd:
            # Before libvirtd: QEMU's output goes through virtlogd's socket.
            lines.append(f"virtlogd -d -p {q(str(self.virtlogd_pidfile))}")
        lines.append(f"libvirtd -d --listen -p {q(str(self.libvirtd_pidfile))}")
        return "\n".join(lines)

    def start_libvirtd(self, timeout: float = 60.0, wait: bool = True) -> None:
        """Start this host's daemons (virtlogd too if it is not running), with the config
        written by prepare(), in a fresh private mount namespace."""
        self.prepare()
        if self.libvirtd_running():
            return
        if not _port_free(self.tcp_port):
            raise LabError(f"{self.name}: port {self.tcp_port} is in use (another lab?)")
        with_virtlogd = self._daemon_pid(self.virtlogd_pidfile) is None
        with (self.base_dir / "start.log").open("a") as log:
            proc = subprocess.run(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                 self._namespace_script(with_virtlogd)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=_env(), timeout=30, check=False,
            )  # fmt: skip
        if proc.returncode != 0:
            raise LabError(f"{self.name}: daemons failed to start\n{self._logs()}")
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until libvirtd answers over TCP; fail fast if it died."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if _tcp_answers(self.tcp_port):
                proc = virsh(self.uri_tcp, "uri", check=False, timeout=10)
                if proc.returncode == 0:
                    return
                last = proc.stderr.strip()
            # `libvirtd -d` returns after writing its pid file, so no live pid means it died
            # (it exits, removing the file, when a driver fails to initialise).
            if not self.libvirtd_running():
                raise LabError(f"{self.name}: libvirtd exited during start\n{self._logs()}")
            time.sleep(0.1)
        raise LabError(f"{self.name}: no answer at {self.uri_tcp} in {timeout}s {last}\n"
                       f"{self._logs()}")  # fmt: skip

    def _logs(self) -> str:
        return (
            f"--- {self.base_dir / 'start.log'}\n{_tail(self.base_dir / 'start.log')}\n"
            f"--- {self.log_path}\n{_tail(self.log_path)}"
        )

    def stop_libvirtd(self, timeout: float = 15.0) -> None:
        """Stop libvirtd only; virtlogd and running domains stay, as on a daemon restart."""
        _kill([self._daemon_pid(self.libvirtd_pidfile)], timeout)

    def restart_libvirtd(self, timeout: float = 60.0) -> None:
        """Stop and start libvirtd with the same config, ports and UUID."""
        self.stop_libvirtd()
        self.start_libvirtd(timeout)

    def setup_pool(self) -> None:
        """Define, build, start and autostart the dir pool 'default' at pool_path."""
        if self._active("pool-list", "default"):
            return
        # One virsh process for the four commands saves connections; virsh carries on after
        # a failed command and reports only the last one, hence the check afterwards.
        proc = virsh(
            self.uri_tcp,
            f"pool-define-as default dir --target {POOL_PATH}; pool-build default; "
            "pool-start default; pool-autostart default",
            check=False,
        )
        if not self._active("pool-list", "default"):
            raise LabError(f"{self.name}: pool 'default' did not start: {proc.stderr.strip()}")

    def _active(self, list_cmd: str, name: str) -> bool:
        """Whether pool/network `name` is active (list_cmd: pool-list or net-list)."""
        return name in virsh(self.uri_tcp, list_cmd, "--name").stdout.split()

    def probe_capabilities(self, timeout: float = 60.0) -> None:
        """Have libvirt probe QEMU now, so the first domain defined is not slowed by it, and
        share the result with later lab hosts (see CAPS_CACHE)."""
        virsh(self.uri_tcp, "capabilities", timeout=timeout)
        shared = self._shared_caps_dir()
        if shared is None:
            return
        shared.mkdir(parents=True, exist_ok=True)
        for path in self.caps_dir.glob("*.xml"):
            # Copy then rename: a lab starting meanwhile never reads half a file.
            tmp = shared / f".{path.name}.{os.getpid()}"
            shutil.copy2(path, tmp)
            os.replace(tmp, shared / path.name)

    def setup_network(self) -> None:
        """Define and start network 'default' in the first mode that works; record it in
        network_mode (None if none worked) and why better modes were not used in
        network_error.

        Modes: "nat" (NAT, DHCP and DNS), "isolated" (an IP on the bridge, DHCP and DNS, no
        forwarding), "l2" (a bare bridge: no IP, no DHCP, no forwarding). Domain NICs attach
        to any of them. "auto" tries nat, isolated, l2 with dnsmasq installed, else only l2:
        libvirt 9.0 without dnsmasq starts a network with an IP (DNS off, no DHCP), but then
        libvirtd segfaults on its next start while restoring that active network, which
        would break restart_libvirtd(). nat and isolated add iptables rules, removed again
        by net-destroy (and by stop() if libvirtd died first)."""
        asked = self.network_mode
        has_dnsmasq = shutil.which("dnsmasq", path=_env()["PATH"]) is not None
        errors = [] if has_dnsmasq else ["dnsmasq is not installed: no nat/isolated network"]
        if asked == "auto":
            modes = ["nat", "isolated", "l2"] if has_dnsmasq else ["l2"]
        else:
            modes = [] if asked == "none" or (asked != "l2" and not has_dnsmasq) else [asked]
        xml_path = self.base_dir / "network-default.xml"
        for mode in modes:
            xml_path.write_text(self._network_xml(mode))
            proc = virsh(
                self.uri_tcp,
                f"net-define {xml_path}; net-start default; net-autostart default",
                check=False,
            )
            if self._active("net-list", "default"):
                self.network_mode = mode
                self.network_error = "; ".join(errors) or None
                return
            errors.append(f"{mode}: {proc.stderr.strip()}")
            virsh(self.uri_tcp, "net-destroy default; net-undefine default", check=False)
        self.network_mode = None
        self.network_error = "; ".join(errors) or None

    def _network_xml(self, mode: str) -> str:
        net = ET.Element("network")
        ET.SubElement(net, "name").text = "default"
        if mode == "nat":
            ET.SubElement(net, "forward", mode="nat")
        ET.SubElement(net, "bridge", name=self.bridge, stp="on", delay="0")
        if mode != "l2":
            prefix = self.subnet.rsplit(".", 1)[0]
            ip = ET.SubElement(net, "ip", address=f"{prefix}.1", netmask="255.255.255.0")
            dhcp = ET.SubElement(ip, "dhcp")
            ET.SubElement(dhcp, "range", start=f"{prefix}.2", end=f"{prefix}.254")
        return ET.tostring(net, encoding="unicode")

    # --- teardown ------------------------------------------------------------------------

    def stop(self, timeout: float = 15.0) -> None:
        """Stop everything this host started and remove its directory. Safe to call twice
        and after a partial start."""
        if self.libvirtd_running():
            # Let libvirt remove its own bridge and iptables rules.
            names = virsh(self.uri_tcp, "net-list", "--name", check=False, timeout=10)
            for net in names.stdout.split():
                virsh(self.uri_tcp, "net-destroy", net, check=False, timeout=10)
        # libvirtd first so it does not react to its domains dying, virtlogd last so QEMU's
        # final output is still logged.
        _kill([self._daemon_pid(self.libvirtd_pidfile)], timeout)
        others = self._namespace_pids() - {self._daemon_pid(self.virtlogd_pidfile)}
        cgroups = _machine_cgroups(others)  # read before the processes are gone
        _kill(others, timeout)
        _kill([self._daemon_pid(self.virtlogd_pidfile)], timeout)
        _remove_cgroups(cgroups)
        self._remove_network_leftovers()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def _remove_network_leftovers(self) -> None:
        """Delete the bridge and iptables rules a killed libvirtd left behind (only ones
        naming this host's unique bridge or subnet)."""
        if _bridge_exists(self.bridge):
            subprocess.run(["ip", "link", "del", self.bridge], env=_env(), check=False)
        marks = {self.bridge, self.subnet}
        for tool in ("iptables", "ip6tables"):
            if not shutil.which(tool, path=_env()["PATH"]):
                continue
            for table in ("filter", "nat", "mangle"):
                out = subprocess.run(
                    [tool, "-w", "-t", table, "-S"],
                    capture_output=True, text=True, env=_env(), check=False,
                ).stdout  # fmt: skip
                for rule in out.splitlines():
                    args = shlex.split(rule)
                    if args[:1] == ["-A"] and marks & set(args):
                        subprocess.run(
                            [tool, "-w", "-t", table, "-D", *args[1:]],
                            env=_env(), check=False, capture_output=True,
                        )  # fmt: skip


def _machine_cgroups(pids: Iterable[int]) -> set[str]:
    """libvirt's per-domain cgroups ("/machine/qemu-ID-NAME.libvirt-qemu") holding pids.

    Without systemd they are global, named by domain ID and name only, and libvirt removes
    them only when it stops the domain itself, so stop() removes those of the QEMU it kills.
    (Two lab hosts running a domain with the same name and ID share one.)"""
    found = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
                parts = line.split(":", 2)[2].split("/")
                if len(parts) > 2 and parts[1] == "machine":
                    found.add("/".join(parts[:3]))
    return found


def _remove_cgroups(paths: Iterable[str]) -> None:
    """rmdir the cgroups, children first, in every hierarchy (cgroup v1 has one per
    controller). The kernel refuses to remove a cgroup that still holds a process."""
    roots = [Path("/sys/fs/cgroup"), *Path("/sys/fs/cgroup").iterdir()]
    for top in (root / rel.lstrip("/") for root in roots for rel in paths):
        if top.is_dir():
            for dirpath in sorted((d for d, _, _ in os.walk(top)), key=len, reverse=True):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)


def _kill(pids: Iterable[int | None], timeout: float) -> None:
    """SIGTERM, wait, then SIGKILL what is left."""
    pids = {p for p in pids if p}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = {p for p in pids if pid_alive(p)}
            if not pids:
                return
            time.sleep(0.05)


class Lab:
    """Several LabHosts. ``with Lab() as lab: lab.start(2)`` stops it on exit."""

    def __init__(
        self,
        port_base: int | None = None,
        network: str = "auto",
        timeout: float = 90.0,
    ) -> None:
        if network not in NETWORK_MODES:
            raise ValueError(f"network must be one of {NETWORK_MODES}")
        self.port_base = port_base  # None: first free block from DEFAULT_PORT_BASE
        self.network = network
        self.timeout = timeout
        self.base_dir: Path | None = None
        self.hosts: list[LabHost] = []
        self._own_dir = False  # remove base_dir itself on stop (we created it)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __getitem__(self, index: int) -> LabHost:
        return self.hosts[index]

    def start(
        self,
        n_hosts: int = 2,
        kvm: bool | Sequence[bool] = (True, False),
        base_dir: str | Path | None = None,
    ) -> Lab:
        """Start n_hosts hosts; kvm is one flag for all or one per host (missing: False).

        Returns self once every host answers, has an active pool 'default', has tried its
        network 'default' and has its QEMU capabilities probed (so the first domain
        definition is not slowed by a probe)."""
        if self.hosts:
            raise LabError("lab already started")
        flags = [kvm] * n_hosts if isinstance(kvm, bool) else list(kvm)
        flags = (flags + [False] * n_hosts)[:n_hosts]
        if base_dir is None:
            self.base_dir, self._own_dir = Path(tempfile.mkdtemp(prefix="cplab-")), True
        else:
            self.base_dir = Path(base_dir).absolute()
            self._own_dir = not self.base_dir.exists()
            self.base_dir.mkdir(parents=True, exist_ok=True)
        port_base = self.port_base or find_port_base(n_hosts)
        self.hosts = [
            LabHost(
                name=f"host{i}",
                index=i,
                base_dir=self.base_dir / f"host{i}",
                tcp_port=port_base + i,
                kvm=flags[i],
                network_mode=self.network,
            )
            for i in range(n_hosts)
        ]
        try:
            self._save()  # first, so `lab stop --dir` can clean up a failed start
            # Launch all daemons, then bring the hosts up side by side: QEMU's capabilities
            # probe alone takes seconds per host when not cached.
            for host in self.hosts:
                host.start_libvirtd(wait=False)
            self._each(self._bring_up)
            self._save()
        except BaseException:
            self.stop()
            raise
        return self

    def _bring_up(self, host: LabHost) -> None:
        host.wait_ready(self.timeout)
        host.setup_pool()
        host.setup_network()
        host.probe_capabilities(self.timeout)

    def _each(self, func: Callable[[LabHost], object]) -> None:
        """Run func on every host in parallel threads; re-raise the first failure."""
        if self.hosts:
            with ThreadPoolExecutor(len(self.hosts)) as pool:
                for done in [pool.submit(func, host) for host in self.hosts]:
                    done.result()

    def stop(self) -> None:
        """Stop every host and remove the lab's directories. Safe to call twice."""
        self._each(LabHost.stop)
        if self.base_dir is not None:
            (self.base_dir / STATE_FILE).unlink(missing_ok=True)
            if self._own_dir:
                shutil.rmtree(self.base_dir, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    self.base_dir.rmdir()  # only if empty: it may be the caller's dir
        self.hosts = []

    def _save(self) -> None:
        assert self.base_dir is not None
        state = {
            "base_dir": str(self.base_dir),
            "own_dir": self._own_dir,
            "hosts": [h.to_dict() for h in self.hosts],
        }
        (self.base_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, base_dir: str | Path) -> Lab:
        """The lab whose state is in base_dir/lab.json (for stop/status from another process)."""
        base = Path(base_dir).absolute()
        try:
            state = json.loads((base / STATE_FILE).read_text())
        except FileNotFoundError:
            raise LabError(f"no lab state in {base / STATE_FILE}") from None
        lab = cls()
        lab.base_dir = base
        lab._own_dir = state.get("own_dir", False)
        lab.hosts = [LabHost.from_dict(h) for h in state["hosts"]]
        return lab


# --- CLI -------------------------------------------------------------------------------------


def _describe(host: LabHost, status: bool = False) -> str:
    lines = [f"{host.name}: kvm={'yes' if host.kvm else 'no'}"]
    if status:
        pids = host.pids()
        up = "up" if pids["libvirtd"] else "DOWN"
        lines[0] += f" libvirtd={up} pids={pids}"
    lines += [
        f"  uri_tcp   {host.uri_tcp}",
        f"  uri_unix  {host.uri_unix}",
        f"  pool      {host.pool_path} (outside the namespace: {host.pool_dir})",
        f"  network   default: {host.network_mode or 'none'}"
        + (f" ({host.network_error})" if host.network_error else ""),
        f"  vnc ports {host.vnc_ports[0]}-{host.vnc_ports[1]}, "
        f"migration ports {host.migration_ports[0]}-{host.migration_ports[1]}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab", description="A lab of isolated libvirt hosts."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a lab and print its URIs")
    start.add_argument("--hosts", type=int, default=2, help="number of hosts (default 2)")
    start.add_argument(
        "--no-kvm-on", type=int, nargs="*", default=[1], metavar="IDX",
        help="hosts without KVM, TCG only (default: 1; give none to use KVM everywhere)",
    )  # fmt: skip
    start.add_argument("--port-base", type=int, help="TCP port of host0 (default: first free "
                       f"from {DEFAULT_PORT_BASE})")  # fmt: skip
    start.add_argument("--network", choices=NETWORK_MODES, default="auto")
    start.add_argument("--json", action="store_true", help="print the lab state as JSON")
    for name in ("stop", "status"):
        cmd = sub.add_parser(name, help=f"{name} the lab in --dir")
        if name == "status":
            cmd.add_argument("--json", action="store_true")
    for cmd in sub.choices.values():
        cmd.add_argument("--dir", default="var/lab", help="lab directory (default var/lab)")
    args = parser.parse_args(argv)
    base = Path(args.dir).absolute()

    try:
        if args.command == "start":
            if (base / STATE_FILE).exists():
                raise LabError(f"a lab is recorded in {base / STATE_FILE}: stop it first")
            kvm = [i not in args.no_kvm_on for i in range(args.hosts)]
            began = time.monotonic()
            lab = Lab(port_base=args.port_base, network=args.network).start(args.hosts, kvm, base)
            if args.json:
                print((base / STATE_FILE).read_text(), end="")
            else:
                print(f"lab started in {time.monotonic() - began:.1f}s, state in "
                      f"{base / STATE_FILE}")  # fmt: skip
                for host in lab.hosts:
                    print(_describe(host))
        elif args.command == "stop":
            if not (base / STATE_FILE).exists():
                print(f"no lab recorded in {base}")  # stop is idempotent
                return 0
            Lab.load(base).stop()
            print(f"lab in {base} stopped")
        else:
            lab = Lab.load(base)
            if args.json:
                hosts = [dict(h.to_dict(), pids=h.pids()) for h in lab.hosts]
                print(json.dumps({"base_dir": str(base), "hosts": hosts}, indent=2))
            else:
                for host in lab.hosts:
                    print(_describe(host, status=True))
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
