"""Filter parts shared by the apps' FilterSets (API and pages)."""

from __future__ import annotations

import django_filters
from django import forms

# The largest id a BigAutoField holds on every backend (signed 64 bits).
MAX_ID = 2**63 - 1


class IdFilter(django_filters.NumberFilter):
    """An object id: a whole number in the database's range, else 400.

    NumberFilter takes any decimal, and an id past 64 bits reached the database (SQLite:
    OverflowError, a 500): related-id lookups do not have the range check plain integer
    fields have.
    """

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)

    def get_max_validator(self):
        return None  # max_value above is the bound
