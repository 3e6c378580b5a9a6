"""Serializers that read rows by a plan made once per serializer, not per row and field.

DRF's Serializer.to_representation walks its fields for every row and, for each, goes
through Field.get_attribute (nested lookups, mappings, callables, error handling) before the
field's to_representation; on a list of a hundred instances that machinery was most of the
serialization time. FastReadMixin asks the same fields, with a shorter path for the common
cases: an attribute read off the row, the id of a related row (instead of DRF's PKOnlyObject),
a serializer method, ISO 8601 datetimes. Anything else, and any row where the short path
does not apply (a missing attribute, a callable), goes through DRF's own path. The fields
are DRF's, so the output, validation and the OpenAPI schema are those of DRF
(tests/test_list_costs.py compares both paths).
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from rest_framework import fields as drf_fields
from rest_framework import relations
from rest_framework.fields import SkipField
from rest_framework.relations import PKOnlyObject
from rest_framework.settings import api_settings

_LOOKUP_ERRORS = (AttributeError, KeyError, ObjectDoesNotExist)


def drf_read(field, row):
    """DRF's own path for one field (Serializer.to_representation); SkipField omits it."""
    attribute = field.get_attribute(row)
    check_for_none = attribute.pk if isinstance(attribute, PKOnlyObject) else attribute
    return None if check_for_none is None else field.to_representation(attribute)


def _iso_datetime(field):
    """DateTimeField.to_representation for aware datetimes in ISO 8601, with the field's
    time zone looked up once (DRF asks for the current one on every value)."""
    output_format = getattr(field, "format", api_settings.DATETIME_FORMAT)
    if not isinstance(output_format, str) or output_format.lower() != drf_fields.ISO_8601:
        return field.to_representation
    zone = field.timezone if hasattr(field, "timezone") else field.default_timezone()
    if zone is None:
        return field.to_representation

    def to_representation(value):
        if not isinstance(value, datetime) or value.utcoffset() is None:
            return field.to_representation(value)
        text = value.astimezone(zone).isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    return to_representation


def _attribute_reader(field, name: str):
    """Field.get_attribute for a one-attribute source, then the field's representation."""
    to_representation = (
        _iso_datetime(field)
        if isinstance(field, drf_fields.DateTimeField)
        else field.to_representation
    )

    def read(row):
        try:
            value = getattr(row, name)
        except _LOOKUP_ERRORS:
            return drf_read(field, row)  # DRF's default, null, omission or error
        if value is None:
            return None
        if callable(value):
            return drf_read(field, row)
        return to_representation(value)

    return read


def _related_id_reader(field, model, name: str):
    """PrimaryKeyRelatedField's answer (the related row's id) read off the row's own column."""
    try:
        model_field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return None
    if not model_field.concrete:
        return None
    attname = model_field.attname

    def read(row):
        try:
            return getattr(row, attname)
        except _LOOKUP_ERRORS:
            return drf_read(field, row)

    return read


def _short_reader(serializer, field):
    """A function row -> the field's value, or None where only DRF's path applies."""
    if isinstance(field, drf_fields.SerializerMethodField):
        return getattr(serializer, field.method_name)
    attrs = field.source_attrs
    if len(attrs) != 1:  # "*" (the row itself) or a dotted source
        return None
    name = attrs[0]
    if isinstance(field, relations.PrimaryKeyRelatedField):
        model = getattr(getattr(serializer, "Meta", None), "model", None)
        if field.pk_field is None and model is not None:
            return _related_id_reader(field, model, name)
        return None
    plain = type(field).get_attribute is drf_fields.Field.get_attribute
    related = (
        type(field).get_attribute is relations.RelatedField.get_attribute
        and not field.use_pk_only_optimization()
    )
    return _attribute_reader(field, name) if plain or related else None


def _reader(serializer, field):
    return _short_reader(serializer, field) or partial(drf_read, field)


# No docstring: drf-spectacular would show it as the description of every serializer
# without its own.
class FastReadMixin:
    # to_representation by a plan of the readable fields, made on first use.

    def _read_plan(self):
        plan = self.__dict__.get("_fast_read_plan")
        if plan is None:
            plan = self._fast_read_plan = [
                (field.field_name, _reader(self, field)) for field in self._readable_fields
            ]
        return plan

    def to_representation(self, instance):
        ret = {}
        for name, read in self._read_plan():
            try:
                ret[name] = read(instance)
            except SkipField:
                pass
        return ret
