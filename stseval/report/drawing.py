"""The PNG figures of results: a grid's heatmap, SimCSE training curves and the retrieval sweep plot.

- `plot_heatmap`: a grid from `grids.build_grid` as an annotated table, each column shaded on its own
  scale; `write.write_report` writes it as `<name>.png`.
- `write_curve_plots` / `plot_training_curve`: valid Spearman and training loss against step, one PNG beside
  each curve CSV of a simcse-train run.
- `write_sweep_plot` / `plot_sweep`: recall@10 and QPS against k, one column per task, for `stseval index`.

Every figure is drawn on an Agg canvas (no pyplot state) with a fixed size and dpi and written atomically,
so the same rows give the same bytes. matplotlib is imported inside each function: importing this module
stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from stseval.common.fileio import atomic_path
from stseval.report.grids import AVG, WEIGHTED_AVG, in_order
from stseval.report.tables import number_text, value_columns
from stseval.runs.results import cell_key, read_rows

PNG_DPI = 100
_CELL_IN = (0.8, 0.3)  # heatmap cell width and height in inches
_CHAR_IN = 0.065  # width of one 9-pt DejaVu Sans character, for the row-label margin


def plot_heatmap(grid: pd.DataFrame, path: Path, title: str = "") -> None:
    """Draw the grid as an annotated heatmap PNG, written atomically.

    Each column is shaded from its own lowest to highest number, because the tasks differ in scale
    (PAWSX around 15, STS-B around 75); the numbers are printed in the cells. The figure size depends
    only on the grid's shape and label lengths, and the PNG carries no software or time stamp, so the
    same grid gives the same bytes.

    Args:
        grid: from build_grid (interval columns are not drawn).
        path: the .png to write.
        title: drawn above the table.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg, whatever backend pyplot uses
    from matplotlib.figure import Figure

    columns = value_columns(grid)
    # (n_rows, n_columns); status texts such as "n/a" are drawn as grey cells
    numbers = np.array([[v if isinstance(v, float) else np.nan for v in grid[c]] for c in columns], dtype=float).T
    labels = [" / ".join(str(v) for v in (key if isinstance(key, tuple) else (key,)) if str(v) != "")
              for key in grid.index]
    low = np.array([np.nanmin(c) if np.isfinite(c).any() else 0.0 for c in numbers.T])
    high = np.array([np.nanmax(c) if np.isfinite(c).any() else 0.0 for c in numbers.T])
    spread = np.where(high > low, high - low, 1.0)
    shade = np.where(high > low, (numbers - low) / spread, 0.5)

    cell_w, cell_h = _CELL_IN
    label_w = 0.3 + _CHAR_IN * max((len(label) for label in labels), default=1)
    width = max(label_w + cell_w * len(columns) + 0.3, _CHAR_IN * 1.2 * len(title) + 0.6, 3.0)
    top_h, bottom_h = 0.9, 0.2
    height = top_h + cell_h * len(grid) + bottom_h
    figure = Figure(figsize=(width, height), dpi=PNG_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((label_w / width, bottom_h / height, cell_w * len(columns) / width,
                            cell_h * len(grid) / height))
    cmap = colormaps["Blues"].with_extremes(bad="#eeeeee")
    axes.imshow(np.ma.masked_invalid(0.1 + 0.7 * shade), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto",
                interpolation="nearest")
    for i in range(len(grid)):
        for j, column in enumerate(columns):
            text = number_text(grid[column].iloc[i])
            dark = np.isfinite(shade[i, j]) and shade[i, j] > 0.6
            axes.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    axes.set_xticks(range(len(columns)), columns, fontsize=9)
    axes.set_yticks(range(len(grid)), labels, fontsize=9)
    axes.xaxis.tick_top()
    axes.tick_params(length=0)
    for spine in axes.spines.values():
        spine.set_visible(False)
    n_tasks = len([c for c in columns if c not in (AVG, WEIGHTED_AVG)])
    if n_tasks < len(columns):
        axes.axvline(n_tasks - 0.5, color="white", linewidth=3)
    axes_top = 1 - (top_h - 0.05) / height
    figure.text(label_w / width - 0.1 / width, axes_top + 0.08 / height, " / ".join(map(str, grid.index.names)),
                ha="right", va="bottom", fontsize=8, color="#555555")
    if title:
        figure.text(0.5, 1 - 0.12 / height, title, ha="center", va="top", fontsize=10)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=PNG_DPI, metadata={"Software": None})


