"""The guest's identity and its NoCloud seed.

What a create call may hand the guest (hostname, SSH keys, a password, the user's own user
data) is checked here, and turned into a cloud-init NoCloud seed: an ISO 9660 volume labelled
`cidata` holding `meta-data` and `user-data`, built in memory with pycdlib (no genisoimage, no
temporary directory tree). The password never leaves `password_hash()` in clear: the job and
the seed carry only its SHA-512 crypt hash.
"""

from __future__ import annotations

import hashlib
import io
import re
import secrets
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pycdlib
import yaml

from cloudpanel.errors import InvalidInput

USER_DATA_MAX = 64 * 1024
PASSWORD_MAX = 256
SEED_LABEL = "cidata"
CLOUD_CONFIG = "#cloud-config"
_HOSTNAME = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_CRYPT64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


# ---- input ---------------------------------------------------------------------------------


def validate_hostname(value: str, field: str = "hostname") -> str:
    """An RFC 1123 label: letters, digits and '-', 1-63 characters, no '-' at either end."""
    value = (value or "").strip().lower()
    if not _HOSTNAME.match(value):
        raise InvalidInput(
            {field: ["A hostname is 1-63 letters, digits or '-', not starting or ending with '-'."]}
        )
    return value


def hostname_from_name(name: str) -> str:
    """The default hostname: the instance name made into a label ('_' and '.' become '-')."""
    label = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")[:63].strip("-")
    return label or "instance"


def validate_user_data(value, field: str = "user_data") -> str:
    """User data as text: at most 64 KiB of UTF-8; a cloud-config must be a YAML mapping."""
    if value is None or value == "" or value == b"":
        return ""
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")
    if len(raw) > USER_DATA_MAX:
        raise InvalidInput(
            {field: [f"User data is {len(raw)} bytes; at most {USER_DATA_MAX} (64 KiB)."]}
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            {field: [f"User data is not UTF-8 (byte {exc.start} is invalid)."]}
        ) from None
    if text.startswith(CLOUD_CONFIG):
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
            raise InvalidInput({field: [f"The cloud-config is not valid YAML{at}."]}) from None
        if parsed is not None and not isinstance(parsed, dict):
            raise InvalidInput(
                {
                    field: [
                        f"The cloud-config must be a YAML mapping, not a {type(parsed).__name__}."
                    ]
                }
            )
    return text


