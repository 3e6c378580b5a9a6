"""Shared fixtures: users, API clients, and the real libvirt lab.

In CI (CI=true) a missing libvirt, Chromium or Playwright is a failure, never a skip: the lab
and browser fixtures raise.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from rest_framework.test import APIClient

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
GUEST_IMAGE_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build-guest-image.sh"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT_DIR = Path(os.environ.get("CLOUDPANEL_SCREENSHOT_DIR", "/tmp"))


@contextlib.contextmanager
def serve_asgi(**ws_options):
    """The project's ASGI app (HTTP + Channels) under a real uvicorn in a thread of this
    process, on a free 127.0.0.1 port (yielded); `ws_options` are uvicorn.Config's
    WebSocket arguments (ws=, ws_per_message_deflate=)."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        "cloudpanel.asgi:application", host="127.0.0.1", port=port, lifespan="off",
        log_level="warning", **ws_options,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-test-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(autouse=True)
def _testserver_host(settings):
    """The test client's Host, which the default ALLOWED_HOSTS omit (Django's test setup adds
    it too; explicit here so no test depends on the production default)."""
    if "testserver" not in settings.ALLOWED_HOSTS:
        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]


@pytest.fixture(autouse=True)
def _media_and_store(settings, tmp_path):
    """Each test gets its own image store so files never leak between tests."""
    settings.IMAGE_STORE = tmp_path / "image-store"
    settings.IMAGE_STORE.mkdir()


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_user(
        "root-admin", password="pw-admin-123", is_staff=True, is_superuser=True
    )


@pytest.fixture
def member_user(django_user_model):
    return django_user_model.objects.create_user("alice", password="pw-alice-123")


