"""A small synthetic RFB (VNC) server for the console benchmark.

It completes the RFB 3.8 handshake (security type None), announces a WIDTHxHEIGHT 32-bit
true-colour framebuffer, and answers every FramebufferUpdateRequest at once with one raw
rectangle of the requested region (a full frame is prebuilt: one sendall per update), and a
SetEncodings that lists QEMU's extended key event pseudo-encoding (-258) with that
encoding's acknowledgement, as QEMU does: a small request with a small, immediate answer,
for round-trip times. QEMU's own server paces full-frame updates (~150 ms here), which
hides any proxy's cost; this one does not.

    python -m bench.rfb_server [--port N] [--width 1280] [--height 800]

prints "listening PORT" once it accepts connections, then serves until killed (one thread
per connection; the payload is a fixed pattern).
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import threading

EXT_KEY_EVENT = -258
PIXEL_FORMAT = struct.pack("!BBBBHHHBBBxxx", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return bytes(data)


class Framebuffer:
    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        row = bytes((x * 7) & 0xFF for x in range(width * 4))
        self.pixels = row * height
        self.full = self.update(0, 0, width, height)

    def update(self, x: int, y: int, w: int, h: int) -> bytes:
        if (x, y, w, h) == (0, 0, self.width, self.height) and hasattr(self, "full"):
            return self.full
        w = max(0, min(w, self.width - x))
        h = max(0, min(h, self.height - y))
        header = struct.pack("!BxH", 0, 1) + struct.pack("!HHHHi", x, y, w, h, 0)
        return header + self.pixels[: w * h * 4]


def serve_client(conn: socket.socket, fb: Framebuffer) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        conn.sendall(b"RFB 003.008\n")
        _recv_exact(conn, 12)
        conn.sendall(b"\x01\x01")  # one security type: None
        _recv_exact(conn, 1)
        conn.sendall(b"\0\0\0\0")  # SecurityResult OK
        _recv_exact(conn, 1)  # ClientInit
        name = b"cloudpanel-bench"
        conn.sendall(
            struct.pack("!HH", fb.width, fb.height) + PIXEL_FORMAT + struct.pack("!I", len(name))
            + name
        )  # fmt: skip
        while True:
            kind = _recv_exact(conn, 1)[0]
            if kind == 0:  # SetPixelFormat: kept as announced
                _recv_exact(conn, 19)
            elif kind == 2:  # SetEncodings
                (count,) = struct.unpack("!xH", _recv_exact(conn, 3))
                encodings = struct.unpack(f"!{count}i", _recv_exact(conn, 4 * count))
                if EXT_KEY_EVENT in encodings:
                    conn.sendall(
                        struct.pack("!BxH", 0, 1)
                        + struct.pack("!HHHHi", 0, 0, fb.width, fb.height, EXT_KEY_EVENT)
                    )
            elif kind == 3:  # FramebufferUpdateRequest: answered at once
                _incremental, x, y, w, h = struct.unpack("!BHHHH", _recv_exact(conn, 9))
                conn.sendall(fb.update(x, y, w, h))
            elif kind == 4:  # KeyEvent
                _recv_exact(conn, 7)
            elif kind == 5:  # PointerEvent
                _recv_exact(conn, 5)
            elif kind == 6:  # ClientCutText
                (length,) = struct.unpack("!xxxI", _recv_exact(conn, 7))
                _recv_exact(conn, length)
            else:
                return
    except OSError:
        pass
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rfb_server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    args = parser.parse_args(argv)
    fb = Framebuffer(args.width, args.height)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(16)
    print(f"listening {listener.getsockname()[1]}", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve_client, args=(conn, fb), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
