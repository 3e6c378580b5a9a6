"""`make run` drops root: the launcher it uses (scripts/launch.sh) runs the web server, the
Celery workers and beat as an unprivileged service user, with var/ in tight modes.

The test starts the real launcher as `make run` does (as root, with its own service user,
var directory and port), waits for /healthz, then reads the uid of every process it started
from /proc. In CI anything missing is a failure, never a skip.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = ROOT / "scripts/launch.sh"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SERVICE_USER = "cloudpanel-test"  # its own user, so the launcher's creation path always runs
READY_WAIT = 300.0  # migrate + first-run setup (a KVM probe of qemu:///system) + start
# The launcher stops early, with these words, when this machine cannot run the panel
# unprivileged: a venv interpreter under /root, or a libvirtd that still needs polkit.
ENVIRONMENT_ERRORS = ("cannot run the venv's Python", "cannot read the checkout",
                      "cannot connect to qemu:///system")  # fmt: skip
# Variables of the test run that `make run` would not have.
NOT_PASSED = ("DATABASE_URL", "IMAGE_STORE", "FILE_UPLOAD_TEMP_DIR", "SECRET_KEY", "DEBUG",
              "CELERY_TASK_ALWAYS_EAGER", "DJANGO_SETTINGS_MODULE")  # fmt: skip


def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _descendants(root_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The field after the parenthesised name: state, then ppid.
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _wait_ready(proc: subprocess.Popen, base: str, log: Path) -> None:
    deadline = time.monotonic() + READY_WAIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = log.read_text()
            if any(words in output for words in ENVIRONMENT_ERRORS):
                _unavailable(f"the launcher cannot run unprivileged here:\n{output[-2000:]}")
            pytest.fail(f"the launcher exited with {proc.returncode}:\n{output[-4000:]}")
        try:
            if _get(f"{base}/healthz") == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"no healthy /healthz within {READY_WAIT}s:\n{log.read_text()[-4000:]}")


def _stop(proc: subprocess.Popen, uid: int | None) -> None:
    """Stop everything the launcher started: its process group, then every process left of
    the test's own service user (honcho gives each of its processes a session of its own)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    for pid in _descendants(proc.pid) + ([] if uid is None else _pids_of(uid)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)


def _pids_of(uid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and _status(int(entry.name))["Uid"].split()[0] == str(uid):
                pids.append(int(entry.name))
        except (OSError, KeyError):
            pass
    return pids


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """The launcher as `make run` runs it, once for this module: (process, var dir, URL)."""
    if os.geteuid() != 0:
        _unavailable("dropping privileges needs root, as `make run` has")
    for tool in ("setpriv", "useradd", "userdel"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed")
    user_existed = _user_exists(SERVICE_USER)
    # Not under pytest's tmp_path: its parents are private to root, and the service user
    # must reach its var directory.
    var = Path(tempfile.mkdtemp(prefix="cloudpanel-lp-"))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in NOT_PASSED} | {
        "CLOUDPANEL_USER": SERVICE_USER,
        "CLOUDPANEL_VAR_DIR": str(var),
        "CLOUDPANEL_HOST": "127.0.0.1",
        "CLOUDPANEL_PORT": str(port),
        "CLOUDPANEL_ADMIN_PASSWORD": "least-privilege-pw",
        "REDIS_URL": settings.REDIS_URL,
    }
    log = tmp_path_factory.mktemp("launcher") / "launcher.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(LAUNCHER), "run"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(proc, base, log)
        yield proc, var, base
    finally:
        _stop(proc, pwd.getpwnam(SERVICE_USER).pw_uid if _user_exists(SERVICE_USER) else None)
        shutil.rmtree(var, ignore_errors=True)
        if not user_existed and _user_exists(SERVICE_USER):
            subprocess.run(["userdel", SERVICE_USER], check=False)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def test_make_run_processes_are_not_root(launched):
    proc, _var, base = launched
    user = pwd.getpwnam(SERVICE_USER)
    assert user.pw_uid != 0
    assert user.pw_shell == "/usr/sbin/nologin"
    libvirt_group = grp.getgrnam("libvirt")
    assert SERVICE_USER in libvirt_group.gr_mem

    tree = _descendants(proc.pid)
    cmdlines = {pid: _cmdline(pid) for pid in tree}
    web = [pid for pid, cmd in cmdlines.items() if "cloudpanel.asgi" in cmd]
    workers = [pid for pid, cmd in cmdlines.items() if "celery" in cmd and " worker" in cmd]
    beat = [pid for pid, cmd in cmdlines.items() if "celery" in cmd and " beat" in cmd]
    assert web, cmdlines
    assert workers, cmdlines
    assert beat, cmdlines
    for pid in tree:
        status = _status(pid)
        # Real, effective, saved and filesystem ids: none of them root.
        assert status["Uid"].split() == [str(user.pw_uid)] * 4, (pid, cmdlines[pid], status)
        assert status["Gid"].split() == [str(user.pw_gid)] * 4, (pid, cmdlines[pid], status)
        assert str(libvirt_group.gr_gid) in status["Groups"].split(), (pid, status["Groups"])
        assert "0" not in status["Groups"].split(), (pid, status["Groups"])
        for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(status[caps], 16) == 0, (pid, cmdlines[pid], caps, status[caps])
        assert status["NoNewPrivs"] == "1", (pid, cmdlines[pid])

    assert _get(f"{base}/login/") == 200


def test_make_run_var_dir_modes(launched):
    _proc, var, _base = launched
    uid = pwd.getpwnam(SERVICE_USER).pw_uid

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.lstat().st_mode)

    assert mode(var) == 0o750
    assert mode(var / "secret_key") == 0o600
    assert mode(var / "keys") == 0o700
    assert mode(var / "images") == 0o750
    assert mode(var / "cloudpanel.sqlite3") == 0o600
    for suffix in ("-wal", "-shm"):
        path = var / f"cloudpanel.sqlite3{suffix}"
        if path.exists():  # WAL mode: both exist while the processes run
            assert mode(path) & 0o077 == 0, (path, oct(mode(path)))
    # Everything in var/ belongs to the service user and is closed to other users.
    for path in [var, *var.rglob("*")]:
        info = path.lstat()
        assert info.st_uid == uid, path
        if not stat.S_ISLNK(info.st_mode):
            assert stat.S_IMODE(info.st_mode) & 0o007 == 0, (path, oct(info.st_mode))


def test_service_user_reaches_the_local_hypervisor(launched):
    """The launcher's service user can use qemu:///system wherever root can (through group
    libvirt: scripts/start-services.sh sets libvirtd up for it when no polkit runs)."""
    virsh = shutil.which("virsh")
    root_ok = virsh is not None and subprocess.run(
        [virsh, "-c", "qemu:///system", "uri"], capture_output=True, timeout=30, check=False
    ).returncode == 0  # fmt: skip
    if not root_ok:
        _unavailable("no libvirtd answers at qemu:///system (make test starts one)")
    _proc, var, _base = launched
    env = os.environ | {"CLOUDPANEL_USER": SERVICE_USER, "CLOUDPANEL_VAR_DIR": str(var)}
    proc = subprocess.run(
        [str(LAUNCHER), "exec", "sh", "-c", "id -u; virsh -c qemu:///system list --all"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == str(pwd.getpwnam(SERVICE_USER).pw_uid)
