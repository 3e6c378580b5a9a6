"""Console proxy: throughput and added round-trip latency, ours against websockify and TCP.

Three paths to the same VNC server, side by side in one run, rounds interleaved:
- direct: a TCP connection to the VNC server;
- websockify: websockify (PyPI) as a subprocess on 127.0.0.1, targeting that server;
- ours: the panel's /ws/instances/<uuid>/console/ socket, served by a real uvicorn process
  (the WebSocket options of the Procfile's web line, one worker) on cloudpanel.asgi:application,
  with a real session cookie and a fresh ticket per connection; the proxy finds the VNC
  server in the live domain XML as in production.

Two servers:
- synthetic: bench/rfb_server.py, a 1280x800 32-bit raw framebuffer that answers every
  request at once (for ours it is the VNC port of a running test:///default domain, which
  the uvicorn process defines at start: the proxy reads its live XML like any other);
- qemu: a lab instance's real QEMU VNC server (SeaBIOS's text screen; QEMU paces
  full-frame updates, so its throughput says little about any proxy).

The client speaks just enough RFB: the 3.8 handshake, then non-incremental full-frame
FramebufferUpdateRequests answered with raw rectangles (throughput: frame bytes / time),
and for the round trip a SetEncodings listing QEMU's extended key event pseudo-encoding,
which both servers acknowledge at once with a 16-byte update (RTT: request to reply). Its
WebSocket side is a minimal client of its own (the same for both proxies) that offers
permessage-deflate as browsers do; the table says whether the server took it.

Isolated like bench_instances: its own SQLite database, Redis DB (BENCH_REDIS_URL) and lab.
    python -m bench console
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

from .bench_instances import BENCH_DIR, _isolation_problem, _lab_problem, _load
from .bench_load import _free_port
from .common import percentile

ROUNDS = int(os.environ.get("BENCH_CONSOLE_ROUNDS", "7"))
FRAMES = {"synthetic": 24, "qemu": 6}  # full frames per round and path
PROBES = int(os.environ.get("BENCH_CONSOLE_PROBES", "300"))  # round trips per round and path
# Which servers to run (the QEMU one needs the lab): "synthetic,qemu" by default.
SERVERS = os.environ.get("BENCH_CONSOLE_SERVERS", "synthetic,qemu").split(",")
START_TIMEOUT = 60.0
TEST_URI = "test:///default"
TEST_DOMAIN = "bench-console-synthetic"
EXT_KEY_EVENT = -258
PATHS = ("direct", "websockify", "ours")
ISSUE_FIGURES = (
    "measured in the issue: websockify 0.73-1.06x of direct TCP throughput on 1280x800 raw "
    "frames, +0.12 ms on a small round trip; goal: ours >= websockify"
)


# --------------------------------------------------------------------------- transports


class TcpTransport:
    def __init__(self, address: tuple[str, int]):
        self.sock = socket.create_connection(address, timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_into(self, view: memoryview) -> None:
        while view:
            n = self.sock.recv_into(view)
            if not n:
                raise ConnectionError("the server closed the connection")
            view = view[n:]

    def close(self) -> None:
        self.sock.close()


class WsTransport(TcpTransport):
    """A minimal WebSocket client: binary frames, masked sends, optional permessage-deflate.

    Uncompressed frames are received straight into the caller's buffer; compressed ones
    (RSV1) are inflated as a whole message."""

    def __init__(self, address, path: str, *, cookie: str = "", deflate: bool = False):
        super().__init__(address)
        key = base64.b64encode(os.urandom(16)).decode()
        host = f"{address[0]}:{address[1]}"
        lines = [
            f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
            "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Protocol: binary", f"Origin: http://{host}",
        ]  # fmt: skip
        if cookie:
            lines.append(f"Cookie: {cookie}")
        if deflate:
            lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"handshake refused: {head[:200]!r}")
            head += chunk
        head, rest = head.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise ConnectionError(f"handshake refused: {status!r}")
        self.deflated = b"permessage-deflate" in head.lower()
        self.inflater = zlib.decompressobj(-15) if self.deflated else None
        self.frame_left = 0  # payload bytes of the current uncompressed frame still unread
        self.raw_pending = bytearray(rest)  # frame bytes read with the handshake's answer
        self.payload = bytearray()  # inflated message bytes not yet handed out

    def _raw(self, n: int) -> bytes:
        out = bytearray(n)
        self._raw_into(memoryview(out))
        return bytes(out)

    def _raw_into(self, view: memoryview) -> None:
        if self.raw_pending:
            take = min(len(view), len(self.raw_pending))
            view[:take] = self.raw_pending[:take]
            del self.raw_pending[:take]
            view = view[take:]
        super().recv_into(view)

    def send(self, data: bytes) -> None:
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            header = struct.pack("!BB", 0x82, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x82, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x82, 0x80 | 127, n)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
        self.sock.sendall(header + mask + masked)

    def _next_frame(self) -> None:
        """Read frame headers until a data frame: uncompressed ones set frame_left; a
        compressed message is inflated into self.inflated_data."""
        while True:
            b0, b1 = self._raw(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._raw(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._raw(8))
            opcode = b0 & 0x0F
            if opcode == 8:
                raise ConnectionError(f"closed by the server: {self._raw(n)[:2]!r}")
            if opcode in (9, 10):  # ping (answered) or pong
                payload = self._raw(n)
                if opcode == 9:
                    mask = os.urandom(4)
                    body = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
                    self.sock.sendall(struct.pack("!BB", 0x8A, 0x80 | n) + mask + body)
                continue
            if b0 & 0x40:  # RSV1: a compressed message (the servers here send one frame each)
                data = self.inflater.decompress(self._raw(n) + b"\x00\x00\xff\xff")
                self.payload += data
                return
            self.frame_left = n
            return

    def recv_into(self, view: memoryview) -> None:
        while view:
            if self.payload:
                take = min(len(view), len(self.payload))
                view[:take] = self.payload[:take]
                del self.payload[:take]
                view = view[take:]
                continue
            if not self.frame_left:
                self._next_frame()
                continue
            take = min(len(view), self.frame_left)
            self._raw_into(view[:take])
            self.frame_left -= take
            view = view[take:]


# --------------------------------------------------------------------------- RFB


class RfbClient:
    def __init__(self, transport):
        self.t = transport
        self.sink = bytearray(0)

    def read(self, n: int) -> bytes:
        out = bytearray(n)
        self.t.recv_into(memoryview(out))
        return bytes(out)

    def handshake(self) -> None:
        banner = self.read(12)
        if not banner.startswith(b"RFB 003."):
            raise ConnectionError(f"not an RFB server: {banner!r}")
        self.t.send(b"RFB 003.008\n")
        types = self.read(self.read(1)[0])
        if 1 not in types:
            raise ConnectionError(f"no None security type: {types!r}")
        self.t.send(b"\x01")
        if self.read(4) != b"\0\0\0\0":
            raise ConnectionError("security handshake failed")
        self.t.send(b"\x01")
        self.width, self.height = struct.unpack("!HH", self.read(4))
        self.bpp = self.read(16)[0] // 8
        self.read(struct.unpack("!I", self.read(4))[0])
        self.sink = bytearray(self.width * self.height * self.bpp)

    def full_frame(self) -> int:
        """Request the whole screen, read the update; its payload bytes."""
        self.t.send(struct.pack("!BBHHHH", 3, 0, 0, 0, self.width, self.height))
        (count,) = struct.unpack("!xxH", self.read(4))
        total = 0
        for _ in range(count):
            _x, _y, w, h, encoding = struct.unpack("!HHHHi", self.read(12))
            if encoding != 0:
                continue  # pseudo-encodings carry nothing here
            size = w * h * self.bpp
            if size > len(self.sink):
                self.sink = bytearray(size)
            self.t.recv_into(memoryview(self.sink)[:size])
            total += size + 12
        return total + 4

    def round_trip(self) -> float:
        start = time.perf_counter()
        self.t.send(struct.pack("!BxHi", 2, 1, EXT_KEY_EVENT))
        header = self.read(4)
        rect = self.read(12)
        elapsed = time.perf_counter() - start
        if struct.unpack("!i", rect[8:])[0] != EXT_KEY_EVENT or header[3] != 1:
            raise ConnectionError(f"unexpected answer {header!r} {rect!r}")
        return elapsed


# --------------------------------------------------------------------------- processes


class Process:
    def __init__(self, label: str, argv: list[str], log: Path, env: dict | None = None):
        self.label, self.argv, self.log = label, argv, log
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log.open("wb"),
            env=env, cwd=Path(__file__).resolve().parents[1], start_new_session=True,
        )  # fmt: skip

    def wait_for_port(self, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.label} did not listen on {port} in {START_TIMEOUT:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _synthetic_server(workdir: Path) -> tuple[Process, int]:
    proc = Process(
        "rfb_server", [sys.executable, "-m", "bench.rfb_server"], workdir / "rfb_server.log"
    )
    line = proc.proc.stdout.readline().decode()
    if not line.startswith("listening "):
        raise RuntimeError(f"rfb_server did not start: {proc.log.read_text()[-2000:]}")
    return proc, int(line.split()[1])


def _websockify(target: tuple[str, int], workdir: Path, label: str) -> tuple[Process, int]:
    port = _free_port()
    exe = Path(sys.executable).with_name("websockify")
    proc = Process(
        f"websockify {label}", [str(exe), f"127.0.0.1:{port}", f"{target[0]}:{target[1]}"],
        workdir / f"websockify-{label}.log",
    )  # fmt: skip
    proc.wait_for_port(port)
    return proc, port


def _panel_server(workdir: Path, synthetic_port: int) -> tuple[Process, int]:
    from django.conf import settings

    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cloudpanel.settings",
        "SECRET_KEY": settings.SECRET_KEY,  # the bench's session cookie must be valid there
        "LOG_LEVEL": "WARNING",
    }
    proc = Process(
        "uvicorn (cloudpanel)",
        [sys.executable, "-m", "bench.bench_console", "serve", str(port), str(synthetic_port)],
        workdir / "uvicorn.log", env=env,
    )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited: {proc.log.read_text()[-3000:]}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/login/")
            if conn.getresponse().status == 200:
                return proc, port
        time.sleep(0.2)
    raise RuntimeError("uvicorn did not answer")


def _synthetic_domain_xml(vnc_port: int) -> str:
    return (
        f"<domain type='test'><name>{TEST_DOMAIN}</name><memory>65536</memory>"
        "<os><type>hvm</type></os><devices>"
        f"<graphics type='vnc' port='{vnc_port}' autoport='no' listen='127.0.0.1'>"
        "<listen type='address' address='127.0.0.1'/></graphics></devices></domain>"
    )


def procfile_ws_options() -> dict:
    """The WebSocket options of the Procfile's web line, as uvicorn.Config arguments."""
    import shlex

    from .bench_load import _procfile_web_line

    args = shlex.split(_procfile_web_line())
    options = {"ws": "auto", "ws_per_message_deflate": True}
    for flag, value in zip(args, args[1:], strict=False):
        if flag == "--ws":
            options["ws"] = value
        elif flag == "--ws-per-message-deflate":
            options["ws_per_message_deflate"] = value.lower() in ("1", "true", "yes", "on")
    return options


