"""Request parsers for the API (a module of its own: DRF's settings import it early)."""

from __future__ import annotations

import codecs

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils import json

# No request body of ours is nested deeper than a few levels; a deep one is an attack on the
# parser (Python's json raises RecursionError past ~1000 levels).
MAX_JSON_DEPTH = 64


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, bounded: at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes, MAX_JSON_DEPTH
    levels. Either limit crossed is a 400 that says which."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        # DRF reads the request as a stream, past Django's own body size check.
        raw = stream.read(limit + 1) if limit is not None else stream.read()
        if limit is not None and len(raw) > limit:
            raise ParseError(too_large())
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            parse_constant = json.strict_constant if self.strict else None
            data = json.loads(codecs.decode(raw, encoding), parse_constant=parse_constant)
        except RecursionError as exc:
            raise ParseError(_too_deep()) from exc
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        if _depth_exceeds(data, MAX_JSON_DEPTH):
            raise ParseError(_too_deep())
        return data


def too_large() -> str:
    return f"Request body too large: at most {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."


def _too_deep() -> str:
    return f"JSON nested too deeply: at most {MAX_JSON_DEPTH} levels."


def _depth_exceeds(data, limit: int) -> bool:
    """Whether arrays/objects nest deeper than limit (iterative: no recursion to exhaust)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
