"""Option values that are lists or choices: the one way every option splits its list and suggests a name."""
from __future__ import annotations

import difflib
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


def did_you_mean(given: str, choices: Iterable[str]) -> str:
    """'did you mean X? ' for the choice closest to a mistyped value, or '' when none is close.

    The same cutoff as task names (data/tasks.py), so every option suggests alike.

    Example:
        >>> did_you_mean("lastavg", ["cls", "last-avg", "max"])
        'did you mean last-avg? '
    """
    by_key = {_canonical(choice): choice for choice in choices}
    close = difflib.get_close_matches(_canonical(given), list(by_key), n=1, cutoff=0.5)
    return f"did you mean {by_key[close[0]]}? " if close else ""


def _canonical(name: str) -> str:
    """Lowercase without '-', '_' or spaces: 'lastavg' and 'Last_Avg' both meet 'last-avg'."""
    return "".join(ch for ch in name.lower() if ch not in "-_ ")

