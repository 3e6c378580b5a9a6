"""SSH keys for qemu+ssh hosts: decrypted into a private file only when a connection needs it."""

import os
from pathlib import Path

from django.conf import settings

from cloudpanel import crypto


def key_file_for(host) -> Path:
    directory = Path(settings.VAR_DIR) / "keys"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"host-{host.pk}"
    key = crypto.decrypt(host.ssh_private_key_encrypted)
    if not path.exists() or path.read_text() != key:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key if key.endswith("\n") else key + "\n")
    return path