def password_hash(password: str, *, salt: str | None = None, rounds: int = 5000) -> str:
    """SHA-512 crypt ($6$), the hash cloud-init's chpasswd and /etc/shadow take.

    Written out here (Drepper's SHA-crypt) because Python's crypt module is deprecated
    and gone in 3.13; tests check it against `openssl passwd -6`.
    """
    if salt is None:
        salt = "".join(secrets.choice(_CRYPT64) for _ in range(16))
    secret, salt_b = password.encode(), salt[:16].encode()
    n = len(secret)

    def sha(*parts: bytes) -> bytes:
        return hashlib.sha512(b"".join(parts)).digest()

    def stretch(digest: bytes, length: int) -> bytes:
        return (digest * (length // 64 + 1))[:length]

    alternate = sha(secret, salt_b, secret)
    parts = [secret, salt_b, stretch(alternate, n)]
    bits = n
    while bits:
        parts.append(alternate if bits & 1 else secret)
        bits >>= 1
    current = sha(*parts)
    p_bytes = stretch(sha(secret * n), n)
    s_bytes = stretch(sha(salt_b * (16 + current[0])), len(salt_b))
    for i in range(rounds):
        step = [p_bytes if i & 1 else current]
        if i % 3:
            step.append(s_bytes)
        if i % 7:
            step.append(p_bytes)
        step.append(current if i & 1 else p_bytes)
        current = sha(*step)

    out = []
    for k in range(21):
        a, b, c = k, k + 21, k + 42
        triple = ((a, b, c), (b, c, a), (c, a, b))[k % 3]
        word = (current[triple[0]] << 16) | (current[triple[1]] << 8) | current[triple[2]]
        out.extend(_CRYPT64[(word >> (6 * j)) & 0x3F] for j in range(4))
    out.extend(_CRYPT64[(current[63] >> (6 * j)) & 0x3F] for j in range(2))
    prefix = "$6$" if rounds == 5000 else f"$6$rounds={rounds}$"
    return f"{prefix}{salt[:16]}${''.join(out)}"


def validate_password(value, field: str = "password") -> str | None:
    """The password's hash, or None when none was given. The clear text goes no further."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput({field: ["A password is text."]})
    if len(value) > PASSWORD_MAX:
        raise InvalidInput({field: [f"At most {PASSWORD_MAX} characters."]})
    if any(ch in value for ch in "\0\n\r"):
        raise InvalidInput({field: ["A password cannot hold line breaks or NUL."]})
    return password_hash(value)


# ---- the seed ------------------------------------------------------------------------------


def meta_data(*, instance_id: str, hostname: str) -> str:
    return yaml.safe_dump(
        {"instance-id": instance_id, "local-hostname": hostname}, default_flow_style=False
    )


def panel_config(
    *, hostname: str, ssh_keys: list[str], password_hash: str | None, default_user: str | None
) -> dict:
    """The cloud-config the panel writes for the guest's identity."""
    config: dict = {"hostname": hostname, "preserve_hostname": False}
    if ssh_keys:
        # Top-level keys go to the image's default user.
        config["ssh_authorized_keys"] = list(ssh_keys)
    if password_hash:
        config["chpasswd"] = {
            "expire": False,
            "users": [{"name": default_user or "root", "password": password_hash, "type": "hash"}],
        }
    return config


def _merge(base: dict, extra: dict) -> dict:
    """The user's cloud-config over the panel's: mappings merge, lists add up, and for any
    other value the user's wins, except the panel's identity (hostname, keys, password)."""
    merged = dict(base)
    for key, value in extra.items():
        mine = merged.get(key)
        if isinstance(mine, dict) and isinstance(value, dict):
            merged[key] = _merge(mine, value)
        elif isinstance(mine, list) and isinstance(value, list):
            merged[key] = mine + [v for v in value if v not in mine]
        elif key in ("hostname", "fqdn") and key in merged:
            continue  # the hostname field says what the hostname is
        else:
            merged[key] = value
    return merged


def user_data(
    *,
    hostname: str,
    ssh_keys: list[str],
    password_hash: str | None = None,
    default_user: str | None = None,
    user_text: str = "",
) -> str:
    """The seed's user-data: the panel's cloud-config, merged with the user's own.

    A user cloud-config is merged into the panel's; a script (or anything else cloud-init
    reads) goes with it as a second part of a MIME multipart.
    """
    config = panel_config(
        hostname=hostname,
        ssh_keys=ssh_keys,
        password_hash=password_hash,
        default_user=default_user,
    )
    extra_part = ""
    if user_text.startswith(CLOUD_CONFIG):
        config = _merge(config, yaml.safe_load(user_text) or {})
    elif user_text.strip():
        extra_part = user_text
    panel_text = CLOUD_CONFIG + "\n" + yaml.safe_dump(config, default_flow_style=False)
    if not extra_part:
        return panel_text
    multipart = MIMEMultipart()
    multipart.attach(MIMEText(panel_text, "cloud-config", "utf-8"))
    subtype = "x-shellscript" if extra_part.startswith("#!") else "plain"
    multipart.attach(MIMEText(extra_part, subtype, "utf-8"))
    return multipart.as_string()


def build_seed_iso(files: dict[str, str]) -> bytes:
    """An ISO 9660 image labelled cidata with the given files at its root (Joliet and Rock
    Ridge names, so the guest sees `meta-data`, not `META_DAT.;1`)."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=SEED_LABEL)
    for i, (name, text) in enumerate(sorted(files.items())):
        body = text.encode("utf-8")
        iso.add_fp(
            io.BytesIO(body),
            len(body),
            f"/F{i}.;1",
            rr_name=name,
            joliet_path=f"/{name}",
        )
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def seed_files(
    *,
    instance_id: str,
    hostname: str,
    ssh_keys: list[str],
    password_hash: str | None = None,
    default_user: str | None = None,
    user_text: str = "",
) -> dict[str, str]:
    return {
        "meta-data": meta_data(instance_id=instance_id, hostname=hostname),
        "user-data": user_data(
            hostname=hostname,
            ssh_keys=ssh_keys,
            password_hash=password_hash,
            default_user=default_user,
            user_text=user_text,
        ),
    }


def read_seed_iso(data: bytes) -> tuple[str, dict[str, str]]:
    """(volume label, {name: text}) of a seed, by its Rock Ridge names (tests, checks)."""
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        label = iso.pvd.volume_identifier.decode().strip()
        files = {}
        for child in iso.list_children(rr_path="/"):
            if child.is_dot() or child.is_dotdot():
                continue
            name = child.rock_ridge.name().decode()
            body = io.BytesIO()
            iso.get_file_from_iso_fp(body, rr_path=f"/{name}")
            files[name] = body.getvalue().decode("utf-8")
        return label, files
    finally:
        iso.close()
