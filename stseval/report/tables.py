"""Grids as text: the flat CSV table and the GitHub markdown table, with its provenance footer.

Cells read "41.23" (two decimals), "" where empty and the status text ("n/a") where a row was not
scored; the markdown adds "41.23 [40.10, 42.30]" for grids with `--ci` interval columns and bold for
`--best`. `write.write_report` writes both; `heatmap.plot_heatmap` prints the same cell texts.

Example:
    >>> grid = build_grid(resolve_duplicates(load_results(["results/whitening"])))
    >>> print(grid_to_markdown(grid, best=True))
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stseval.report.grids import CI_HIGH, CI_LOW
from stseval.report.provenance import provenance_lines, summary_line


def value_columns(grid: pd.DataFrame) -> list[str]:
    """The grid's value columns (tasks and averages), without the --ci interval columns."""
    return [c for c in grid.columns if not (c.endswith(CI_LOW) or c.endswith(CI_HIGH))]


def grid_to_csv_frame(grid: pd.DataFrame) -> pd.DataFrame:
    """The grid as a flat table of text: row keys, then values with two decimals ("" where empty)."""
    flat = grid.reset_index()
    for column in grid.columns:
        flat[column] = [number_text(value) for value in grid[column]]
    return flat


def grid_to_markdown(grid: pd.DataFrame, best: bool = False, provenance: dict | None = None,
                     title: str | None = None) -> str:
    """Render a grid as a GitHub markdown table, with its provenance as a footer.

    Args:
        grid: from build_grid.
        best: put the best (highest) number of each column in bold; ties are all bold.
        provenance: from collect_provenance; adds a "How this was produced" footer.
        title: a heading above the table.
    Returns:
        markdown text ending in a newline; cells read "41.23", or "41.23 [40.10, 42.30]" when the grid
        has interval columns.
    """
    keys = list(grid.index.names)
    columns = value_columns(grid)
    index = grid.index.to_frame(index=False)
    tops = {}
    if best:
        for column in columns:
            numbers = pd.to_numeric(pd.Series(list(grid[column])), errors="coerce")
            tops[column] = numbers.max() if numbers.notna().any() else None
    lines = []
    if title:
        lines += [f"# {title}", ""]
    if provenance:
        lines += [summary_line(provenance, titled=bool(title)), ""]
    lines.append("| " + " | ".join(md_escape(str(k)) for k in keys + columns) + " |")
    lines.append("|" + "|".join(["---"] * len(keys) + ["---:"] * len(columns)) + "|")
    for position in range(len(grid)):
        texts = [md_escape(_key_text(v)) for v in index.iloc[position]]
        for column in columns:
            value = grid[column].iloc[position]
            text = number_text(value)
            if text and column + CI_LOW in grid.columns and isinstance(value, float):
                low, high = grid[column + CI_LOW].iloc[position], grid[column + CI_HIGH].iloc[position]
                if np.isfinite(low) and np.isfinite(high):
                    text += f" [{low:.2f}, {high:.2f}]"
            if best and tops.get(column) is not None and isinstance(value, float) and value == tops[column]:
                text = f"**{text}**"
            texts.append(md_escape(text))
        lines.append("| " + " | ".join(texts) + " |")
    if provenance:
        lines += ["", *provenance_lines(provenance)]
    return "\n".join(lines) + "\n"


def number_text(value) -> str:
    if isinstance(value, str):
        return value
    return "" if value is None or not np.isfinite(value) else f"{value:.2f}"


def _key_text(value) -> str:
    text = str(value)
    return f'"{text}"' if text != text.strip() else text  # keep the space of a prefix like "query: " visible


def md_escape(text: str) -> str:
    return text.replace("|", "\\|")
