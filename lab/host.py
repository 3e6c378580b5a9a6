"""One lab host: its own libvirtd + virtlogd in a private mount namespace (see lab/__init__)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path

from .config import (
    BIND_MOUNTS,
    CAPS_CACHE,
    KVM_DEVICE,
    MAX_SOCKET_PATH,
    POOL_PATH,
    SHARED_POOL_PATH,
    ensure_kvm_device,
    namespace_script,
    write_config,
)
from .network import bridge_name, network_xml, port_free, remove_network_leftovers, tcp_answers
from .processes import (
    LabError,
    daemon_env,
    kill_and_wait,
    machine_cgroups,
    pid_alive,
    read_pid,
    remove_cgroups,
    tail,
    virsh,
)

PORTS_PER_HOST = 10  # VNC and migration ports reserved per host


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
    # libvirt offers kvm (its probe of QEMU opens /dev/kvm) but guests may not open it: the
    # case the panel's KVM probe exists for (see config.GUEST_DEVICES_WITHOUT_KVM).
    kvm_denied: bool = False
    # The lab's shared directory, pool 'shared' at SHARED_POOL_PATH on every host (None: no
    # such pool).
    shared_dir: str | None = None
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
        self.bridge = bridge_name(self.tcp_port)
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
        pid = read_pid(pidfile)
        return pid if pid and self._owns(pid) else None

    def _namespace_pids(self) -> set[int]:
        """QEMU (from run/libvirt/qemu/*.pid) and any other process living in this host's
        namespaces (a scan of /proc also catches QEMU whose pid file is already gone)."""
        pids = {read_pid(p) for p in (self.base_dir / "run/libvirt/qemu").glob("*.pid")}
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
        if self.kvm_denied and not self.kvm:
            raise LabError(f"{self.name}: kvm_denied needs kvm: only an offered KVM is denied")
        for sub, _ in BIND_MOUNTS:
            if sub != "etc/libvirt":
                (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        # The network driver writes <bridge>.macs there even without dnsmasq, and fails to
        # start domains with NICs if it is missing (the dnsmasq package would create it).
        (self.base_dir / "lib/libvirt/dnsmasq").mkdir(exist_ok=True)
        if (self.base_dir / "etc/libvirt").exists():
            return
        write_config(self)
        shared = self._shared_caps_dir()
        if shared is not None and shared.is_dir():
            self.caps_dir.mkdir(parents=True, exist_ok=True)
            for path in shared.glob("*.xml"):
                shutil.copy2(path, self.caps_dir / path.name)
        # Stands in for /dev/kvm on a no-KVM host (see config.namespace_script).
        nokvm = self.base_dir / "nokvm"
        nokvm.touch()
        nokvm.chmod(0)

    def start_libvirtd(self, timeout: float = 60.0, wait: bool = True) -> None:
        """Start this host's daemons (virtlogd too if it is not running), with the config
        written by prepare(), in a fresh private mount namespace."""
        self.prepare()
        if self.libvirtd_running():
            return
        if not port_free(self.tcp_port):
            raise LabError(f"{self.name}: port {self.tcp_port} is in use (another lab?)")
        with_virtlogd = self._daemon_pid(self.virtlogd_pidfile) is None
        with (self.base_dir / "start.log").open("a") as log:
            proc = subprocess.run(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                 namespace_script(self, with_virtlogd)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=daemon_env(), timeout=30, check=False,
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
            if tcp_answers(self.tcp_port):
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
            f"--- {self.base_dir / 'start.log'}\n{tail(self.base_dir / 'start.log')}\n"
            f"--- {self.log_path}\n{tail(self.log_path)}"
        )

    def stop_libvirtd(self, timeout: float = 15.0) -> None:
        """Stop libvirtd only; virtlogd and running domains stay, as on a daemon restart."""
        kill_and_wait([self._daemon_pid(self.libvirtd_pidfile)], timeout)

    def restart_libvirtd(self, timeout: float = 60.0) -> None:
        """Stop and start libvirtd with the same config, ports and UUID."""
        self.stop_libvirtd()
        self.start_libvirtd(timeout)

    def setup_pool(self) -> None:
        """Define, build, start and autostart the dir pool 'default' at pool_path, and pool
        'shared' at SHARED_POOL_PATH when the host has a shared_dir."""
        pools = {"default": POOL_PATH}
        if self.shared_dir:
            pools["shared"] = SHARED_POOL_PATH
        for name, path in pools.items():
            if self._active("pool-list", name):
                continue
            # One virsh process for the four commands saves connections; virsh carries on
            # after a failed command and reports only the last one, hence the check after.
            proc = virsh(
                self.uri_tcp,
                f"pool-define-as {name} dir --target {path}; pool-build {name}; "
                f"pool-start {name}; pool-autostart {name}",
                check=False,
            )
            if not self._active("pool-list", name):
                raise LabError(f"{self.name}: pool '{name}' did not start: {proc.stderr.strip()}")

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
        has_dnsmasq = shutil.which("dnsmasq", path=daemon_env()["PATH"]) is not None
        errors = [] if has_dnsmasq else ["dnsmasq is not installed: no nat/isolated network"]
        if asked == "auto":
            modes = ["nat", "isolated", "l2"] if has_dnsmasq else ["l2"]
        else:
            modes = [] if asked == "none" or (asked != "l2" and not has_dnsmasq) else [asked]
        xml_path = self.base_dir / "network-default.xml"
        for mode in modes:
            xml_path.write_text(network_xml(mode, self.bridge, self.subnet))
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
        kill_and_wait([self._daemon_pid(self.libvirtd_pidfile)], timeout)
        others = self._namespace_pids() - {self._daemon_pid(self.virtlogd_pidfile)}
        cgroups = machine_cgroups(others)  # read before the processes are gone
        kill_and_wait(others, timeout)
        kill_and_wait([self._daemon_pid(self.virtlogd_pidfile)], timeout)
        remove_cgroups(cgroups)
        remove_network_leftovers(self.bridge, self.subnet)
        shutil.rmtree(self.base_dir, ignore_errors=True)
