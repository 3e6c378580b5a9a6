"""libvirt's own URI parser (virURIParse, exported by libvirt.so.0), called through ctypes.

Used by the URI tests as the reference our validator must agree with: it is the real code
the remote driver runs on a connection URI, not a re-implementation.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import libvirt

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # also runs virInitialize


class _Param(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("value", ctypes.c_char_p), ("ignore", ctypes.c_bool)]


class _URI(ctypes.Structure):  # struct _virURI, src/util/viruri.h
    _fields_ = [
        ("scheme", ctypes.c_char_p),
        ("server", ctypes.c_char_p),
        ("user", ctypes.c_char_p),
        ("port", ctypes.c_uint),
        ("path", ctypes.c_char_p),
        ("query", ctypes.c_char_p),
        ("fragment", ctypes.c_char_p),
        ("paramsCount", ctypes.c_size_t),
        ("paramsAlloc", ctypes.c_size_t),
        ("params", ctypes.POINTER(_Param)),
    ]


_lib = ctypes.CDLL(ctypes.util.find_library("virt") or "libvirt.so.0")
_lib.virURIParse.restype = ctypes.POINTER(_URI)
_lib.virURIParse.argtypes = [ctypes.c_char_p]
_lib.virURIFree.argtypes = [ctypes.POINTER(_URI)]
_lib.virURIFree.restype = None


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def virURIParse(uri: str) -> dict | None:
    """What libvirt reads from `uri`, or None where libvirt refuses to parse it."""
    ptr = _lib.virURIParse(uri.encode("latin-1"))
    if not ptr:
        return None
    try:
        u = ptr.contents
        return {
            "scheme": _text(u.scheme),
            "user": _text(u.user),
            "server": _text(u.server),
            "port": u.port,
            "path": _text(u.path),
            "query": _text(u.query),
            "fragment": _text(u.fragment),
            "params": tuple(
                (_text(u.params[i].name), _text(u.params[i].value)) for i in range(u.paramsCount)
            ),
        }
    finally:
        _lib.virURIFree(ptr)
