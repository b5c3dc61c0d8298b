"""The PNG figures of runs: SimCSE training curves and the retrieval sweep plot (a grid's heatmap is in
`stseval.report.heatmap`).

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

import pandas as pd

from stseval.common.fileio import atomic_path
from stseval.evaluation.retrieval import su_min_dims  # numpy only: the plot loads no faiss
from stseval.report.ordering import in_order
from stseval.runs.results import cell_key, read_rows


def plot_training_curve(curve_csv: Path, path: Path, title: str = "") -> None:
    """PNG of a SimCSE training curve (a run folder's curve.csv): valid Spearman and training loss vs step."""
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
