"""SimCSE or CoSENT training curves side by side (`stseval report --plot curves`), found through the rows.

Each `simcse` / `cosent` row records its run folder (`run_dir`), and simcse-train / cosent-train copy that
run's curve to `<results folder>/curves/<run folder name>.csv`. This plot finds every row's curve there and
draws valid Spearman against training step, as the change from the untrained model (step 0) on the same valid
sample (each seed draws its own), one line style per seed. SimCSE: one panel per task, one colour per dropout.
CoSENT (one run is scored on every task; its curve is on the train task's valid split): one panel per train
task, one colour per pooling. Written as `<name>.csv` (every curve point, long format), `.md` (per run: valid
Spearman at step 0, at its best step and at the end; test Spearman of the end-of-training model and of the
best-on-valid checkpoint, on the run's own task), `.png` and `.provenance.json`.

Example:
    >>> write_curves(["results/simcse_su"], Path("runs/report"), name="simcse_curves")
    >>> write_curves(["results/cosent"], Path("runs/report"), name="cosent_curves")
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stseval.common.errors import StsevalError
from stseval.common.fileio import atomic_path, check_writable_dir, write_text_atomic
from stseval.options import BEST_VALID_METHOD, COSENT_BEST_VALID_METHOD, COSENT_METHOD
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
from stseval.report.rows import labelled_split
from stseval.report.tables import md_escape
from stseval.runs.results import write_frame

METRIC = "spearman_cosine"


@dataclass(frozen=True)
class Objective:
    """How the runs of one training objective are told apart, checked and drawn."""

    name: str
    method: str  # rows of the end-of-training model
    best_method: str  # rows of the checkpoint chosen on valid
    run_keys: tuple[str, ...]  # what tells the curves apart; `task` or `train_task` names the run's own task
    shared_keys: tuple[str, ...]  # settings every drawn run must agree on (checked)
    panel: str  # one panel per value of this run key
    colour: str  # one colour per value of this run key
    panel_title: str  # format of a panel's title, from its panel value
    line_label: str  # format of a line's legend entry, from its colour value and seed
    end_label: str  # the table's column of the end-of-training model
    hidden: tuple[str, ...]  # run keys the table leaves to its footer

    @property
    def own_task(self) -> str:
        """The run key naming the task whose test rows the table shows (SimCSE trains and scores one task)."""
        return "task" if "task" in self.run_keys else "train_task"


SIMCSE = Objective("SimCSE", "simcse", BEST_VALID_METHOD, ("model", "pooling", "task", "dropout", "seed"),
                   ("prefix", "loss", "batch_size", "learning_rate", "epochs"), panel="task", colour="dropout",
                   panel_title="{}", line_label="dropout {}, seed {}", end_label="test, end of epoch",
                   hidden=("model", "pooling"))
COSENT = Objective("CoSENT", COSENT_METHOD, COSENT_BEST_VALID_METHOD, ("model", "train_task", "pooling", "seed"),
                   ("prefix", "loss", "batch_size", "learning_rate", "dropout"), panel="train_task",
                   colour="pooling", panel_title="trained on {}", line_label="{}, seed {}",
                   end_label="test, end of training", hidden=("model",))
"""CoSENT's epochs follow the train task (5 on STS-B, 1 on BQ), so they may differ between runs."""
_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")
_STYLES = ("-", "--", "-.", ":")


def curve_file(row: pd.Series) -> Path:
    """Where simcse-train put the curve of a row's run: <folder of its results file>/curves/<run folder>.csv."""
    return Path(str(row["source_file"])).parent / "curves" / f"{Path(str(row['run_dir'])).name}.csv"


def objective_of(rows: pd.DataFrame) -> Objective:
    """SIMCSE or COSENT, from the methods of the rows that record a run folder.

    Raises:
        StsevalError naming --filter when rows hold runs of both.
    """
    with_run = set(rows.loc[as_text(rows["run_dir"]) != "", "method"])
    if SIMCSE.method in with_run and COSENT.method in with_run:
        raise StsevalError("--plot curves: the rows hold simcse and cosent runs; pick one with "
                           "--filter 'method=simcse*' or --filter 'method=cosent*'")
    return COSENT if COSENT.method in with_run else SIMCSE


def with_train_task(rows: pd.DataFrame) -> pd.DataFrame:
    """rows plus `train_task`: the task part of train_on ("STS-B" of "STS-B:train (5231 pairs, ...)");
    "" for runs not trained on a labelled split (SimCSE)."""
    return rows.assign(train_task=labelled_split(rows["train_on"]).str.split(":", n=1).str[0])


