"""Small presentation helpers for the console: sizes, percentages, capacity bars, nav."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache

from django import template
from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.timesince import timesince

register = template.Library()

_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]


@register.filter
def bytes_h(value) -> str:
    """1073741824 -> '1.0 GiB' (binary units, as libvirt reports them)."""
    try:
        size = float(value)
    except (TypeError, ValueError):
        return "—"
    unit = 0
    while abs(size) >= 1024 and unit < len(_UNITS) - 1:
        size /= 1024
        unit += 1
    if unit == 0:
        return f"{int(size)} B"
    return f"{size:.0f} {_UNITS[unit]}" if size >= 100 else f"{size:.1f} {_UNITS[unit]}"


@register.filter
def percent_of(value, total) -> float:
    try:
        total = float(total)
        return round(100 * float(value) / total, 1) if total else 0.0
    except (TypeError, ValueError):
        return 0.0


@register.filter
def ago(value) -> str:
    """'just now' for the last minute, else '5 minutes ago'."""
    if not value:
        return ""
    if timezone.now() - value < timedelta(minutes=1):
        return "just now"
    return f"{timesince(value)} ago"


@register.filter
def duration(value) -> str:
    """timedelta -> '4.2 s', '3 min 5 s', '2 h 10 min'."""
    if not isinstance(value, timedelta):
        return ""
    seconds = value.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if hasattr(mapping, "get") else None


def _num(value, unit: str) -> str:
    if unit == "bytes":
        return bytes_h(value)
    return f"{value:g}"


def _attr(resource, name: str, default=0.0):
    if isinstance(resource, dict):
        return resource.get(name, default)
    return getattr(resource, name, default)


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.2f}"


@register.simple_tag
def capacity_bar(resource, unit: str = "", label: str = "", compact: bool = False) -> str:
    """A bar for a hosts.selectors.Resource (or a host_totals entry).

    The scale is the larger of the limit (physical x ratio) and what is allocated, so the
    physical size, the overcommit beyond it and the limit can all be drawn on one line.
    """
    physical = float(_attr(resource, "physical"))
    allocated = float(_attr(resource, "allocated"))
    limit = float(_attr(resource, "limit", physical))
    ratio = _attr(resource, "ratio", None)
    if ratio is None and physical:
        ratio = limit / physical
    # DEBUG renders every time, so an edited template shows at once.
    render = _capacity_bar_html.__wrapped__ if settings.DEBUG else _capacity_bar_html
    return render(physical, allocated, limit, ratio, unit, label, bool(compact))


# A bar is a pure function of its numbers, which change rarely: pages draw it three times per
# host (about 0.3 ms each through the template), so each distinct bar is rendered once.
@lru_cache(maxsize=2048)
def _capacity_bar_html(physical, allocated, limit, ratio, unit, label, compact) -> str:
    return render_to_string(
        "includes/capacity_bar.html",
        _capacity_bar_context(physical, allocated, limit, ratio, unit, label, compact),
    )


def _capacity_bar_context(physical, allocated, limit, ratio, unit, label, compact) -> dict:
    scale = max(limit, allocated, physical) or 1.0
    # Three segments: within physical, beyond physical (overcommit), beyond the limit.
    within = min(allocated, physical)
    over = max(min(allocated, limit) - physical, 0.0)
    excess = max(allocated - max(limit, physical), 0.0)
    level = "ok"
    if allocated > limit:
        level = "danger"
    elif allocated > physical:
        level = "warn"
    return {
        "label": label,
        "unit": unit,
        "compact": compact,
        # Strings, so localisation can never turn 12.5 into "12,5" inside a style attribute.
        "within_pct": _pct(within, scale),
        "over_pct": _pct(over, scale),
        "excess_start_pct": _pct(max(limit, physical), scale),
        "excess_pct": _pct(excess, scale),
        "physical_pct": _pct(physical, scale),
        "zone_pct": _pct(max(limit - physical, 0.0), scale),
        "limit_pct": _pct(limit, scale),
        "show_physical_mark": 0 < physical < scale,
        "percent": round(100 * allocated / limit, 1) if limit else 0.0,
        "allocated": _num(allocated, unit),
        "physical": _num(physical, unit),
        "limit": _num(limit, unit),
        "ratio": f"{float(ratio):g}" if ratio else "",
        "overcommitted": allocated > physical,
        "over_limit": allocated > limit,
        "level": level,
        "empty": not physical,
    }


@register.simple_tag(takes_context=True)
def nav_active(context, prefix: str) -> str:
    request = context.get("request")
    if request is None:
        return ""
    path = request.path
    hit = path == "/" if prefix == "/" else path.startswith(prefix)
    return "active" if hit else ""
