"""The whitening studies' line plots (issue 13), drawn from results rows only, each with its table.

- `rotation`: Spearman against k for raw truncation (first k coordinates), PCA to k (beta = gamma = 0, a
  rotation onto the principal axes) and whitening to k (beta = gamma = 1), one panel per task and one
  for the average, raw as a dashed line. Whether whitening's gain at small k comes from the projection
  (pca already has it) or from the rescaling (only whitening has it).
- `layers`: Spearman against layer for the `layer-avg:N` poolings, raw (solid) and whitened (dashed),
  one colour per task and the average.

Each plot is written as `<name>.csv` (the grid of the plotted numbers: Spearman x 100, the same cells
`stseval report` would show for those rows), `.md` (that table with how it was produced), `.png` and
`.provenance.json`. Plots use the Agg canvas with a fixed size and dpi, so the same rows give the same files.

Example:
    >>> write_plot("rotation", ["results/whitening_studies"], Path("runs/report"), filters=["pooling=last-avg"])
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from stseval.common.errors import StsevalError
from stseval.common.fileio import atomic_path, check_writable_dir, write_text_atomic
from stseval.options import PLOTS
from stseval.report.grids import (
    AVG,
    apply_filters,
    as_text,
    build_grid,
    in_order,
    load_results,
    resolve_duplicates,
    select_rows,
)
from stseval.report.ordering import row_layer
from stseval.report.provenance import collect_provenance
from stseval.report.tables import grid_to_csv_frame, grid_to_markdown
from stseval.runs.results import write_frame

METRIC = "spearman_cosine"
ROTATION_METHODS = ("raw-truncate", "pca", "whitening")
"""The rotation plot's lines, in legend order; raw is drawn as a reference line."""
_WHITENED = ("1", "1")  # (beta, gamma) of the whitening rows both plots draw: BERT-whitening
_ROTATION_KEYS = ["model", "pooling", "prefix", "method", "fit_on", "dims"]
_LAYER_KEYS = ["model", "prefix", "pooling", "method", "fit_on", "dims"]
_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "black")


def rotation_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows the rotation plot draws: raw, raw-truncate, pca, and whitening with beta = gamma = 1.

    Raises:
        StsevalError naming --filter when the rows hold several models, poolings, prefixes or --fit-on
        sources (one plot compares methods for one of each), or none of the methods.
    """
    methods = as_text(frame["method"])
    plain = ((methods == "whitening") & (as_text(frame["beta"]) == _WHITENED[0])
             & (as_text(frame["gamma"]) == _WHITENED[1]))
    rows = frame[methods.isin(["raw", "raw-truncate", "pca"]) | plain]
    if not as_text(rows["method"]).isin(ROTATION_METHODS).any():
        raise StsevalError("--plot rotation: no raw-truncate, pca or whitening (beta = gamma = 1) rows left; make "
                           "them with stseval whiten --methods whitening,pca,raw-truncate --dims full,256,128,64,32")
    _one_of(rows, ["model", "pooling", "prefix"], "rotation")
    _one_of(rows[as_text(rows["fit_on"]) != ""], ["fit_on"], "rotation")
    return rows


def layer_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows the layer plot draws: layer-avg:N poolings, raw and whitening with beta = gamma = 1.

    Raises:
        StsevalError naming --filter when the rows hold several models or prefixes, or whitening of
        several dims or --fit-on sources; or when no layer-avg row is left.
    """
    layered = frame[[row_layer(name) is not None for name in as_text(frame["pooling"])]]  # read leniently
    methods = as_text(layered["method"])
    plain = (methods == "whitening") & (as_text(layered["beta"]) == _WHITENED[0]) \
        & (as_text(layered["gamma"]) == _WHITENED[1])
    rows = layered[(methods == "raw") | plain]
    if rows.empty:
        raise StsevalError("--plot layers: no raw or whitening rows of layer-avg:N poolings left; make them with "
                           "stseval whiten --pooling layer-avg:0-12")
    _one_of(rows, ["model", "prefix"], "layers")
    _one_of(rows[as_text(rows["method"]) == "whitening"], ["dims", "fit_on"], "layers")
    return rows


def _one_of(rows: pd.DataFrame, keys: list[str], kind: str) -> None:
    """Raise naming --filter when the rows take several values of the keys together."""
    settings = sorted(set(map(tuple, rows[keys].astype(str).to_numpy().tolist())))
    if len(settings) > 1:
        shown = "; ".join(", ".join(f"{key}={value}" for key, value in zip(keys, setting, strict=True))
                          for setting in settings[:4])
        raise StsevalError(f"--plot {kind}: the rows hold {len(settings)} settings of {', '.join(keys)} ({shown}"
                           f"{'; ...' if len(settings) > 4 else ''}); one plot draws one: pick it with "
                           f"--filter {keys[0]}=...")


def _panels(grid: pd.DataFrame) -> list[str]:
    """The grid's columns a plot draws: the tasks and the plain average (not the pair-weighted one)."""
    tasks = [column for column in grid.columns if column not in (AVG, "w-avg")]
    return tasks + ([AVG] if AVG in grid.columns else [])


def _numbers(values) -> np.ndarray:
    """Grid cells as floats, NaN for empty and n/a cells."""
    return np.array([value if isinstance(value, float) else np.nan for value in values], dtype=float)


