"""SimCSE training curves side by side (`stseval report --plot curves`), found through the results rows.

Each `simcse` row records its run folder (`run_dir`), and simcse-train copies that run's curve to
`<results folder>/curves/<run folder name>.csv`. This plot finds every row's curve there and draws valid
Spearman against training step, as the change from the untrained model (step 0) on the same valid sample
(each seed draws its own): one panel per task, one colour per dropout, one line style per seed. Written as
`<name>.csv` (every curve point, long format), `.md` (per run: valid Spearman at step 0, at its best step and
at the end; test Spearman at the end of the epoch and of the best-on-valid checkpoint), `.png` and
`.provenance.json`.

Example:
    >>> write_curves(["results/simcse_su"], Path("runs/report"), name="simcse_curves")
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from stseval.common.errors import StsevalError
from stseval.common.fileio import atomic_path, check_writable_dir, write_text_atomic
from stseval.options import BEST_VALID_METHOD
from stseval.report.grids import (
    apply_filters,
    as_text,
    in_order,
    load_results,
    order_key,
    resolve_duplicates,
    select_rows,
)
from stseval.report.provenance import collect_provenance, provenance_lines
from stseval.report.tables import md_escape
from stseval.runs.results import write_frame

METRIC = "spearman_cosine"
RUN_KEYS = ["model", "pooling", "task", "dropout", "seed"]
"""What tells the curves of one results selection apart; other settings must agree (checked)."""
_SHARED_KEYS = ("prefix", "loss", "batch_size", "learning_rate", "epochs")
_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")
_STYLES = ("-", "--", "-.", ":")


def curve_file(row: pd.Series) -> Path:
    """Where simcse-train put the curve of a row's run: <folder of its results file>/curves/<run folder>.csv."""
    return Path(str(row["source_file"])).parent / "curves" / f"{Path(str(row['run_dir'])).name}.csv"


def curve_points(rows: pd.DataFrame) -> pd.DataFrame:
    """Every point of the training curves of the `simcse` runs among rows (one split, spearman_cosine).

    Returns:
        columns RUN_KEYS + step, valid_on (the curve's split label), valid_spearman and
        valid_minus_step0 (the change from the run's first point, both x 100), train_loss, curve_file;
        runs whose curve file is missing are left out.
    Raises:
        StsevalError naming --plot when no run has a curve, or when the runs differ in a setting besides
        RUN_KEYS (pick one with --filter).
    """
    runs = rows[(rows["method"] == "simcse") & (as_text(rows["run_dir"]) != "")]
    for key in _SHARED_KEYS:
        values = sorted(set(as_text(runs[key])))
        if len(values) > 1:
            raise StsevalError(f"--plot curves: the runs differ in {key} ({', '.join(values)}); "
                               f"pick one with --filter {key}=...")
    frames = []
    for _, run in runs.iterrows():
        path = curve_file(run)
        if not path.is_file():
            continue
        curve = pd.read_csv(path)
        score = next((column for column in curve.columns if column.endswith("_spearman")), None)
        if score is None or "step" not in curve.columns:
            raise StsevalError(f"{path}: not a training curve (needs a step and a <split>_spearman column)")
        curve = curve.sort_values("step", kind="stable").reset_index(drop=True)
        start = float(curve[score].iloc[0])
        frames.append(pd.DataFrame({
            **{key: str(run[key]) for key in RUN_KEYS}, "step": curve["step"].astype(int),
            "valid_on": score.removesuffix("_spearman"), "valid_spearman": (100 * curve[score]).round(4),
            "valid_minus_step0": (100 * (curve[score] - start)).round(4),
            "train_loss": curve["train_loss"] if "train_loss" in curve.columns else np.nan,
            "curve_file": path.as_posix()}))
    if not frames:
        raise StsevalError("--plot curves: none of the selected simcse rows has a curve at <results folder>/"
                           "curves/<run folder>.csv (simcse-train writes one when the task has a valid split)")
    return pd.concat(frames, ignore_index=True)


