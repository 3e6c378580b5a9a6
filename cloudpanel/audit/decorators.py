"""`@audited(action)`: the audit of a service that changes state without a job.

The event names the target (a keyword argument, or the returned object), the other
keyword arguments as parameters (cleaned by audit_record), and the outcome: ok, or
denied/failed with the refusal's message (re-raised). A service called from another
audited one records nothing of its own: the outer action is the one a person asked for.
"""

from __future__ import annotations

import contextvars
import functools

from .jobs import refusal_message, refusal_result
from .services import _describe, _project_id_of, audit_record

_inside: contextvars.ContextVar = contextvars.ContextVar("cloudpanel_audit_service", default=False)


def audited(action: str, *, target: str | None = None, target_type: str = "", exclude=()):
    """`target`: the keyword argument holding the changed object; None: the returned one.
    `exclude`: keyword arguments never recorded (file contents, iterators)."""
    skipped = {"user", *exclude} | ({target} if target else set())

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if _inside.get():
                return fn(*args, **kwargs)
            obj = kwargs.get(target) if target else None
            # Described before the call: a deleted row has no pk afterwards.
            kind, pk, name = _describe(obj) if obj is not None else (target_type, "", "")
            project = _project_id_of(obj) if obj is not None else kwargs.get("project")
            params = {k: v for k, v in kwargs.items() if k not in skipped}
            token = _inside.set(True)
            try:
                value = fn(*args, **kwargs)
            except Exception as exc:
                name = name or str(kwargs.get("name") or "")
                audit_record(
                    action=action, user=kwargs.get("user"), project=project,
                    target_type=kind, target_id=pk, target_name=name,
                    params=params, result=refusal_result(exc), message=refusal_message(exc),
                )  # fmt: skip
                raise
            finally:
                _inside.reset(token)
            if obj is None and value is not None and hasattr(value, "_meta"):
                kind, pk, name = _describe(value)
                project = _project_id_of(value)
            audit_record(
                action=action, user=kwargs.get("user"), project=project,
                target_type=kind, target_id=pk, target_name=name, params=params,
            )  # fmt: skip
            return value

        return wrapper

    return decorate
