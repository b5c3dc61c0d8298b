"""Mean and sample standard deviation over seeds of each setting (`stseval report --over-seeds`).

One row per setting (SEED_GROUP), tasks and their plain and pair-weighted averages as columns, values x 100:
the same cells a grid shows, averaged over the seeds they were run with. `write.write_report` writes it as
`<stem>_seeds.csv` and `.md`.

Example:
    >>> summary = seed_summary(resolve_duplicates(load_results(["results/simcse_su"])), "spearman_cosine", "test")
    >>> print(seed_summary_markdown(summary, "spearman_cosine x 100, test split, over seeds"))
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stseval.common.errors import StsevalError
from stseval.options import CHOSEN_SUFFIX
from stseval.report.grids import AVG, WEIGHTED_AVG
from stseval.report.ordering import TASK_ORDER, in_order
from stseval.report.rows import FIT_ON_TRAINING_SENTENCES, as_text, labelled_split, select_rows
from stseval.report.tables import md_escape

SEED_GROUP = ("model", "pooling", "method", "train_on", "dims", "fit_on", "prefix", "dropout", "loss",
              "batch_size", "learning_rate", "epochs")
"""What a seed summary keeps apart; everything else about a cell but the seed must agree for its seeds to be
averaged. train_on counts as its labelled split only ("BQ:train"): a SimCSE row's train_on names each task's
own sentence sample, drawn by the seed."""
CHOSEN_ON_VALID = "chosen on valid"
"""The dims of a `*-chosen` setting in a seed summary: each task and seed chose its own."""


def seed_summary(frame: pd.DataFrame, metric: str, split: str) -> pd.DataFrame:
    """Mean and sample standard deviation over seeds of each cell, x 100: one row per setting, tasks as columns.

    Args:
        frame: resolved long rows (see resolve_duplicates).
        metric, split: the rows to summarise.
    Returns:
        columns SEED_GROUP + ["seeds"] + for each task, then for "avg" and "w-avg", "<name>" (mean),
        "<name> sd", "<name> n"; a setting run with one seed has sd NaN. The averages count only the seeds
        that have every task of the selection (a setting with none has no average columns filled).
    """
    rows = select_rows(frame, metric, split)
    rows = rows[rows["status"].astype(str).isin(["ok", ""])]  # n/a and undefined cells have no value
    if rows.empty:
        raise StsevalError(f"--over-seeds: no {metric} rows on the {split!r} split")
    rows = rows.assign(**{key: as_text(rows[key]) for key in SEED_GROUP}, task=as_text(rows["task"]),
                       seed=as_text(rows["seed"]), value=100 * rows["value"].astype(float))
    # Whitening fitted on a SimCSE run's own sample names that sample per task ("valid+test (10000 of 80000
    # sentences)"); it is one setting across tasks and seeds, so it is summarised as one row.
    train_on = as_text(rows["train_on"])
    rows.loc[(rows["fit_on"] != "") & (rows["fit_on"] == train_on), "fit_on"] = FIT_ON_TRAINING_SENTENCES
    # CoSENT on BQ and on STS-B are two settings (they were told apart only by their epochs)
    rows["train_on"] = labelled_split(train_on)
    # A "*-chosen" row's dims were chosen on valid per task and seed: a result of the setting, not a setting,
    # so they do not split it into one row per chosen value.
    rows.loc[rows["method"].str.endswith(CHOSEN_SUFFIX) & (rows["dims"] != ""), "dims"] = CHOSEN_ON_VALID
    all_tasks = set(rows["task"])
    records = []
    for keys, group in rows.groupby(list(SEED_GROUP), sort=False):
        record = dict(zip(SEED_GROUP, keys, strict=True))
        record["seeds"] = ",".join(sorted(set(group["seed"]), key=lambda seed: (len(seed), seed)))
        for task in in_order("task", set(group["task"])):
            _add_mean_sd(record, task, group.loc[group["task"] == task, "value"].to_numpy())
        plain, weighted = _seed_averages(group, all_tasks)
        if len(plain):
            _add_mean_sd(record, AVG, plain)
            _add_mean_sd(record, WEIGHTED_AVG, weighted)
        records.append(record)
    summary = pd.DataFrame(records)
    varying = [key for key in SEED_GROUP if summary[key].nunique() > 1 or key in ("method",)]
    return summary[[*varying, "seeds", *[c for c in summary.columns if c not in SEED_GROUP and c != "seeds"]]]


def _add_mean_sd(record: dict, column: str, values: np.ndarray) -> None:
    """record[column], [column sd], [column n]: mean, sample sd (NaN for one value) and count of values (n,)."""
    record[column] = round(float(values.mean()), 2)
    record[f"{column} sd"] = round(float(values.std(ddof=1)), 2) if len(values) > 1 else float("nan")
    record[f"{column} n"] = len(values)


def _seed_averages(group: pd.DataFrame, tasks: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per seed that has every one of `tasks`: the plain and the pair-weighted mean over tasks, each (n_seeds,)."""
    plain, weighted = [], []
    for _, seed_rows in group.groupby("seed", sort=True):
        if set(seed_rows["task"]) != tasks or len(seed_rows) != len(tasks):
            continue
        plain.append(seed_rows["value"].mean())
        pairs = seed_rows["n_pairs"].astype(float)
        weighted.append(np.average(seed_rows["value"], weights=pairs) if (pairs > 0).all() else np.nan)
    return np.array(plain), np.array(weighted)


def seed_summary_markdown(summary: pd.DataFrame, title: str) -> str:
    """The summary as a markdown table: "mean ± sd (n)" per task."""
    tasks = [column for column in summary.columns if column in (*TASK_ORDER, AVG, WEIGHTED_AVG)]
    keys = [column for column in summary.columns if column not in tasks and not column.endswith((" sd", " n"))]
    lines = [f"# {title}", "", "| " + " | ".join([*keys, *tasks]) + " |",
             "|" + "---|" * len(keys) + "---:|" * len(tasks)]
    for _, record in summary.iterrows():
        cells = [md_escape(str(record[key])) for key in keys]
        for task in tasks:
            if pd.isna(record[task]):
                cells.append("")
            elif pd.isna(record[f"{task} sd"]):
                cells.append(f"{record[task]:.2f} (1)")
            else:
                cells.append(f"{record[task]:.2f} ± {record[f'{task} sd']:.2f} ({int(record[f'{task} n'])})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + _SEEDS_NOTE


_SEEDS_NOTE = ("\n\nmean ± sample sd over seeds (number of seeds), x 100; `avg` and `w-avg` (weighted by pairs) are "
               "taken over the tasks within each seed that has all of them, then over seeds.\n")