def curve_points(rows: pd.DataFrame, objective: Objective | None = None) -> pd.DataFrame:
    """Every point of the training curves of the objective's runs among rows (one split, spearman_cosine).

    Args:
        objective: SIMCSE or COSENT; None: objective_of(rows).
    Returns:
        columns objective.run_keys + step, valid_on (the curve's split label), valid_spearman and
        valid_minus_step0 (the change from the run's first point, both x 100), train_loss, curve_file;
        runs whose curve file is missing are left out.
    Raises:
        StsevalError naming --plot when no run has a curve, or when the runs differ in a setting besides
        the run keys (pick one with --filter).
    """
    objective = objective or objective_of(rows)
    runs = with_train_task(rows)
    runs = runs[(runs["method"] == objective.method) & (as_text(runs["run_dir"]) != "")]
    runs = runs.drop_duplicates("run_dir")  # a CoSENT run has a row per scored task, all with one curve
    for key in objective.shared_keys:
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
            **{key: str(run[key]) for key in objective.run_keys}, "step": curve["step"].astype(int),
            "valid_on": score.removesuffix("_spearman"), "valid_spearman": (100 * curve[score]).round(4),
            "valid_minus_step0": (100 * (curve[score] - start)).round(4),
            "train_loss": curve["train_loss"] if "train_loss" in curve.columns else np.nan,
            "curve_file": path.as_posix()}))
    if not frames:
        raise StsevalError(f"--plot curves: none of the selected {objective.method} rows has a curve at <results "
                           f"folder>/curves/<run folder>.csv ({objective.method}-train writes one when the task has "
                           "a valid split)")
    return pd.concat(frames, ignore_index=True)


def run_summary(points: pd.DataFrame, rows: pd.DataFrame, objective: Objective = SIMCSE) -> pd.DataFrame:
    """One row per run (objective.run_keys): valid at step 0 (the untrained model), the best step among the
    trained checkpoints (the one its best-valid row chose, when there is one) and its value, the last step and
    its value, and the test Spearman (x 100) on the run's own task of the end-of-training model and of the
    best-on-valid checkpoint."""
    run_keys = list(objective.run_keys)
    rows = with_train_task(rows)
    test = rows.assign(**{key: as_text(rows[key]) for key in [*run_keys, "task"]})
    records = []
    for keys, curve in points.groupby(run_keys, sort=False):
        record = dict(zip(run_keys, keys, strict=True))
        same = np.logical_and.reduce([test[key] == value for key, value in zip(run_keys, keys, strict=True)]
                                     + [test["task"] == record[objective.own_task]])
        chosen = test[same & (test["method"] == objective.best_method)]
        trained = curve[curve["step"] > 0]  # the checkpoints a best-on-valid row chooses from
        recorded = str(chosen["best_step"].iloc[0]) if len(chosen) else ""
        at_recorded = trained[trained["step"] == int(float(recorded))] if recorded else trained.iloc[:0]
        if recorded and at_recorded.empty:
            raise StsevalError(f"{curve['curve_file'].iloc[0]}: no point at step {recorded}, the best step its "
                               f"{objective.best_method} row records")
        best = at_recorded.iloc[0] if recorded else trained.iloc[int(np.argmax(trained["valid_spearman"].to_numpy()))]
        start, end = curve.iloc[0], curve.iloc[-1]  # curve_points sorted each run by step
        record.update({"valid at step 0": start["valid_spearman"], "best step": int(best["step"]),
                       "best valid": best["valid_spearman"], "last step": int(end["step"]),
                       "last valid": end["valid_spearman"]})
        for method, column in ((objective.method, objective.end_label), (objective.best_method, "test, best on valid")):
            found = test[same & (test["method"] == method)]
            record[column] = round(100 * float(found["value"].iloc[0]), 2) if len(found) else np.nan
        records.append(record)
    summary = pd.DataFrame(records)
    order = sorted(range(len(summary)), key=lambda i: tuple(
        order_key(_order_column(key), summary[key].iloc[i]) for key in _sort_keys(objective)))
    return summary.iloc[order].reset_index(drop=True)


def _sort_keys(objective: Objective) -> list[str]:
    """model and pooling first (as SimCSE tables always were), then the other run keys in their order."""
    return ["model", "pooling", *(key for key in objective.run_keys if key not in ("model", "pooling"))]


def _order_column(key: str) -> str:
    return "task" if key == "train_task" else key  # train tasks in the project's task order


