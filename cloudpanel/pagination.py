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