def plot_training_curve(curve_csv: Path, path: Path, title: str = "") -> None:
    """PNG of a SimCSE training curve (stseval/simcse.py's curve.csv): valid Spearman and training loss vs step."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg, whatever backend pyplot uses
    from matplotlib.figure import Figure

    curve = pd.read_csv(curve_csv)
    score_column = [column for column in curve.columns if column.endswith("_spearman")][0]
    figure = Figure(figsize=(6.4, 3.6))
    FigureCanvasAgg(figure)
    axis = figure.add_subplot(1, 1, 1)
    axis.plot(curve["step"], 100 * curve[score_column], marker="o", color="tab:blue")
    axis.set_xlabel("training step")
    axis.set_ylabel(f"{score_column.removesuffix('_spearman')} Spearman x 100", color="tab:blue")
    losses = curve.dropna(subset=["train_loss"])
    if not losses.empty:
        other = axis.twinx()
        other.plot(losses["step"], losses["train_loss"], color="tab:gray", linestyle="--")
        other.set_ylabel("training loss (mean since last point)", color="tab:gray")
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    with atomic_path(Path(path)) as tmp:
        figure.savefig(tmp, format="png", dpi=110)


def write_curve_plots(curves: Sequence[tuple[Path, str]]) -> list[Path]:
    """Draw each (curve CSV, title) of a simcse-train run as the PNG beside it; returns the PNGs."""
    written = []
    for curve_csv, title in curves:
        png = Path(curve_csv).with_suffix(".png")
        plot_training_curve(curve_csv, png, title)
        written.append(png)
    return written


def plot_sweep(frame: pd.DataFrame, path: Path) -> None:
    """Plot recall@10 (top) and QPS (bottom, log scale) against k, one column per task.

    Args:
        frame: long-format sweep rows (results.read_rows); the corpus size N and the real k of "full"
            come from each row's n_corpus and n_dims columns.
        path: PNG to write atomically (Agg canvas, fixed size and dpi; no pyplot state).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from stseval.methods.index import su_min_dims

    frame = frame.assign(n_dims=pd.to_numeric(frame["n_dims"], errors="coerce").fillna(0).astype(int),
                         n_corpus=pd.to_numeric(frame["n_corpus"], errors="coerce").fillna(0).astype(int),
                         value=pd.to_numeric(frame["value"], errors="coerce"))
    task_names = in_order("task", set(frame["task"]))  # columns in TASKS order, like every grid
    figure = Figure(figsize=(3.6 * len(task_names) + 0.8, 6.4), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, len(task_names), squeeze=False)
    for column, task in enumerate(task_names):
        rows = frame[frame["task"] == task]
        n_corpus = int(rows["n_corpus"].max())
        for row_index, metric in enumerate(("recall@10", "qps")):
            axis = axes[row_index][column]
            for method, group in rows[rows["metric"] == metric].groupby("method", sort=True):
                group = group.sort_values("n_dims")
                axis.plot(group["n_dims"], group["value"], marker="o", label=method)
            if n_corpus > 1:
                axis.axvline(su_min_dims(n_corpus), color="grey", linestyle="--", linewidth=1,
                             label=f"8.33 ln N = {su_min_dims(n_corpus):.0f}")
            _sweep_axis(axis, sorted(set(rows["n_dims"])), metric, column, row_index,
                        f"{task} (N={n_corpus})" if row_index == 0 else "")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, [label.split(" = ")[0] if "ln N" in label else label for label in labels],
                  loc="lower center", ncol=len(labels), fontsize="small", frameon=False)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    with atomic_path(Path(path)) as tmp:
        figure.savefig(tmp, format="png")


def _sweep_axis(axis, ticks: list[int], metric: str, column: int, row_index: int, title: str) -> None:
    """Scales, ticks and labels of one panel of the sweep plot."""
    axis.set_xscale("log", base=2)
    axis.set_xticks(ticks, [str(tick) for tick in ticks])
    axis.minorticks_off()
    if metric == "qps":
        axis.set_yscale("log")
    else:
        axis.set_ylim(0, 1.02)
    axis.set_title(title)
    axis.set_xlabel("dims k" if row_index == 1 else "")
    axis.set_ylabel(metric if column == 0 else "")
    axis.grid(True, alpha=0.3)


def write_sweep_plot(results_path: Path, path: Path, cells: frozenset | None = None) -> Path | None:
    """Draw the sweep plot of a results file's rows (only those whose cell key is in `cells`, when given).

    Returns:
        path, or None when no row is left to draw.
    """
    frame = read_rows(results_path)
    if cells is not None:
        frame = frame[[cell_key(record) in cells for _, record in frame.iterrows()]]
    if frame.empty:
        return None
    plot_sweep(frame, path)
    return Path(path)