def serve(port: int, synthetic_port: int) -> None:
    """The panel's ASGI app under uvicorn with the Procfile's WebSocket options, one worker,
    in this process; the test driver's shared in-process state gets the synthetic server's
    running domain."""
    import django
    import uvicorn

    django.setup()
    from cloudpanel.virt import domains

    domains.define_domain(TEST_URI, _synthetic_domain_xml(synthetic_port))
    domains.start_domain(TEST_URI, TEST_DOMAIN)
    config = uvicorn.Config(
        "cloudpanel.asgi:application", host="127.0.0.1", port=port, log_level="warning",
        **procfile_ws_options(),
    )  # fmt: skip
    uvicorn.Server(config).run()


# --------------------------------------------------------------------------- the panel side


def _panel_fixtures(lab) -> dict:
    """Admin + session, the test-driver host and instance, and (with a lab) a running lab
    instance."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from cloudpanel.jobs.services import job_execute
    from cloudpanel.projects.services import project_get_default
    from hosts.services import host_create
    from images.intake import image_upload
    from instances import operations
    from instances.models import Flavor, Instance

    admin = get_user_model().objects.create_user(
        "bench-console", password=None, is_staff=True, is_superuser=True
    )
    client = Client()
    client.force_login(admin)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    flavor = Flavor.objects.create(name="bench-console", vcpus=1, ram_mib=64, disk_gib=1)
    demo = host_create(name="bench-test-driver", uri=TEST_URI)
    synthetic = Instance.objects.create(
        name="synthetic", project=project_get_default(), flavor=flavor, host=demo,
        domain_name=TEST_DOMAIN, state=Instance.State.RUNNING,
    )  # fmt: skip
    fixtures = {"admin": admin, "cookie": cookie, "synthetic": synthetic}
    if lab is not None:
        host = host_create(name="lab0", uri=lab.hosts[0].uri_tcp)
        qcow2 = BENCH_DIR / "console.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow2), "64M"], check=True)
        with qcow2.open("rb") as fh:
            image = image_upload(name="console", disk_format="qcow2", user=admin, fileobj=fh)
        job = operations.CREATE.start(
            user=admin, name="console-qemu", image=image, flavor=flavor, host=host
        )
        job_execute(job.id)
        job.refresh_from_db()
        if job.status != "succeeded":
            raise RuntimeError(f"the lab instance did not start: {job.error}")
        fixtures["qemu"] = Instance.objects.get(pk=job.target_id)
    return fixtures


def _vnc_target(instance) -> tuple[str, int]:
    """Where the VNC server is, read as the proxy reads it (for direct and websockify)."""
    from cloudpanel.virt.console import WILDCARD_ADDRESSES, vnc_endpoint
    from hosts.connection import connection_uri, console_address

    endpoint = vnc_endpoint(connection_uri(instance.host), instance.domain_name)
    address = endpoint.listen
    if address in WILDCARD_ADDRESSES:
        address = console_address(instance.host)
    return address, endpoint.port


# --------------------------------------------------------------------------- measuring


def _connect(path: str, server: dict, fixtures: dict):
    from instances.consoles import console_ticket_issue

    if path == "direct":
        return TcpTransport(server["target"])
    if path == "websockify":
        return WsTransport(("127.0.0.1", server["websockify"]), "/", deflate=True)
    ticket = console_ticket_issue(user=fixtures["admin"], instance=server["instance"])
    return WsTransport(
        ("127.0.0.1", server["panel"]), ticket["path"], cookie=fixtures["cookie"],
        deflate=True,  # as browsers do: the server decides (the Procfile says no)
    )  # fmt: skip


def _open_all(server: dict, fixtures: dict) -> dict:
    clients = {}
    for path in PATHS:
        transport = _connect(path, server, fixtures)
        rfb = RfbClient(transport)
        rfb.handshake()
        rfb.round_trip()  # warm: the first answers may carry setup costs
        rfb.full_frame()
        clients[path] = rfb
        server["frame"] = (rfb.width, rfb.height, rfb.bpp)
        server.setdefault("deflated", {})[path] = getattr(transport, "deflated", False)
    return clients


def _measure(server: dict, fixtures: dict, frames: int) -> dict:
    """Every round opens one connection per path (ours with a new ticket) and alternates
    them probe by probe and frame by frame, the order rotating: whatever else loads the
    machine at a moment loads every path alike."""
    results = {path: {"mbps": [], "rtt": []} for path in PATHS}
    for round_no in range(ROUNDS + 1):  # round 0 warms every path up, uncounted
        clients = _open_all(server, fixtures)
        try:
            rtts = {path: [] for path in PATHS}
            for i in range(PROBES):
                for path in PATHS[i % 3 :] + PATHS[: i % 3]:
                    rtts[path].append(clients[path].round_trip())
            received = dict.fromkeys(PATHS, 0)
            seconds = dict.fromkeys(PATHS, 0.0)
            for i in range(frames):
                for path in PATHS[i % 3 :] + PATHS[: i % 3]:
                    start = time.perf_counter()
                    received[path] += clients[path].full_frame()
                    seconds[path] += time.perf_counter() - start
        finally:
            for rfb in clients.values():
                rfb.t.close()
        if round_no:
            for path in PATHS:
                results[path]["mbps"].append(received[path] / seconds[path] / 1e6)
                results[path]["rtt"].extend(rtts[path])
    return results


def _report(name: str, server: dict, results: dict) -> dict:
    width, height, bpp = server["frame"]
    print(f"\n-- {name}: {width}x{height}, {bpp * 8}-bit raw frames; {ROUNDS} rounds of "
          f"{server['frames']} frames and {PROBES} round trips per path, interleaved")  # fmt: skip
    print(f"{'path':<12} {'MB/s p50':>9} {'min':>8} {'x direct':>9} {'RTT p50':>9} {'p95':>9} "
          f"{'added p50':>10} {'p95':>9}  deflate")  # fmt: skip
    direct = results["direct"]
    d_mbps = statistics.median(direct["mbps"])
    d50, d95 = percentile(direct["rtt"], 50), percentile(direct["rtt"], 95)
    summary = {}
    for path in PATHS:
        r = results[path]
        mbps = statistics.median(r["mbps"])
        p50, p95 = percentile(r["rtt"], 50), percentile(r["rtt"], 95)
        summary[path] = (mbps, p50 - d50, p95 - d95)
        print(
            f"{path:<12} {mbps:>9.1f} {min(r['mbps']):>8.1f} {mbps / d_mbps:>8.2f}x "
            f"{p50 * 1e3:>7.3f}ms {p95 * 1e3:>7.3f}ms {(p50 - d50) * 1e3:>+8.3f}ms "
            f"{(p95 - d95) * 1e3:>+7.3f}ms  {'yes' if server['deflated'].get(path) else 'no'}"
        )
    ours, theirs = results["ours"]["mbps"], results["websockify"]["mbps"]
    paired = statistics.median(o / w for o, w in zip(ours, theirs, strict=True))
    _, o50, o95 = summary["ours"]
    _, w50, w95 = summary["websockify"]
    met = paired >= 1.0 and o50 <= w50
    print(
        f"ours / websockify: throughput {paired:.2f}x (median of the rounds' ratios), added "
        f"RTT p50 {o50 * 1e3:+.3f} ms vs {w50 * 1e3:+.3f} ms, p95 {o95 * 1e3:+.3f} ms vs "
        f"{w95 * 1e3:+.3f} ms: {'goal met' if met else 'goal NOT met'}"
    )
    return summary


def run() -> None:
    title = "console proxy (ours vs websockify vs direct TCP; synthetic RFB and QEMU VNC)"
    problem = _isolation_problem()
    if problem:
        print(f"\n== {title}: skipped ({problem})")
        return
    from django.conf import settings
    from django.db import connections

    from cloudpanel import virt
    from lab import Lab, ensure_kvm_device

    from .bench_instances import _prepare_database

    lab_problem = _lab_problem()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    workdir = BENCH_DIR / "console"
    workdir.mkdir(exist_ok=True)
    print(f"\n== {title}")
    print(f"database {os.environ['DATABASE_URL']}, redis {os.environ['REDIS_URL']}, "
          f"DEBUG={settings.DEBUG}; {os.cpu_count()} CPUs, {platform.platform()}; "
          f"{_load()}")  # fmt: skip
    print(ISSUE_FIGURES)
    print(f"uvicorn WebSocket options from the Procfile: {procfile_ws_options()}")
    began = time.perf_counter()
    _prepare_database()
    processes: list[Process] = []
    lab = None
    try:
        rfb_proc, rfb_port = _synthetic_server(workdir)
        processes.append(rfb_proc)
        if "qemu" not in SERVERS:
            pass
        elif lab_problem is None:
            ensure_kvm_device()
            lab = Lab()
            lab.start(n_hosts=1, kvm=[True], base_dir=BENCH_DIR / "console-lab")
        else:
            print(f"qemu server: skipped ({lab_problem})")
        fixtures = _panel_fixtures(lab)
        panel_proc, panel_port = _panel_server(workdir, rfb_port)
        processes.append(panel_proc)
        servers = {
            "synthetic": {"target": ("127.0.0.1", rfb_port), "instance": fixtures["synthetic"]}
        }
        if "qemu" in fixtures:
            servers["qemu"] = {
                "target": _vnc_target(fixtures["qemu"]),
                "instance": fixtures["qemu"],
            }
        for name, server in servers.items():
            proc, port = _websockify(server["target"], workdir, name)
            processes.append(proc)
            server.update(websockify=port, panel=panel_port, frames=FRAMES[name])
        relays = [s["websockify"] for s in servers.values()]
        print(f"servers ready in {time.perf_counter() - began:.1f} s; uvicorn {panel_port}, "
              f"synthetic RFB {rfb_port}, websockify {relays}")  # fmt: skip
        for name, server in servers.items():
            results = _measure(server, fixtures, server["frames"])
            _report(name, server, results)
        print(f"\nbench time {time.perf_counter() - began:.0f} s; {_load()}")
    finally:
        for proc in reversed(processes):
            proc.stop()
        if "fixtures" in locals() and "qemu" in fixtures:
            from cloudpanel.jobs.services import job_execute
            from instances import operations

            with contextlib.suppress(Exception):
                instance = fixtures["qemu"]
                instance.refresh_from_db()
                job_execute(operations.DELETE.start(user=fixtures["admin"], target=instance).id)
        with contextlib.suppress(Exception):
            virt.get_pool().close()
        if lab is not None:
            lab.stop()
        connections.close_all()
        shutil.rmtree(BENCH_DIR, ignore_errors=True)  # named after this process: ours


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit("usage: python -m bench.bench_console serve PORT SYNTHETIC_VNC_PORT")
