"""Comma-separated option values: the one way every option splits its list."""
from __future__ import annotations

from collections.abc import Iterable


def comma_parts(text_or_items: str | Iterable[object] | None) -> list[str]:
    """'a, b,,c' or ["a,b", "c"] -> ["a", "b", "c"]: split each item on commas, strip, drop empty parts.

    Order and repeats are kept; callers lowercase or de-duplicate as their option needs. None -> [].

    Example:
        >>> comma_parts(["stsb, ATEC", " ,bq"])
        ['stsb', 'ATEC', 'bq']
    """
    if text_or_items is None:
        return []
    items = [text_or_items] if isinstance(text_or_items, str) else list(text_or_items)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]
