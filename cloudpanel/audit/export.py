"""The audit as CSV or JSON: streamed in batches, bounded, with the list's filters.

Rows are read in keyset batches (id below the last one sent), each turned into one chunk.
Under ASGI the chunks come from an async iterator, each batch read in the sync thread:
Django would otherwise collect a synchronous iterator into a list before sending anything.
"""

from __future__ import annotations

import csv
import io
import json

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
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


def _cell(value) -> str:
    text = "" if value is None else str(value)
    # Spreadsheets run a cell that starts like a formula: names and messages come from users.
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def _batches(rows, viewer, admin: bool):
    """Lists of presented events, newest first, at most export_limit() in all. `rows` is
    ordered by descending id (audit_events_for)."""
    left, last = export_limit(), None
    while left > 0:
        page = rows if last is None else rows.filter(id__lt=last)
        batch = list(page[: min(CHUNK, left)])
        if not batch:
            return
        yield [present(row, viewer, admin=admin) for row in batch]
        left -= len(batch)
        last = batch[-1]["id"]


def _csv(batches):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for batch in batches:
        for event in batch:
            event["at"] = event["at"].isoformat()
            event["params"] = json.dumps(event["params"], cls=DjangoJSONEncoder, sort_keys=True)
            writer.writerow([_cell(event[c]) for c in COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()  # the header of an empty export


def _json(batches):
    yield "["
    first = True
    for batch in batches:
        text = ",\n".join(json.dumps(e, cls=DjangoJSONEncoder) for e in batch)
        yield ("\n" if first else ",\n") + text
        first = False
    yield "\n]\n"


async def _async(chunks):
    """The same chunks, each made in the sync thread (it reads the database)."""
    done = object()
    step = sync_to_async(next, thread_sensitive=True)
    while (chunk := await step(chunks, done)) is not done:
        yield chunk


def export_response(rows, viewer, *, admin: bool, fmt: str, request=None) -> StreamingHttpResponse:
    """`rows`: audit_events_for(viewer), filtered. At most export_limit() events, newest
    first; the X-Audit-Limit header says the bound."""
    chunks = (_csv if fmt == "csv" else _json)(_batches(rows, viewer, admin))
    if isinstance(getattr(request, "_request", request), ASGIRequest):
        chunks = _async(chunks)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    content_type = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{fmt}"'
    response["X-Audit-Limit"] = str(export_limit())
    return response
