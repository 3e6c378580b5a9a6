"""A lab: several LabHosts started side by side, with its state in BASE/lab.json."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .host import LabHost
from .network import NETWORK_MODES, find_port_base
from .processes import LabError

STATE_FILE = "lab.json"


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

    @property
    def shared_dir(self) -> Path:
        """Pool 'shared' of every host (config.SHARED_POOL_PATH inside them), from outside."""
        if self.base_dir is None:
            raise LabError("lab not started")
        return self.base_dir / "shared"

    def __getitem__(self, index: int) -> LabHost:
        return self.hosts[index]

    def start(
        self,
        n_hosts: int = 2,
        kvm: bool | Sequence[bool] = (True, False),
        base_dir: str | Path | None = None,
        kvm_denied: bool | Sequence[bool] = False,
    ) -> Lab:
        """Start n_hosts hosts; kvm is one flag for all or one per host (missing: False),
        and so is kvm_denied (libvirt offers KVM there, guests may not use it).

        Returns self once every host answers, has an active pool 'default', has tried its
        network 'default' and has its QEMU capabilities probed (so the first domain
        definition is not slowed by a probe)."""
        if self.hosts:
            raise LabError("lab already started")
        flags = _per_host(kvm, n_hosts)
        denied = _per_host(kvm_denied, n_hosts)
        if base_dir is None:
            self.base_dir, self._own_dir = Path(tempfile.mkdtemp(prefix="cplab-")), True
        else:
            self.base_dir = Path(base_dir).absolute()
            self._own_dir = not self.base_dir.exists()
            self.base_dir.mkdir(parents=True, exist_ok=True)
        port_base = self.port_base or find_port_base(n_hosts)
        self.shared_dir.mkdir(exist_ok=True)
        self.hosts = [
            LabHost(
                name=f"host{i}",
                index=i,
                base_dir=self.base_dir / f"host{i}",
                tcp_port=port_base + i,
                kvm=flags[i],
                kvm_denied=denied[i],
                network_mode=self.network,
                shared_dir=str(self.shared_dir),
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
            shutil.rmtree(self.shared_dir, ignore_errors=True)
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


def _per_host(flag: bool | Sequence[bool], n_hosts: int) -> list[bool]:
    """One flag for all hosts, or one per host (missing ones False)."""
    flags = [flag] * n_hosts if isinstance(flag, bool) else list(flag)
    return (flags + [False] * n_hosts)[:n_hosts]
