"""SSH private keys of qemu+ssh hosts, decrypted into files that ssh can read.

One file per host, ``VAR_DIR/keys/host-<id>``, mode 0600 in a 0700 directory. It is written
(atomically: a temporary file renamed over it) when the key is set or changed, or when it is
missing, and removed when the key is cleared or the host is deleted. Reading a host's
connection URI never writes it (hosts/connection.py).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from django.conf import settings

from cloudpanel import crypto


def _directory() -> Path:
    directory = Path(settings.VAR_DIR) / "keys"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if directory.stat().st_mode & 0o777 != 0o700:
        directory.chmod(0o700)
    return directory


def key_path(host_id: int | None) -> Path:
    """Where the key of host `host_id` lives; never for a host without an id."""
    if host_id is None:
        raise ValueError("A host's key file needs the host's id: save the host first.")
    return Path(settings.VAR_DIR) / "keys" / f"host-{int(host_id)}"


def write_key(host) -> Path | None:
    """Write (or, for a host without a key, remove) the host's key file."""
    path = key_path(host.pk)
    if not host.has_ssh_key:
        remove_key(host.pk)
        return None
    key = crypto.decrypt(host.ssh_private_key_encrypted)
    fd, tmp = tempfile.mkstemp(dir=_directory(), prefix=".host-")  # created with mode 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(key if key.endswith("\n") else key + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def restore_missing(hosts) -> list[int]:
    """Write the key files of `hosts` that have a key but no file (a new machine, a
    restored database); returns the ids written."""
    written = []
    for host in hosts:
        if host.has_ssh_key and not key_path(host.pk).exists():
            write_key(host)
            written.append(host.pk)
    return written


def remove_key(host_id: int | None) -> None:
    with contextlib.suppress(FileNotFoundError):
        key_path(host_id).unlink()
