"""What an image file really is, before anything trusts it.

A disk image is untrusted input: a qcow2 can point at any file on the host as its backing
file or external data file, and a 'raw' upload can carry a qcow2 header (format confusion).
So the detected format must match the declared one, references to other files are refused,
sizes are bounded, and a qcow2 must pass `qemu-img check` (a truncated or damaged one is
refused). qemu-img runs under a timeout and, where prlimit exists, with limits on
memory and CPU time.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from .store import GIB, max_file_size, max_virtual_size

ISO_MAGIC_OFFSET = 0x8001
ISO_MAGIC = b"CD001"
QCOW2_MAGIC = b"QFI\xfb"
QCOW2_INCOMPAT_CORRUPT = 1 << 1
QCOW2_INCOMPAT_DATA_FILE = 1 << 2
STDERR_KEPT = 4096  # bytes of qemu-img's error output kept for the message


class ImageRejected(Exception):
    """The file is not an acceptable image; the message says why, for a person."""


@dataclass(frozen=True)
class Inspection:
    disk_format: str  # as declared (and verified)
    detected_format: str  # as qemu-img reports it
    virtual_size: int
    file_size: int


def _timeout() -> float:
    return float(getattr(settings, "IMAGE_INSPECT_TIMEOUT", 60))


def _limited(cmd: list[str]) -> list[str]:
    prlimit = shutil.which("prlimit")
    if prlimit:
        # The limits OpenStack uses for the same calls: 1 GiB of address space, 30 s of CPU.
        return [prlimit, f"--as={GIB}", "--cpu=30", "--", *cmd]
    return cmd


def _qemu_img_command(path: Path) -> list[str]:
    return _limited(["qemu-img", "info", "--output=json", "--force-share", str(path)])


def _qemu_img_check_command(path: Path) -> list[str]:
    return _limited(
        ["qemu-img", "check", "--output=json", "-f", "qcow2", "--force-share", str(path)]
    )


def _run_qemu_img(cmd: list[str]) -> tuple[int, str, str]:
    """(exit status, stdout, the start of stderr); a hostile image can make stderr huge."""
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.run(
                cmd,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                timeout=_timeout(),
                env={**os.environ, "LC_ALL": "C"},
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ImageRejected("Inspecting the image took too long; it was refused.") from None
        except FileNotFoundError:
            raise ImageRejected("qemu-img is not installed on the panel's server.") from None
        err.seek(0)
        stderr = err.read(STDERR_KEPT).decode("utf-8", "replace")
    return proc.returncode, proc.stdout, stderr


def _json(stdout: str) -> dict:
    try:
        return json.loads(stdout)
    except ValueError:
        raise ImageRejected("qemu-img answered something that is not JSON.") from None


def qemu_img_info(path: Path) -> dict:
    returncode, stdout, stderr = _run_qemu_img(_qemu_img_command(path))
    if returncode != 0:
        detail = (stderr or stdout).strip().splitlines()
        reason = detail[-1] if detail else f"exit status {returncode}"
        raise ImageRejected(f"qemu-img could not read the image: {reason}")
    return _json(stdout)


def qemu_img_check(path: Path) -> None:
    """Refuse a qcow2 whose metadata is inconsistent (truncated, broken L1/L2/refcounts).

    Exit status 0 is clean, 3 only leaked clusters (wasted space, harmless), 2 corruptions,
    1 a check that could not finish. Only 0 and 3 with no errors are accepted.
    """
    returncode, stdout, stderr = _run_qemu_img(_qemu_img_check_command(path))
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    first = f": {lines[0].strip()}" if lines else ""
    try:
        report = json.loads(stdout) if stdout.strip() else {}
    except ValueError:
        report = {}
    corruptions = int(report.get("corruptions") or 0)
    errors = int(report.get("check-errors") or 0)
    if returncode in (0, 3) and not corruptions and not errors:
        return
    raise ImageRejected(
        f"The qcow2 image is damaged: qemu-img check found {corruptions} corruption(s) and "
        f"{errors} check error(s) (exit status {returncode}){first}"
    )


def _check_qcow2_header(path: Path) -> None:
    """Refuse backing and data files from the header itself, before qemu-img opens it."""
    with open(path, "rb") as fh:
        header = fh.read(104)
    if not header.startswith(QCOW2_MAGIC) or len(header) < 20:
        return
    version, backing_offset = struct.unpack(">IQ", header[4:16])
    if backing_offset:
        raise ImageRejected("The image has a backing file; only self-contained images are allowed.")
    if version >= 3 and len(header) >= 80:
        (incompatible,) = struct.unpack(">Q", header[72:80])
        if incompatible & QCOW2_INCOMPAT_DATA_FILE:
            raise ImageRejected(
                "The image uses an external data file; only self-contained images are allowed."
            )
        if incompatible & QCOW2_INCOMPAT_CORRUPT:
            raise ImageRejected("The qcow2 image is marked corrupt.")


def has_iso9660_signature(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(ISO_MAGIC_OFFSET)
        return fh.read(len(ISO_MAGIC)) == ISO_MAGIC


def inspect_image(path: Path, declared_format: str) -> Inspection:
    """Check the file against what the user said it is; raise ImageRejected if it is not."""
    path = Path(path)
    file_size = path.stat().st_size
    if file_size == 0:
        raise ImageRejected("The file is empty.")
    if file_size > max_file_size():
        raise ImageRejected(f"The file is larger than the limit of {max_file_size()} bytes.")
    _check_qcow2_header(path)
    info = qemu_img_info(path)
    detected = str(info.get("format", ""))
    if declared_format == "iso":
        if detected != "raw" or not has_iso9660_signature(path):
            raise ImageRejected(
                f"The file is not an ISO 9660 image (qemu-img sees {detected or 'nothing'})."
            )
    elif detected != declared_format:
        raise ImageRejected(
            f"The file was declared {declared_format} but it is {detected or 'unknown'}."
        )
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise ImageRejected("The image has a backing file; only self-contained images are allowed.")
    specific = (info.get("format-specific") or {}).get("data") or {}
    if specific.get("data-file"):
        raise ImageRejected(
            "The image uses an external data file; only self-contained images are allowed."
        )
    if info.get("encrypted") or specific.get("encrypt"):
        raise ImageRejected("Encrypted images are not supported.")
    if specific.get("corrupt"):
        raise ImageRejected("The qcow2 image is marked corrupt.")
    try:
        virtual_size = int(info["virtual-size"])
    except (KeyError, TypeError, ValueError):
        raise ImageRejected("qemu-img did not report the image's virtual size.") from None
    if virtual_size <= 0:
        raise ImageRejected("The image has no virtual size.")
    if virtual_size > max_virtual_size():
        raise ImageRejected(
            f"The image's virtual size ({virtual_size / GIB:.1f} GiB) is above the limit of "
            f"{max_virtual_size() / GIB:g} GiB."
        )
    if detected == "qcow2":
        qemu_img_check(path)  # info reads only the header; check walks every table
    return Inspection(
        disk_format=declared_format,
        detected_format=detected,
        virtual_size=virtual_size,
        file_size=file_size,
    )
