"""The audit as CSV or JSON: streamed row by row, bounded, with the list's filters."""

from __future__ import annotations

import csv
import json

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.http import StreamingHttpResponse
from django.utils import timezone

from .selectors import present

COLUMNS = (
    "id", "at", "username", "user_id", "project_id", "project_name", "action", "target_type",
    "target_id", "target_name", "result", "message", "job_id", "source", "client_address",
    "params",
)  # fmt: skip
CHUNK = 2000
FORMATS = ("csv", "json")


def export_limit() -> int:
    return int(getattr(settings, "AUDIT_EXPORT_MAX_ROWS", 100_000))


class _Echo:
    def write(self, value):
        return value


def _cell(value) -> str:
    text = "" if value is None else str(value)
    # Spreadsheets run a cell that starts like a formula: names and messages come from users.
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def _events(rows, viewer, admin: bool):
    for row in rows[: export_limit()].iterator(chunk_size=CHUNK):
        yield present(row, viewer, admin=admin)


def _csv(events):
    writer = csv.writer(_Echo())
    yield writer.writerow(COLUMNS)
    for event in events:
        event["at"] = event["at"].isoformat()
        event["params"] = json.dumps(event["params"], cls=DjangoJSONEncoder, sort_keys=True)
        yield writer.writerow([_cell(event[c]) for c in COLUMNS])


def _json(events):
    yield "["
    first = True
    for event in events:
        yield ("" if first else ",") + "\n" + json.dumps(event, cls=DjangoJSONEncoder)
        first = False
    yield "\n]\n"


def export_response(rows, viewer, *, admin: bool, fmt: str) -> StreamingHttpResponse:
    """`rows`: audit_events_for(viewer), filtered. At most export_limit() events, newest
    first; the X-Audit-Limit header says the bound."""
    events = _events(rows, viewer, admin)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    if fmt == "csv":
        response = StreamingHttpResponse(_csv(events), content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(_json(events), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{fmt}"'
    response["X-Audit-Limit"] = str(export_limit())
    return response
