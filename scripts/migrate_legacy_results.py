"""Rewrite results CSVs that still have the legacy `extra` column in the current columns, values unchanged.

Each `key=value` of `extra` moves into its column (stseval.runs.results.convert_legacy_extra); every
other field is copied as text, so no number is re-formatted. Files without `extra` are left alone.
stseval reads legacy files as they are and rewrites them on its first write; this is for the committed
results, so their CSVs show the columns. Run from the repository root:

    .venv/bin/python scripts/migrate_legacy_results.py results/*/*.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from stseval.common.fileio import atomic_path
from stseval.runs.results import COLUMNS, LEGACY_EXTRA, REQUIRED_COLUMNS, convert_legacy_extra, read_rows


def migrate(path: Path) -> bool:
    """Rewrite one file if it has `extra`; True when it did. Checks every original field survived as text."""
    text = pd.read_csv(path, dtype=str, keep_default_na=False)
    if LEGACY_EXTRA not in text.columns or not set(REQUIRED_COLUMNS) <= set(text.columns):
        return False
    read_rows(path)  # refuse a damaged file before touching it
    converted = convert_legacy_extra(text)
    converted = converted[COLUMNS + [c for c in converted.columns if c not in COLUMNS]]
    kept = [c for c in text.columns if c != LEGACY_EXTRA]
    changed = [c for c in kept if c not in ("n_fit", "beta", "gamma")
               and not converted[c].equals(text[c])]
    assert not changed, f"{path}: columns changed by the migration: {changed}"
    with atomic_path(path) as tmp:
        converted.to_csv(tmp, index=False)
    return True


def main(paths: list[str]) -> None:
    for name in paths:
        print(f"{name}: {'migrated' if migrate(Path(name)) else 'no extra column, left alone'}")


if __name__ == "__main__":
    main(sys.argv[1:])
