"""How catalogue values are shown to people (stats tables, HTML report): durations, instants, shares."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

INSTANT_COLUMNS = {"window_start", "window_end", "bucket_start"}
UNITS = (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1_000))


def duration(ms: float) -> str:
    """1234567 -> '20min 34s': the two largest units, or ms below a second."""
    if ms == 0:
        return "0"
    if ms < 1_000:
        return f"{ms:.0f} ms"
    parts, rest = [], int(ms)
    for unit, size in UNITS:
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def instant(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def cell(column: str, value: Any) -> str:
    """One value as text, by what its column holds."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if column in INSTANT_COLUMNS and isinstance(value, int):
        return instant(value)
    if column.endswith("_ms") and isinstance(value, int | float):
        return duration(value)
    if column.endswith("_s") and isinstance(value, int | float):
        return duration(value * 1000)
    if column in ("compliance",) or column.endswith(("_rate", "_share")):
        return f"{100 * float(value):.1f} %"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def numeric(column: str) -> bool:
    """Right-align this column?"""
    return column.endswith(("_ms", "_s", "_rate", "_share")) or column in (
        "compliance", "routed", "decided", "on_time", "breached", "pending", "acked", "referrals", "duplicates",
        "label_claims", "removal_orders", "labels_rejected")