def summary_markdown(summary: pd.DataFrame, provenance: dict, title: str, objective: Objective = SIMCSE) -> str:
    """The per-run table with the provenance footer."""
    columns = [column for column in summary.columns if column not in objective.hidden]
    lines = [f"# {title}", "", "| " + " | ".join(columns) + " |",
             "|" + "".join("---|" if column in objective.run_keys else "---:|" for column in columns)]
    for _, record in summary.iterrows():
        cells = [md_escape(str(record[c])) if c in objective.run_keys or c.endswith("step") else
                 ("" if pd.isna(record[c]) else f"{record[c]:.2f}") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    named = ["model", "pooling"] if "pooling" in objective.hidden else ["model"]  # the ones the table leaves out
    models = ", ".join(" ".join(keys) for keys in dict.fromkeys(zip(*(summary[key] for key in named), strict=True)))
    lines += ["", f"Spearman x 100 of {models}. Valid: the training curve's sample of the valid split (it may "
              "choose the checkpoint); test: never used to choose.", "", *provenance_lines(provenance)]
    return "\n".join(lines) + "\n"


Y_LABEL = "change in valid Spearman x 100 since step 0"
_MIN_WIDTH_IN = 7.2  # one task's panel alone is 3.6 in: too narrow for the title and legend
_LEGEND_ENTRY_IN = 1.9  # a legend entry ("dropout 0.1, seed 2" and its line) at fontsize small
_DPI = 110


def plot_curves(points: pd.DataFrame, path: Path, title: str = "", objective: Objective = SIMCSE) -> None:
    """Valid Spearman x 100 minus the run's step 0 against step, a panel per objective.panel (task), colour =
    objective.colour (dropout), style = seed; writes path. Each seed draws its own valid sample, so runs are
    compared by their change."""
    figure = curves_figure(points, title, objective)
    with atomic_path(Path(path)) as tmp:
        figure.savefig(tmp, format="png", metadata={"Software": None})


def curves_figure(points: pd.DataFrame, title: str = "", objective: Objective = SIMCSE):
    """The matplotlib Figure plot_curves saves: at least _MIN_WIDTH_IN wide, the title wrapped and the legend
    in as many rows as it needs, so one task's plot shows its whole title and legend."""
    import textwrap

    from matplotlib.artist import Artist
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panel_key, colour_key = objective.panel, objective.colour
    tasks = in_order(_order_column(panel_key), set(points[panel_key]))
    colours, seeds = in_order(colour_key, set(points[colour_key])), in_order("seed", set(points["seed"]))
    width = max(3.0 * len(tasks) + 0.6, _MIN_WIDTH_IN)
    n_entries = 1 + len(set(zip(points[colour_key], points["seed"], strict=True)))  # + the step-0 line
    n_columns = max(1, min(n_entries, int(width // _LEGEND_ENTRY_IN)))
    legend_rows = -(-n_entries // n_columns)
    title_lines = textwrap.wrap(title, width=int(width * 13)) if title else []  # ~13 characters per inch at 9 pt
    legend_in, title_in = 0.35 + 0.2 * legend_rows, 0.18 * len(title_lines)
    height = 3.6 + legend_in + title_in
    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")  # makes room for title and legend
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(tasks), squeeze=False)[0]
    for axis, task in zip(axes, tasks, strict=True):
        panel = points[points[panel_key] == task]
        axis.axhline(0.0, color="grey", linestyle=":", linewidth=1, label="step 0 (untrained)")
        for (value, seed), curve in panel.groupby([colour_key, "seed"], sort=False):
            colour = _COLOURS[colours.index(str(value)) % len(_COLOURS)]
            style = _STYLES[seeds.index(str(seed)) % len(_STYLES)]
            axis.plot(curve["step"], curve["valid_minus_step0"], color=colour, linestyle=style, marker="o",
                      markersize=2.5, linewidth=1.2, label=objective.line_label.format(value, seed))
        axis.set_title(objective.panel_title.format(task))
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
    """Draw the training curves of the simcse or cosent rows in paths: <out>/<name>.csv, .md, .png,
    .provenance.json.

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
    objective = objective_of(rows)
    points = curve_points(rows, objective)
    summary = run_summary(points, rows, objective)
    drawn_runs = {Path(file).stem for file in points["curve_file"]}
    used = rows[rows["method"].isin([objective.method, objective.best_method])
                & as_text(rows["run_dir"]).map(lambda run_dir: Path(run_dir).name in drawn_runs)]
    settings = {"metric": METRIC, "split": split, "scale": 100, "plot": "curves", "filters": list(filters),
                "duplicates": "strict" if strict else "latest created_at",
                "curve_files": sorted(set(points["curve_file"]))}
    provenance = collect_provenance(used, summary.set_index(list(objective.run_keys)), settings)
    valid_on = sorted(set(points["valid_on"]))
    sample = valid_on[0] if len(valid_on) == 1 else "each train task's valid sample"
    title = f"{objective.name} training curves: {sample} Spearman x 100 against step"
    drawn = f"{title}, minus the untrained model on the same sample"
    stem = name or f"curves_{split}"
    written = [out / f"{stem}{suffix}" for suffix in (".csv", ".md", ".png", ".provenance.json")]
    write_frame(points.drop(columns="curve_file"), written[0])
    write_text_atomic(summary_markdown(summary, provenance, title, objective), written[1])
    plot_curves(points, written[2], drawn, objective)
    write_text_atomic(json.dumps(provenance, indent=2, ensure_ascii=False) + "\n", written[3])
    return written