@pytest.fixture
def api_client(admin_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


@pytest.fixture
def default_project(db):
    from cloudpanel.projects.services import project_get_default

    return project_get_default()


@pytest.fixture
def test_host(db):
    """A host on libvirt's built-in test driver: real libvirt code, no daemon."""
    from hosts.services import host_create

    return host_create(name="demo", uri="test:///default")


def _libvirt_available() -> str | None:
    for tool in ("libvirtd", "virtlogd", "qemu-system-x86_64", "qemu-img", "unshare"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed"
    if os.geteuid() != 0:
        return "the libvirt lab needs root (mount namespaces)"
    return None


@pytest.fixture(scope="session")
def lab():
    """Two isolated libvirt hosts on this machine: host 0 may use KVM, host 1 is TCG only."""
    problem = _libvirt_available()
    if problem:
        if IN_CI:
            pytest.fail(f"libvirt lab unavailable in CI: {problem}")
        pytest.skip(f"libvirt lab unavailable: {problem}")
    from lab import Lab, ensure_kvm_device

    ensure_kvm_device()
    base = Path(tempfile.mkdtemp(prefix="cloudpanel-lab-"))
    the_lab = Lab()
    the_lab.start(n_hosts=2, kvm=[True, False], base_dir=base)
    # The panel opens unix sockets only under LIBVIRT_SOCKET_DIRS: add the lab's (and pass
    # them on to worker processes through the environment).
    from django.conf import settings

    dirs = [*settings.LIBVIRT_SOCKET_DIRS, *(str(h.socket_path.parent) for h in the_lab.hosts)]
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(settings, "LIBVIRT_SOCKET_DIRS", dirs)
            mp.setenv("LIBVIRT_SOCKET_DIRS", ",".join(dirs))
            yield the_lab
    finally:
        the_lab.stop()


@contextlib.contextmanager
def disposable_lab(name: str):
    """A two-host TCG lab of a test module's own, for tests that kill or stop a host for
    good (the session lab must stay whole); reached over TCP only. Use after `lab`, whose
    checks (libvirt installed, root) come first."""
    from lab import Lab

    base = Path(tempfile.mkdtemp(prefix=f"cloudpanel-lab-{name}-"))
    with Lab() as the_lab:
        yield the_lab.start(n_hosts=2, kvm=[False, False], base_dir=base)


@pytest.fixture(scope="session")
def kvm_denied_lab():
    """One lab host whose libvirt offers the kvm domain type while its guests may not open
    /dev/kvm: the case the panel's KVM probe exists for. Reached over TCP only."""
    problem = _libvirt_available()
    from lab import Lab, ensure_kvm_device

    if not problem and not ensure_kvm_device():
        problem = "/dev/kvm does not exist: libvirt cannot offer kvm to deny"
    if problem:
        if IN_CI:
            pytest.fail(f"KVM-denied lab host unavailable in CI: {problem}")
        pytest.skip(f"KVM-denied lab host unavailable: {problem}")
    base = Path(tempfile.mkdtemp(prefix="cloudpanel-lab-denied-"))
    with Lab() as the_lab:
        yield the_lab.start(n_hosts=1, kvm=True, kvm_denied=True, base_dir=base)


@pytest.fixture
def lab_hosts(db, lab):
    """The lab's hosts registered in the panel (host 0 over TCP, host 1 over its unix socket)."""
    from hosts.services import host_create

    return [
        host_create(name="lab0", uri=lab.hosts[0].uri_tcp),
        host_create(name="lab1", uri=lab.hosts[1].uri_unix),
    ]


def _database_url_for_subprocess() -> str:
    """The URL of the database the tests run on, for a worker process to share it."""
    from django.db import connection

    cfg = connection.settings_dict
    if cfg["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{cfg['NAME']}"
    auth = cfg["USER"] + (f":{cfg['PASSWORD']}" if cfg["PASSWORD"] else "")
    return f"postgres://{auth}@{cfg['HOST'] or '127.0.0.1'}:{cfg['PORT'] or 5432}/{cfg['NAME']}"


@pytest.fixture
def live_worker_program() -> list[str]:
    """How live_worker starts its worker; a module overrides it to start one of its own."""
    import sys

    return [sys.executable, "-m", "celery", "-A", "cloudpanel"]


@pytest.fixture
def live_worker_env() -> dict[str, str]:
    """Extra environment for live_worker's process (a module overrides it)."""
    return {}


@pytest.fixture
def live_worker(transactional_db, settings, live_worker_program, live_worker_env):
    """A real Celery worker process on the test database and the real Redis broker."""
    import subprocess
    import time

    from cloudpanel.celery import app

    env = {
        **os.environ,
        "DATABASE_URL": _database_url_for_subprocess(),
        "REDIS_URL": settings.REDIS_URL,
        "IMAGE_STORE": str(settings.IMAGE_STORE),
        **live_worker_env,
    }
    name = f"test-{os.getpid()}-{time.monotonic_ns()}@localhost"
    proc = subprocess.Popen(
        [
            *live_worker_program,
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "1",
            "--loglevel",
            "WARNING",
            "-n",
            name,
            "--without-mingle",
            "--without-gossip",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(name in reply for reply in (app.control.ping(timeout=0.5) or [])):
            break
        if proc.poll() is not None:
            pytest.fail(f"celery worker exited: {proc.stderr.read().decode()[-2000:]}")
    else:
        proc.kill()
        pytest.fail("celery worker did not answer within 30 s")
    proc.worker_name = name
    try:
        yield proc
    finally:
        import signal

        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# ---- the host watcher (`manage.py watch_hosts`) as its own process -------------------------


class WatcherProcess:
    """`manage.py watch_hosts` as production runs it, with its log lines collected."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "watch_hosts"],
            cwd=Path(__file__).resolve().parents[1],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append((time.time(), line.rstrip()))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, pattern: str, timeout: float = 30.0, after: int = 0) -> tuple[float, str]:
        """The first log line (from index `after`) matching the regex, with its time."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, line in self.lines[after:]:
                    if regex.search(line):
                        return at, line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    tail = "\n".join(line for _, line in self.lines[-30:])
                    raise AssertionError(f"no log line /{pattern}/ in {timeout} s:\n{tail}")
                self._cond.wait(min(left, 0.5))

    def has_line(self, pattern: str) -> bool:
        with self._cond:
            return any(re.search(pattern, line) for _, line in self.lines)

    @property
    def token_pid(self) -> int:
        return self.proc.pid

    def check(self) -> None:
        """Fail the test if the watcher exited (with its last log lines)."""
        if self.proc.poll() is not None:
            tail = "\n".join(line for _, line in self.lines[-30:])
            pytest.fail(f"watch_hosts exited with {self.proc.returncode}:\n{tail}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def start_watcher(transactional_db, settings):
    """start(**env) -> a WatcherProcess on the test database, the real Redis and the lab's
    sockets (LIBVIRT_SOCKET_DIRS); every one started is stopped at the end."""
    procs: list[WatcherProcess] = []

    def start(**extra: str) -> WatcherProcess:
        env = {
            **os.environ,
            "DATABASE_URL": _database_url_for_subprocess(),
            "REDIS_URL": settings.REDIS_URL,
            "LIBVIRT_SOCKET_DIRS": ",".join(settings.LIBVIRT_SOCKET_DIRS),
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
        proc = WatcherProcess(env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.terminate()


# ---- headless Chromium (tests marked browser) ---------------------------------------------


@pytest.fixture(scope="module")
def chromium():
    """Headless Chromium through Playwright's sync API, one per test module.

    Not session-wide: Playwright's event loop runs in this thread while the browser is open,
    and later async tests (pytest-asyncio, async_to_sync) refuse to run under it.
    """
    if not CHROMIUM.exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing; browser tests must run in CI")
        pytest.skip(f"{CHROMIUM} is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if IN_CI:
            pytest.fail("playwright is not installed; browser tests must run in CI")
        pytest.skip("playwright is not installed")
    # Playwright's sync API runs an event loop in this thread, where Django then refuses
    # ORM calls; allowed only while a browser is open, so every other test (consumers
    # above all) keeps Django's async-safety check.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                yield browser
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def browser_viewport() -> dict:
    """The page's viewport; a module overrides this fixture for another size."""
    return {"width": 1440, "height": 900}


@pytest.fixture
def page(chromium, browser_viewport):
    """A page in its own browser context; page.js_errors collects uncaught script errors."""
    context = chromium.new_context(viewport=browser_viewport)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    # Chromium aborts requests in flight when the host's interfaces change (a guest's tap
    # coming up): said in the captured output, which names the cause of a page that hung.
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(f"{r.failure} {r.url}"))
    page.failed_requests = failed
    try:
        yield page
    finally:
        if failed:
            print("requests that failed in the browser:", *failed[:20], sep="\n  ")
        context.close()


def _interfaces_state() -> tuple[str, bool]:
    """The host's interfaces, their carriers and IPv6 addresses; True while an address is
    still tentative (duplicate address detection, about 2 s after a tap comes up)."""
    parts = []
    for net in sorted(Path("/sys/class/net").iterdir()):
        carrier = net / "carrier"
        try:
            parts.append(f"{net.name}:{carrier.read_text().strip()}")
        except OSError:  # down: no carrier to read
            parts.append(f"{net.name}:-")
    try:
        inet6 = Path("/proc/net/if_inet6").read_text()
    except OSError:
        inet6 = ""
    tentative = any(int(line.split()[4], 16) & 0x40 for line in inet6.splitlines() if line)
    return "\n".join(parts) + inet6, tentative


def wait_for_quiet_network(quiet: float = 1.5, timeout: float = 20.0) -> None:
    """Return once the host's interfaces have not changed for `quiet` seconds.

    A guest started on a lab host adds a tap whose carrier and link-local address arrive
    over the next two seconds; Chromium takes each change as a network change and fails
    every request then in flight (net::ERR_NETWORK_CHANGED), such as one of the dozens of
    noVNC modules a console page loads, leaving the page without its script. Browser tests
    that start a guest wait here before they load a page."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        state, tentative = _interfaces_state()
        if state != last or tentative:
            last, since = state, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)


def settle_page(page) -> None:
    """After a guest started while `page` was open: once the host's network is quiet,
    reload the page if Chromium cut any of its requests short, as a user would."""
    wait_for_quiet_network()
    if any("ERR_NETWORK_CHANGED" in failure for failure in page.failed_requests):
        page.failed_requests.clear()
        page.reload()


def shot(page, name: str) -> None:
    """A full-page screenshot to look at: SCREENSHOT_DIR/cloudpanel-NAME.png."""
    page.screenshot(path=str(SCREENSHOT_DIR / f"cloudpanel-{name}.png"), full_page=True)


def browser_login(page, base_url: str) -> None:
    """Sign in as the admin_user fixture's user through the login form."""
    page.goto(f"{base_url}/login/")
    page.fill("#id_username", "root-admin")
    page.fill("#id_password", "pw-admin-123")
    page.click("button[type=submit]")


@pytest.fixture(scope="session", autouse=True)
def _end_stray_database_sessions(django_db_setup, django_db_blocker):
    """Threads of the ASGI server and of sync_to_async keep their own connections; end them
    so the test database can be dropped at the end of the run."""
    yield
    with django_db_blocker.unblock():
        from django.db import connection

        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture(scope="session")
def debian_guest_image() -> Path:
    """The cached image, built first when missing (once per machine, about 2 minutes)."""
    if shutil.which("mmdebstrap") is None and not _cached_image().exists():
        if IN_CI:
            pytest.fail("the guest image is not built and mmdebstrap is missing")
        pytest.skip("no guest image and no mmdebstrap: run `make guest-image`")
    proc = subprocess.run(
        [str(GUEST_IMAGE_SCRIPT)], capture_output=True, text=True, timeout=900, check=False
    )
    assert proc.returncode == 0, f"build-guest-image.sh failed:\n{proc.stderr[-3000:]}"
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert path.is_file(), path
    return path


def _cached_image() -> Path:
    out = subprocess.run([str(GUEST_IMAGE_SCRIPT), "--path"], capture_output=True, text=True)
    return Path(out.stdout.strip())


def api_token_for(user, **options) -> str:
    """A personal API token's secret for `user` (cloudpanel.accounts), already marked used
    so that using it writes nothing (its last-use time is written once a minute)."""
    from django.utils import timezone

    from cloudpanel.accounts.models import ApiToken
    from cloudpanel.accounts.tokens import issue_token

    issued = issue_token(user, name=options.pop("name", "test"), **options)
    ApiToken.objects.filter(pk=issued.token.pk).update(last_used_at=timezone.now())
    return issued.secret

