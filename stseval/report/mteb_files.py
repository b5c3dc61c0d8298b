"""`stseval report --format mteb`: results rows as mteb 2.x TaskResult files, one per model, setting and task.

Layout, as mteb's ResultCache keeps results (mteb/cache.py):

    DIR/{org__name}/{revision}/model_meta.json
    DIR/{org__name}/{revision}/{Task}.json                           the raw rows (method raw)
    DIR/{org__name}/{revision}/experiments/{setting}/{Task}.json      every other setting of the same model
                                                                      (whitening-k, beta/gamma, pca, SimCSE, ...)

{org__name} is the model name with "/" as "__"; {revision} the first 12 hex characters of stseval's model
fingerprint (the weights and tokenizer scored). A task file:

    {"dataset_revision": "stseval-data:<data_sha256>", "task_name": "ATEC", "mteb_version": "<installed or none>",
     "evaluation_time": <seconds>, "kg_co2_emissions": null,
     "scores": {"test": [{"cosine_spearman": 0.3514, "main_score": 0.3514, "hf_subset": "default",
                          "languages": ["cmn-Hans"], "stseval": {pooling, method, prefix, ...}}]}}

Scores are on mteb's 0-1 scale. The C-MTEB task names are ATEC, BQ, LCQMC, PAWSX and STSB (ours: STS-B).
dataset_revision names OUR data files' checksum, not C-MTEB's hub revision: the test files have C-MTEB's row
counts, but they are not the hub datasets mteb downloads.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from stseval.common.errors import StsevalError
from stseval.common.fileio import write_text_atomic
from stseval.report.mteb_reader import CMTEB_TASK_NAMES

LANGUAGES = ["cmn-Hans"]
SETTING_KEYS = ("pooling", "method", "dims", "fit_on", "train_on", "prefix", "beta", "gamma", "dropout", "loss",
                "batch_size", "learning_rate", "epochs", "seed")
"""Columns that make a setting: one mteb result folder per distinct value of these (with model and fingerprint)."""


def write_mteb(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Write mteb TaskResult files for the spearman_cosine rows of `frame` (resolved results rows) under `out`.

    Per model, the raw rows of its most frequent pooling and prefix are the model's own files; every other
    setting goes under experiments/. Returns the files written. Raises StsevalError when no row fits.
    """
    rows = frame[(frame["metric"] == "spearman_cosine") & (frame["status"] == "ok")
                 & frame["task"].isin(list(CMTEB_TASK_NAMES))]
    if rows.empty:
        raise StsevalError("--format mteb: no spearman_cosine rows of ATEC, BQ, LCQMC, PAWSX or STS-B to write")
    mteb_version = _installed_mteb()
    written: list[Path] = []
    for (model, fingerprint), model_rows in rows.groupby(["model", "model_fingerprint"], sort=True):
        folder = Path(out) / _model_folder(str(model)) / (str(fingerprint)[:12] or "no_revision_available")
        settings = model_rows.groupby([model_rows[key].astype(str) for key in SETTING_KEYS], sort=True)
        main = _main_setting(model_rows)
        for setting, setting_rows in settings:
            values = dict(zip(SETTING_KEYS, setting, strict=True))
            target = folder if setting == main else folder / "experiments" / setting_name(values)
            for task, task_rows in setting_rows.groupby("task", sort=True):
                path = target / f"{CMTEB_TASK_NAMES[str(task)]}.json"
                result = task_result([row for _, row in task_rows.iterrows()], values, mteb_version)
                write_text_atomic(json.dumps(result, indent=2) + "\n", path)
                written.append(path)
        meta = {"name": str(model), "revision": folder.name, "framework": ["stseval"],
                "languages": LANGUAGES, "stseval_model_fingerprint": str(fingerprint),
                "loader": "stseval", "similarity_fn_name": "cosine"}
        write_text_atomic(json.dumps(meta, indent=2) + "\n", folder / "model_meta.json")
        written.append(folder / "model_meta.json")
    return written


def task_result(rows: list[pd.Series], setting: dict, mteb_version: str | None) -> dict:
    """The rows of one task and setting (one per split) as an mteb TaskResult dict."""
    scores = {}
    for row in rows:
        value = float(row["value"])
        scores[str(row["split"])] = [{
            "cosine_spearman": value, "main_score": value, "hf_subset": "default", "languages": LANGUAGES,
            "stseval": {**setting, "n_pairs": int(row["n_pairs"] or 0), "ci_low": _float(row.get("ci_low")),
                        "ci_high": _float(row.get("ci_high")), "stseval_version": str(row.get("stseval_version", "")),
                        "created_at": str(row.get("created_at", ""))}}]
    seconds = [_float(row.get("seconds")) for row in rows]
    data = sorted({str(row.get("data_sha256", "") or "unknown") for row in rows})
    return {"dataset_revision": "stseval-data:" + "+".join(data), "task_name": CMTEB_TASK_NAMES[str(rows[0]["task"])],
            "mteb_version": mteb_version, "scores": scores,
            "evaluation_time": sum(second or 0.0 for second in seconds), "kg_co2_emissions": None}


def setting_name(values: dict) -> str:
    """A folder name for one setting: 'last-avg_whitening_k256_fit-test_b0.5_g1_prefix-query', file-name safe."""
    parts = [values["pooling"], values["method"]]
    if values["dims"] not in ("", "full"):
        parts.append(f"k{values['dims']}")
    for key, short in (("fit_on", "fit"), ("train_on", "train"), ("beta", "b"), ("gamma", "g"),
                       ("dropout", "dropout"), ("loss", "loss"), ("learning_rate", "lr"), ("seed", "seed")):
        if values.get(key) not in ("", None) and not (key == "seed" and values[key] == "0"):
            parts.append(f"{short}-{values[key]}" if short in ("fit", "train", "loss") else f"{short}{values[key]}")
    if values.get("prefix"):
        parts.append(f"prefix-{values['prefix']}")
    return re.sub(r"[^0-9A-Za-z._+-]+", "-", "_".join(parts)).strip("-")


def _main_setting(rows: pd.DataFrame) -> tuple[str, ...] | None:
    """The raw setting of the model's most frequent (pooling, prefix): the files an mteb user compares first."""
    raw = rows[rows["method"] == "raw"]
    if raw.empty:
        return None
    counts = raw.groupby([raw[key].astype(str) for key in SETTING_KEYS], sort=True).size()
    first: tuple = counts.idxmax()  # type: ignore[assignment]  # a tuple: one value per SETTING_KEYS column
    return tuple(str(value) for value in first)


def _model_folder(model: str) -> str:
    """mteb's folder name for a model: 'intfloat/multilingual-e5-small' -> 'intfloat__multilingual-e5-small'."""
    return re.sub(r"[^0-9A-Za-z._+-]+", "-", model.strip("/").replace("/", "__")) or "model"


def _installed_mteb() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mteb")
    except PackageNotFoundError:
        return None


def _float(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number


def write_report_mteb(paths, out: Path, filters=(), strict: bool = False) -> list[Path]:
    """`report --format mteb`: load, filter and resolve the rows of `paths` as `report` does, then `write_mteb`."""
    from stseval.report.rows import apply_filters, load_results, resolve_duplicates

    frame = resolve_duplicates(apply_filters(load_results(paths), filters), strict=strict)
    return write_mteb(frame, out)
