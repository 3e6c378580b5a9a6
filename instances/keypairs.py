"""Key pairs: SSH public keys users import for their instances' default user.

A key is checked by parsing it (the `cryptography` package), not by pattern: only
ssh-ed25519, ecdsa-sha2-nistp256/384/521 and ssh-rsa of at least 2048 bits are taken. It is
kept normalized ("type base64 [comment]") with its fingerprint as `ssh-keygen -lf` prints it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.db import IntegrityError, transaction

from cloudpanel.audit.decorators import audited
from cloudpanel.errors import InvalidInput, NotFound, PermissionDenied
from cloudpanel.projects import access

from .models import KeyPair
from .rules import validate_name

RSA_MIN_BITS = 2048
KEY_MAX_CHARS = 16 * 1024  # an RSA 16384-bit key is about 2.8 KiB
ACCEPTED = "ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa of at least 2048 bits"
_CURVES = {
    "secp256r1": "ecdsa-sha2-nistp256",
    "secp384r1": "ecdsa-sha2-nistp384",
    "secp521r1": "ecdsa-sha2-nistp521",
}
_TYPES = {"ssh-ed25519", "ssh-rsa", *_CURVES.values()}


def fingerprint_of(blob: bytes) -> str:
    """SHA256:<unpadded base64 of the SHA-256 of the key blob>, as ssh-keygen prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def parse_public_key(text: str, field: str = "public_key") -> tuple[str, str]:
    """Validate one OpenSSH public key line; returns (normalized line, fingerprint)."""
    text = (text or "").strip()
    if not text:
        raise InvalidInput({field: ["A public key is required."]})
    if len(text) > KEY_MAX_CHARS or "\n" in text or "\r" in text:
        raise InvalidInput({field: ["Give one public key, on one line."]})
    parts = text.split(None, 2)
    if len(parts) < 2:
        raise InvalidInput(
            {field: ['Not an OpenSSH public key: expected "type base64 [comment]".']}
        )
    key_type, body = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) == 3 else ""
    if key_type not in _TYPES:
        raise InvalidInput({field: [f"Key type {key_type[:40]} is not supported; use {ACCEPTED}."]})
    try:
        base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput({field: ["The key's base64 part is not valid base64."]}) from None
    try:
        key = serialization.load_ssh_public_key(f"{key_type} {body}".encode())
    except UnsupportedAlgorithm:
        raise InvalidInput(
            {field: [f"Key type {key_type[:40]} is not supported; use {ACCEPTED}."]}
        ) from None
    except ValueError as exc:
        raise InvalidInput({field: [f"Not a valid {key_type[:40]} public key ({exc})."]}) from None
    if isinstance(key, ed25519.Ed25519PublicKey):
        pass
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVES:
            raise InvalidInput({field: [f"Curve {key.curve.name} is not supported."]})
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < RSA_MIN_BITS:
            raise InvalidInput(
                {
                    field: [
                        f"RSA key of {key.key_size} bits is too weak: at least {RSA_MIN_BITS} bits."
                    ]
                }
            )
    else:
        raise InvalidInput({field: [f"Key type {key_type[:40]} is not supported; use {ACCEPTED}."]})
    canonical = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    kind, blob = canonical.decode().split(" ", 1)
    line = f"{kind} {blob}" + (f" {comment}" if comment else "")
    return line, fingerprint_of(base64.b64decode(blob))


@audited("keypair.create", target_type="keypair")
def keypair_create(*, user, name: str, public_key: str) -> KeyPair:
    name = validate_name(name)
    line, fingerprint = parse_public_key(public_key)
    if KeyPair.objects.filter(owner=user, name=name).exists():
        raise InvalidInput({"name": [f"You already have a key pair {name}."]})
    try:
        with transaction.atomic():
            return KeyPair.objects.create(
                owner=user, name=name, public_key=line, fingerprint=fingerprint
            )
    except IntegrityError:  # a create at the same moment took the name
        raise InvalidInput({"name": [f"You already have a key pair {name}."]}) from None


@audited("keypair.delete", target="keypair")
def keypair_delete(*, user, keypair: KeyPair) -> None:
    if keypair.owner_id != user.pk and not access.is_admin(user):
        raise PermissionDenied("This key pair is not yours.")
    keypair.delete()


def keypairs_for(user):
    """The key pairs a user sees: their own; admins all."""
    queryset = KeyPair.objects.select_related("owner")
    return queryset if access.is_admin(user) else queryset.filter(owner=user)


def keypairs_usable(user, ids) -> list[KeyPair]:
    """The key pairs `ids` names, each the caller's own (admins: anyone's), in that order."""
    if ids is None:
        return []
    if not isinstance(ids, list | tuple) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in ids
    ):
        raise InvalidInput({"keypairs": ["Give a list of key pair ids."]})
    found = {k.pk: k for k in keypairs_for(user).filter(pk__in=ids)}
    unknown = [i for i in ids if i not in found]
    if unknown:
        raise InvalidInput(
            {"keypairs": [f"Unknown key pair {', '.join(str(i) for i in unknown)}."]}
        )
    return [found[i] for i in dict.fromkeys(ids)]


def keypair_get(user, pk) -> KeyPair:
    keypair = keypairs_for(user).filter(pk=pk).first()
    if keypair is None:
        raise NotFound(f"Unknown key pair {pk}.")
    return keypair
