"""The API's list pages.

Two kinds, both with `limit` (1 to 1000; more is read as 1000; default 100):
- `Pagination` (limit/offset, with `count`): the small lists (hosts, flavors, images,
  keypairs, backups, projects). `offset` is 0 or more; past the end, an empty page.
- `CursorPagination` (`cursor`, no count): the large lists (instances, jobs). Follow `next`
  (an absolute URL) until it is null; a cursor stays valid while rows come and go, and a
  page costs the same whether it is the first or the thousandth.

A `limit` or `offset` that is not a whole number in range, or a cursor this API did not
hand out, is a 400 (never read as the default)."""

from __future__ import annotations

from base64 import b64decode
from urllib import parse

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import pagination
from rest_framework.exceptions import ValidationError

from cloudpanel.filters import MAX_ID

MAX_LIMIT = 1000


def _whole_number(request, name: str, minimum: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = int(raw, 10)
    except ValueError:
        raise ValidationError({name: ["A whole number is required."]}) from None
    if value < minimum:
        raise ValidationError({name: [f"Ensure this value is at least {minimum}."]})
    return value


def _limit_parameter(default: int) -> dict:
    return {
        "name": "limit",
        "required": False,
        "in": "query",
        "description": f"Rows a page, 1 to {MAX_LIMIT} (more reads as {MAX_LIMIT}); "
        f"default {default}.",
        "schema": {"type": "integer", "minimum": 1},
    }


class Pagination(pagination.LimitOffsetPagination):
    """At most MAX_LIMIT rows a page, and an offset past the 64-bit range reads as the end of
    the list: a 30-digit limit or offset reached the database as an OverflowError (a 500)."""

    max_limit = MAX_LIMIT

    def get_limit(self, request):
        limit = _whole_number(request, self.limit_query_param, 1)
        return self.default_limit if limit is None else min(limit, self.max_limit)

    def get_offset(self, request):
        offset = _whole_number(request, self.offset_query_param, 0)
        return 0 if offset is None else min(offset, MAX_ID)

    def paginate_queryset(self, queryset, request, view=None):
        """DRF's, but the page is read with one row more than asked for: when that row is
        not there (the last page, which most lists are), the count follows from the page
        and the COUNT query is not made."""
        self.request = request
        self.limit = self.get_limit(request)
        if self.limit is None:
            return None
        self.offset = self.get_offset(request)
        rows = list(queryset[self.offset : self.offset + self.limit + 1])
        if 0 < len(rows) <= self.limit or (not rows and self.offset == 0):
            self.count = self.offset + len(rows)
        else:
            self.count = self.get_count(queryset)
        if self.count > self.limit and self.template is not None:
            self.display_page_controls = True
        return rows[: self.limit]

    def get_schema_operation_parameters(self, view):
        return [
            _limit_parameter(self.default_limit),
            {
                "name": "offset",
                "required": False,
                "in": "query",
                "description": "Rows to skip, 0 or more; default 0.",
                "schema": {"type": "integer", "minimum": 0},
            },
        ]

    def query_parameters(self) -> set[str]:
        return {self.limit_query_param, self.offset_query_param}


class CursorPagination(pagination.CursorPagination):
    """Keyset pages in the list's `ordering` (the view's, or the one asked for)."""

    page_size_query_param = "limit"
    max_page_size = MAX_LIMIT
    # The view's `ordering` (OrderingFilter decides); this is only DRF's fallback.
    ordering = "-id"

    def get_page_size(self, request):
        limit = _whole_number(request, self.page_size_query_param, 1)
        return self.page_size if limit is None else min(limit, self.max_page_size)

    def decode_cursor(self, request):
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is None:
            return None
        try:
            query = parse.parse_qs(b64decode(encoded.encode("ascii")).decode("ascii"))
            offset = int(query.get("o", ["0"])[0])
            reverse = bool(int(query.get("r", ["0"])[0]))
            if not 0 <= offset <= self.offset_cutoff:
                raise ValueError(offset)
        except (TypeError, ValueError, UnicodeError):
            raise ValidationError({self.cursor_query_param: ["Invalid cursor."]}) from None
        position = query.get("p", [None])[0]
        return pagination.Cursor(offset=offset, reverse=reverse, position=position)

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return super().paginate_queryset(queryset, request, view)
        except (ValueError, TypeError, DjangoValidationError):
            # A cursor whose position is not a value of the ordering's field.
            raise ValidationError({self.cursor_query_param: ["Invalid cursor."]}) from None

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "Where the page starts: take it from a page's `next` or "
                "`previous` link, never build it.",
                "schema": {"type": "string"},
            },
            _limit_parameter(self.page_size),
        ]

    def query_parameters(self) -> set[str]:
        return {self.cursor_query_param, self.page_size_query_param}
