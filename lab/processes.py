"""Running things on the machine: the daemons' environment, virsh, pids, killing, cgroups."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path


class LabError(RuntimeError):
    """A lab host did not start, answer or stop as expected."""


def daemon_env() -> dict[str, str]:
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
            cmd, capture_output=True, text=True, timeout=timeout, env=daemon_env(), check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {shlex.join(cmd)}") from exc
    if check and proc.returncode != 0:
        raise LabError(f"{shlex.join(cmd)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def pid_alive(pid: int | None) -> bool:
    """Whether pid runs; a zombie counts as dead (pid 1 here may reap late)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def kill_and_wait(pids: Iterable[int | None], timeout: float) -> None:
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


def machine_cgroups(pids: Iterable[int]) -> set[str]:
    """libvirt's per-domain cgroups ("/machine/qemu-ID-NAME.libvirt-qemu") holding pids.

    Without systemd they are global, named by domain ID and name only, and libvirt removes
    them only when it stops the domain itself, so LabHost.stop() removes those of the QEMU
    it kills. (Two lab hosts running a domain with the same name and ID share one.)"""
    found = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
                parts = line.split(":", 2)[2].split("/")
                if len(parts) > 2 and parts[1] == "machine":
                    found.add("/".join(parts[:3]))
    return found


def remove_cgroups(paths: Iterable[str]) -> None:
    """rmdir the cgroups, children first, in every hierarchy (cgroup v1 has one per
    controller). The kernel refuses to remove a cgroup that still holds a process."""
    roots = [Path("/sys/fs/cgroup"), *Path("/sys/fs/cgroup").iterdir()]
    for top in (root / rel.lstrip("/") for root in roots for rel in paths):
        if top.is_dir():
            for dirpath in sorted((d for d, _, _ in os.walk(top)), key=len, reverse=True):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)