def plot_rotation(grid: pd.DataFrame, path: Path, title: str = "") -> None:
    """Spearman x 100 against k (full first, then shrinking), one panel per task and avg; writes path.

    Args:
        grid: from build_grid over `rotation_rows`, indexed by _ROTATION_KEYS.
        path: the .png, written atomically.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    index = grid.index.to_frame(index=False)
    dims = in_order("dims", set(index.loc[index["method"] != "raw", "dims"]))  # full, then largest
    panels = _panels(grid)
    figure = Figure(figsize=(3.0 * len(panels) + 0.6, 3.6), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, column in zip(axes, panels, strict=True):
        values = _numbers(grid[column])
        raw = values[(index["method"] == "raw").to_numpy()]
        if len(raw) and np.isfinite(raw[0]):
            axis.axhline(raw[0], color="grey", linestyle="--", linewidth=1, label="raw (full)")
        for method, colour in zip(ROTATION_METHODS, _COLOURS[:len(ROTATION_METHODS)], strict=True):
            chosen = (index["method"] == method).to_numpy()
            if chosen.any():
                position = {size: x for x, size in enumerate(dims)}
                xs = [position[size] for size in index.loc[chosen, "dims"]]
                axis.plot(xs, values[chosen], marker="o", color=colour, label=method)
        axis.set_xticks(range(len(dims)), dims)
        axis.set_title(column)
        axis.set_xlabel("dims k")
        axis.grid(True, alpha=0.3)
    axes[0].set_ylabel("Spearman x 100")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize="small", frameon=False)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    with atomic_path(Path(path)) as tmp:
        figure.savefig(tmp, format="png", metadata={"Software": None})


def plot_layers(grid: pd.DataFrame, path: Path, title: str = "") -> None:
    """Spearman x 100 against layer, raw solid and whitened dashed, one colour per task and avg; writes path.

    Args:
        grid: from build_grid over `layer_rows`, indexed by _LAYER_KEYS.
        path: the .png, written atomically.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    index = grid.index.to_frame(index=False)
    layers = np.array([row_layer(name) for name in index["pooling"]])
    figure = Figure(figsize=(7.2, 4.4), dpi=110)
    FigureCanvasAgg(figure)
    axis = figure.add_subplot(1, 1, 1)
    for position, column in enumerate(_panels(grid)):
        colour = "black" if column == AVG else _COLOURS[position % (len(_COLOURS) - 1)]
        values = _numbers(grid[column])
        for method, style in (("raw", "-"), ("whitening", "--")):
            chosen = (index["method"] == method).to_numpy()
            if chosen.any():
                order = np.argsort(layers[chosen], kind="stable")
                axis.plot(layers[chosen][order], values[chosen][order], linestyle=style, marker="o", markersize=3,
                          color=colour, linewidth=2.0 if column == AVG else 1.2, label=f"{column} {method}")
    axis.set_xticks(sorted(set(layers.tolist())))
    axis.set_xlabel("layer (0 = embedding output)")
    axis.set_ylabel("Spearman x 100")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize="x-small", ncol=2, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    if title:
        axis.set_title(title, fontsize=9)
    figure.tight_layout()
    with atomic_path(Path(path)) as tmp:
        figure.savefig(tmp, format="png", metadata={"Software": None})


def write_plot(kind: str, paths: Sequence[str | Path], out: Path, name: str | None = None, split: str = "test",
               filters: Sequence[str] = (), strict: bool = False,
               task_order: Sequence[str] | None = None) -> list[Path]:
    """Draw one study plot (`PLOTS`) of results rows: <out>/<name>.csv, .md, .png, .provenance.json.

    Args:
        kind: "rotation", "layers" or "curves" (SimCSE training curves, see report.curves).
        paths: results files or folders (grids.load_results).
        name: file stem; None gives "<kind>_<split>".
        split, filters, strict, task_order: as in write.write_report; the metric is spearman_cosine.
    Returns:
        the four written paths.
    Raises:
        StsevalError naming the option: an unknown kind, no rows to draw, several settings in one plot.
    """
    if kind not in PLOTS:
        raise StsevalError(f"--plot: {kind!r} is not one of {', '.join(PLOTS)}")
    if kind == "curves":  # drawn from the training-curve files the rows point to, not from a grid
        from stseval.report.curves import write_curves

        return write_curves(paths, out, name=name, split=split, filters=filters, strict=strict)
    check_writable_dir(out, "--out")
    frame = resolve_duplicates(apply_filters(load_results(paths), filters), strict)
    chosen = select_rows(frame, METRIC, split)
    rows = rotation_rows(chosen) if kind == "rotation" else layer_rows(chosen)
    keys = _ROTATION_KEYS if kind == "rotation" else _LAYER_KEYS
    grid = build_grid(rows, keys, metric=METRIC, split=split, task_order=task_order)
    drawn = "Spearman x 100 against k" if kind == "rotation" else "Spearman x 100 against layer"
    title = f"{drawn}, {split} split"
    settings = {"metric": METRIC, "split": split, "scale": 100, "plot": kind, "filters": list(filters),
                "duplicates": "strict" if strict else "latest created_at"}
    provenance = collect_provenance(rows, grid, settings)
    stem = name or f"{kind}_{split}"
    written = [out / f"{stem}{suffix}" for suffix in (".csv", ".md", ".png", ".provenance.json")]
    write_frame(grid_to_csv_frame(grid), written[0])
    write_text_atomic(grid_to_markdown(grid, False, provenance, title), written[1])
    (plot_rotation if kind == "rotation" else plot_layers)(grid, written[2], title)
    write_text_atomic(json.dumps(provenance, indent=2, ensure_ascii=False) + "\n", written[3])
    return written
