"""The API's list pages: DRF's limit/offset, bounded."""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination

from cloudpanel.filters import MAX_ID


class Pagination(LimitOffsetPagination):
    """At most MAX_LIMIT rows a page, and an offset past the 64-bit range reads as the end of
    the list: a 30-digit limit or offset reached the database as an OverflowError (a 500)."""

    max_limit = 1000

    def get_offset(self, request):
        return min(super().get_offset(request), MAX_ID)