def run_summary(points: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """One row per run (RUN_KEYS): valid at step 0 (the untrained model), the best step among the trained
    checkpoints (the one its simcse-best-valid row chose, when there is one) and its value, the last step and
    its value, and the test Spearman (x 100) of the end-of-epoch model and of the best-on-valid checkpoint."""
    test = rows.assign(**{key: as_text(rows[key]) for key in RUN_KEYS})
    records = []
    for keys, curve in points.groupby(RUN_KEYS, sort=False):
        record = dict(zip(RUN_KEYS, keys, strict=True))
        same = np.logical_and.reduce([test[key] == value for key, value in zip(RUN_KEYS, keys, strict=True)])
        chosen = test[same & (test["method"] == BEST_VALID_METHOD)]
        trained = curve[curve["step"] > 0]  # the checkpoints a best-on-valid row chooses from
        recorded = str(chosen["best_step"].iloc[0]) if len(chosen) else ""
        at_recorded = trained[trained["step"] == int(float(recorded))] if recorded else trained.iloc[:0]
        if recorded and at_recorded.empty:
            raise StsevalError(f"{curve['curve_file'].iloc[0]}: no point at step {recorded}, the best step its "
                               f"{BEST_VALID_METHOD} row records")
        best = at_recorded.iloc[0] if recorded else trained.iloc[int(np.argmax(trained["valid_spearman"].to_numpy()))]
        start, end = curve.iloc[0], curve.iloc[-1]  # curve_points sorted each run by step
        record.update({"valid at step 0": start["valid_spearman"], "best step": int(best["step"]),
                       "best valid": best["valid_spearman"], "last step": int(end["step"]),
                       "last valid": end["valid_spearman"]})
        for method, column in (("simcse", "test, end of epoch"), (BEST_VALID_METHOD, "test, best on valid")):
            found = test[same & (test["method"] == method)]
            record[column] = round(100 * float(found["value"].iloc[0]), 2) if len(found) else np.nan
        records.append(record)
    summary = pd.DataFrame(records)
    order = sorted(range(len(summary)), key=lambda i: tuple(
        order_key(key, summary[key].iloc[i]) for key in ("model", "pooling", "task", "dropout", "seed")))
    return summary.iloc[order].reset_index(drop=True)


def summary_markdown(summary: pd.DataFrame, provenance: dict, title: str) -> str:
    """The per-run table with the provenance footer."""
    columns = [column for column in summary.columns if column not in ("model", "pooling")]
    lines = [f"# {title}", "", "| " + " | ".join(columns) + " |",
             "|" + "".join("---|" if column in RUN_KEYS else "---:|" for column in columns)]
    for _, record in summary.iterrows():
        cells = [md_escape(str(record[c])) if c in RUN_KEYS or c.endswith("step") else
                 ("" if pd.isna(record[c]) else f"{record[c]:.2f}") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    models = ", ".join(f"{m} {p}" for m, p in dict.fromkeys(zip(summary["model"], summary["pooling"], strict=True)))
    lines += ["", f"Spearman x 100 of {models}. Valid: the training curve's sample of the valid split (it may "
              "choose the checkpoint); test: never used to choose.", "", *provenance_lines(provenance)]
    return "\n".join(lines) + "\n"


Y_LABEL = "change in valid Spearman x 100 since step 0"
_MIN_WIDTH_IN = 7.2  # one task's panel alone is 3.6 in: too narrow for the title and legend
_LEGEND_ENTRY_IN = 1.9  # a legend entry ("dropout 0.1, seed 2" and its line) at fontsize small
_DPI = 110


def plot_curves(points: pd.DataFrame, path: Path, title: str = "") -> None:
    """Valid Spearman x 100 minus the run's step 0 against step, a panel per task, colour = dropout, style =
    seed; writes path. Each seed draws its own valid sample, so runs are compared by their change."""
    figure = curves_figure(points, title)
    with atomic_path(Path(path)) as tmp:
        figure.savefig(tmp, format="png", metadata={"Software": None})


def curves_figure(points: pd.DataFrame, title: str = ""):
    """The matplotlib Figure plot_curves saves: at least _MIN_WIDTH_IN wide, the title wrapped and the legend
    in as many rows as it needs, so one task's plot shows its whole title and legend."""
    import textwrap

    from matplotlib.artist import Artist
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tasks = in_order("task", set(points["task"]))
    dropouts, seeds = in_order("dropout", set(points["dropout"])), in_order("seed", set(points["seed"]))
    width = max(3.0 * len(tasks) + 0.6, _MIN_WIDTH_IN)
    n_entries = 1 + len(set(zip(points["dropout"], points["seed"], strict=True)))  # + the step-0 line
    n_columns = max(1, min(n_entries, int(width // _LEGEND_ENTRY_IN)))
    legend_rows = -(-n_entries // n_columns)
    title_lines = textwrap.wrap(title, width=int(width * 13)) if title else []  # ~13 characters per inch at 9 pt
    legend_in, title_in = 0.35 + 0.2 * legend_rows, 0.18 * len(title_lines)
    height = 3.6 + legend_in + title_in
    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")  # makes room for title and legend
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(tasks), squeeze=False)[0]
    for axis, task in zip(axes, tasks, strict=True):
        panel = points[points["task"] == task]
        axis.axhline(0.0, color="grey", linestyle=":", linewidth=1, label="step 0 (untrained)")
        for (dropout, seed), curve in panel.groupby(["dropout", "seed"], sort=False):
            colour = _COLOURS[dropouts.index(str(dropout)) % len(_COLOURS)]
            style = _STYLES[seeds.index(str(seed)) % len(_STYLES)]
            axis.plot(curve["step"], curve["valid_minus_step0"], color=colour, linestyle=style, marker="o",
                      markersize=2.5, linewidth=1.2, label=f"dropout {dropout}, seed {seed}")
        axis.set_title(task)
        axis.set_xlabel("training step")
        axis.grid(True, alpha=0.3)
    axes[0].set_ylabel(Y_LABEL, fontsize="small")
    handles: dict[str, Artist] = {}
    for axis in axes:  # one legend entry per label over all panels
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    figure.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=n_columns,
                  fontsize="small", frameon=False)
    if title_lines:
        figure.suptitle("\n".join(title_lines), fontsize=9)
    return figure


def write_curves(paths: Sequence[str | Path], out: Path, name: str | None = None, split: str = "test",
                 filters: Sequence[str] = (), strict: bool = False) -> list[Path]:
    """Draw the training curves of the simcse rows in paths: <out>/<name>.csv, .md, .png, .provenance.json.

    Args:
        paths: results files or folders (grids.load_results); each curve is looked up beside its file.
        name: file stem; None gives "curves_<split>".
        split: the split of the rows whose test numbers the table shows; filters, strict: as in write_report.
    Returns:
        the four written paths.
    """
    check_writable_dir(out, "--out")
    frame = resolve_duplicates(apply_filters(load_results(paths), filters), strict)
    rows = select_rows(frame, METRIC, split)
    points = curve_points(rows)
    summary = run_summary(points, rows)
    drawn_runs = {Path(file).stem for file in points["curve_file"]}
    used = rows[rows["method"].isin(["simcse", BEST_VALID_METHOD])
                & as_text(rows["run_dir"]).map(lambda run_dir: Path(run_dir).name in drawn_runs)]
    settings = {"metric": METRIC, "split": split, "scale": 100, "plot": "curves", "filters": list(filters),
                "duplicates": "strict" if strict else "latest created_at",
                "curve_files": sorted(set(points["curve_file"]))}
    provenance = collect_provenance(used, summary.set_index(RUN_KEYS), settings)
    title = f"SimCSE training curves: {points['valid_on'].iloc[0]} Spearman x 100 against step"
    drawn = f"{title}, minus the untrained model on the same sample"
    stem = name or f"curves_{split}"
    written = [out / f"{stem}{suffix}" for suffix in (".csv", ".md", ".png", ".provenance.json")]
    write_frame(points.drop(columns="curve_file"), written[0])
    write_text_atomic(summary_markdown(summary, provenance, title), written[1])
    plot_curves(points, written[2], drawn)
    write_text_atomic(json.dumps(provenance, indent=2, ensure_ascii=False) + "\n", written[3])
    return written
