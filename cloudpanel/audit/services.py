"""Writing audit events: the one function every state-changing path calls.

One INSERT per action: who, project and target come from the objects the caller already
holds (ids, never a lookup), the client address and source from the request being served
(cloudpanel/audit/context.py). Parameters are stored cleaned: secrets dropped, user data
reduced to its size and hash, long values cut, model instances as their ids.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import logging
import uuid

from django.db import models, transaction

from . import context

log = logging.getLogger(__name__)

REDACTED = "[redacted]"
# A key holding any of these (case-insensitive) is never stored, whatever its value.
SECRET_KEY_PARTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "private_key",
    "privatekey",
    "api_key",
    "apikey",
    "credential",
    "authorization",
    "cookie",
    "session",
    "csrf",
    "digest",
)
# Keys whose content may hold secrets (cloud-init user data): only size and hash are kept.
CONTENT_KEYS = frozenset({"user_data", "userdata", "seed", "cloud_config"})
MAX_STRING = 256
MAX_ITEMS = 50
MAX_DEPTH = 4
MAX_MESSAGE = 4000
PRIVATE_KEY_MARK = "PRIVATE KEY-----"


def is_secret_key(key) -> bool:
    lowered = str(key).lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


def _digest(value) -> dict:
    data = value if isinstance(value, bytes) else str(value).encode()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def clean_value(value, depth: int = 0):
    """A JSON-safe, bounded, secret-free copy of one parameter value."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, str):
        if PRIVATE_KEY_MARK in value:  # a private key under an innocent name
            return REDACTED
        if len(value) > MAX_STRING:
            return f"{value[:MAX_STRING]}… ({len(value)} chars)"
        return value
    if isinstance(value, bytes):
        return _digest(value)
    if isinstance(value, decimal.Decimal | uuid.UUID | datetime.date | datetime.time):
        return str(value)
    if isinstance(value, dict):
        return clean_params(value, depth + 1) if depth < MAX_DEPTH else "…"
    if isinstance(value, list | tuple | set | frozenset | models.QuerySet):
        if depth >= MAX_DEPTH:
            return "…"
        items = list(value[: MAX_ITEMS + 1] if isinstance(value, models.QuerySet) else value)
        cleaned = [clean_value(v, depth + 1) for v in items[:MAX_ITEMS]]
        if len(items) > MAX_ITEMS:
            cleaned.append("…")
        return cleaned
    if hasattr(value, "read") or hasattr(value, "chunks"):  # an uploaded file: its name only
        return {"file": str(getattr(value, "name", "") or "")[:MAX_STRING],
                "size": getattr(value, "size", None)}  # fmt: skip
    return clean_value(str(value), depth)


def clean_params(params: dict | None, depth: int = 0) -> dict:
    """Parameters as stored: no secrets, user data as {size, sha256}, everything bounded."""
    cleaned: dict = {}
    for i, (key, value) in enumerate((params or {}).items()):
        if i >= MAX_ITEMS:
            cleaned["…"] = f"{len(params) - MAX_ITEMS} more"
            break
        key = str(key)[:64]
        if is_secret_key(key):
            if value not in (None, "", [], {}):
                cleaned[key] = REDACTED
        elif key.lower() in CONTENT_KEYS:
            cleaned[key] = _digest(value) if value else value
        else:
            cleaned[key] = clean_value(value, depth)
    return cleaned


def _user_of(user, request):
    if user is None and request is not None:
        user = getattr(request, "user", None)  # DRF sets its authenticated user here too
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user


def _id_of(obj):
    if obj is None or isinstance(obj, int | str):
        return obj
    return getattr(obj, "pk", None)


def _describe(target) -> tuple[str, str, str]:
    meta = getattr(target, "_meta", None)
    kind = meta.model_name if meta is not None else type(target).__name__.lower()
    name = getattr(target, "name", None) or getattr(target, "username", None) or str(target)
    return kind, str(getattr(target, "pk", "") or ""), str(name)


def _project_id_of(target):
    if target is None:
        return None
    if getattr(getattr(target, "_meta", None), "model_name", "") == "project":
        return target.pk
    return getattr(target, "project_id", None)


def audit_record(
    *,
    action: str,
    user=None,
    project=None,
    target=None,
    target_type: str = "",
    target_id="",
    target_name: str = "",
    params: dict | None = None,
    result: str = "ok",
    message: str = "",
    job=None,
):
    """Record one action (never raises into the caller). `target` (a model instance) fills
    target_type/id/name when given; the request's client address and source (UI/API) come
    from the request being served (cloudpanel/audit/context.py), none for the system.

    `user` None: the request's user when one is served, else the system. `project` (an
    object or an id) defaults to the target's. Returns the event, or None when writing
    it failed (logged)."""
    try:
        from .models import AuditEvent

        request = context.current_request()
        who = _user_of(user, request)
        if target is not None:
            kind, pk, name = _describe(target)
            target_type, target_id, target_name = (
                target_type or kind,
                target_id or pk,
                (target_name or name),
            )
        project_id = _id_of(project) if project is not None else _project_id_of(target)
        event = AuditEvent(
            user_id=who.pk if who is not None else None,
            username=(who.get_username() if who is not None else "")[:150],
            project_id=project_id,
            action=str(action)[:64],
            target_type=str(target_type or "")[:32],
            target_id=str(target_id if target_id is not None else "")[:64],
            target_name=str(target_name or "")[:255],
            params=clean_params(params),
            result=result,
            message=str(message or "")[:MAX_MESSAGE],
            job_id=_id_of(job),
            source=context.source_of(request),
            client_address=context.client_address(request),
        )
        connection = transaction.get_connection()
        if connection.in_atomic_block:
            # A savepoint: a failed insert must not break the caller's transaction.
            with transaction.atomic():
                event.save(force_insert=True)
        else:
            event.save(force_insert=True)
        return event
    except Exception:
        log.exception("audit: could not record %s", action)
        return None
