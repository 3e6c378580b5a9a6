"""Filter parts shared by the apps' FilterSets (API and pages)."""

from __future__ import annotations

import django_filters
from django import forms
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import filters as drf_filters
from rest_framework.exceptions import ValidationError

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


# Query parameters every list takes besides its filters, its page and its ordering.
GENERAL_QUERY_PARAMETERS = frozenset({"format"})


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend, with two changes.

    A list refuses a query parameter it does not know (400 naming the ones it takes): a
    misspelt filter read as "no filter" lists everything, which a client takes for the
    answer. And the filter form is built only when the request names one of the filters:
    without any, filtering changes nothing, and the form cost a millisecond on every list."""

    def filter_queryset(self, request, queryset, view):
        filterset_class = self.get_filterset_class(view, queryset)
        if getattr(view, "action", None) == "list":
            refuse_unknown_parameters(request, view, filterset_class)
        if filterset_class is not None and request.query_params.keys().isdisjoint(
            filterset_class.base_filters
        ):
            return queryset
        return super().filter_queryset(request, queryset, view)


def list_query_parameters(view, filterset_class) -> set[str]:
    """Every query parameter a list view takes."""
    names = set(GENERAL_QUERY_PARAMETERS)
    if filterset_class is not None:
        names |= set(filterset_class.base_filters)
    paginator = getattr(view, "paginator", None)
    if paginator is not None and hasattr(paginator, "query_parameters"):
        names |= paginator.query_parameters()
    for backend in getattr(view, "filter_backends", ()):
        if issubclass(backend, drf_filters.OrderingFilter):
            names.add(backend.ordering_param)
    return names


def refuse_unknown_parameters(request, view, filterset_class) -> None:
    allowed = list_query_parameters(view, filterset_class)
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        message = "Unknown query parameter. This list takes: " + ", ".join(sorted(allowed)) + "."
        raise ValidationError({name: [message] for name in unknown})


class OrderingFilter(drf_filters.OrderingFilter):
    """DRF's, with the view's explicit `ordering_fields` only, and an unknown field refused
    with a 400 (DRF drops it silently and the list comes in the default order). The id
    breaks ties, so that pages never overlap."""

    def get_valid_fields(self, queryset, view, context=None):
        fields = getattr(view, "ordering_fields", None)
        assert fields and fields != "__all__", f"{view.__class__.__name__}: ordering_fields"
        return [(field, field) for field in fields]

    def remove_invalid_fields(self, queryset, fields, view, request):
        valid = {name for name, _ in self.get_valid_fields(queryset, view)}
        asked = [term.strip() for term in fields]
        wrong = [term for term in asked if term.lstrip("-") not in valid]
        if wrong or not asked:
            raise ValidationError(
                {self.ordering_param: [f"Order by one of: {', '.join(sorted(valid))}."]}
            )
        return asked

    def get_ordering(self, request, queryset, view):
        ordering = list(super().get_ordering(request, queryset, view) or ())
        if ordering and not {"id", "-id", "pk", "-pk"} & set(ordering):
            ordering.append("-id" if ordering[0].startswith("-") else "id")
        return ordering

    def get_schema_operation_parameters(self, view):
        fields = [name for name, _ in self.get_valid_fields(None, view)]
        default = ", ".join(self.get_default_ordering(view) or ())
        return [
            {
                "name": self.ordering_param,
                "required": False,
                "in": "query",
                "description": f"Order of the list: fields, comma-separated, `-` for "
                f"descending. Default: `{default}` (ties broken by id).",
                "schema": {
                    "type": "array",
                    "items": {"type": "string", "enum": [*fields, *(f"-{f}" for f in fields)]},
                },
                "style": "form",
                "explode": False,
            }
        ]


# Every list's backends (a view's filter_backends).
LIST_BACKENDS = [FilterBackend, OrderingFilter]
