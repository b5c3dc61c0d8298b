"""Rewrite a results file the way stseval wrote it before the descriptive columns: one `extra` column."""

from pathlib import Path

import pandas as pd

from stseval.runs.results import COLUMNS

# (column, key in extra), in the order the old runs wrote them
LEGACY_KEYS = [("fit_splits", "fit_splits"), ("run_dir", "run_dir"), ("max_length", "max_length"),
               ("trained_fingerprint", "trained_fingerprint"), ("train_steps", "steps"),
               ("final_loss", "final_loss"), ("sentences_per_s", "sentences_per_s"), ("n_fit", "n_fit_vectors"),
               ("chosen_on", "chosen_on"), ("best_step", "best_step"), ("best_valid_spearman", "best_valid_spearman"),
               ("index", "index"), ("search_params", "search_params"), ("top_k", "top_k"), ("n_corpus", "n_corpus"),
               ("n_dims", "n_dims"), ("threads", "threads"), ("positive_min_score", "positive_min_score")]
OLD_COLUMNS = [c for c in COLUMNS if c not in {column for column, _ in LEGACY_KEYS} | {"beta", "gamma", "note"}]


WHITEN_KEYS = ("fit_splits", "n_fit_vectors")  # what whiten wrote into extra
SIMCSE_KEYS = ("run_dir", "max_length", "trained_fingerprint", "steps", "final_loss", "sentences_per_s",
               "n_fit_vectors", "chosen_on", "best_step", "best_valid_spearman")


def write_legacy(path: Path, keys: tuple[str, ...]) -> pd.DataFrame:
    """Turn a current results file into the legacy format in place, with the `keys` the old run wrote in
    extra; returns the frame as it was before, the columns that old run did not record blanked."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    kept = [(column, key) for column, key in LEGACY_KEYS if key in keys]
    for column, key in LEGACY_KEYS:
        if key not in keys and column != "n_fit":
            frame[column] = ""
    extras = []
    for _, row in frame.iterrows():
        if row["status"] == "n/a":
            extras.append(row["note"])
            continue
        whitened = "whitening" in row["method"]
        extras.append(";".join(f"{key}={row[column]}" for column, key in kept
                               if row[column] not in ("", "0") and (column != "n_fit" or whitened)))
    not_available = frame["status"] == "n/a"  # an n/a row's extra held its reason alone
    frame.loc[not_available, [column for column, _ in kept if column != "n_fit"]] = ""
    legacy = frame[OLD_COLUMNS].assign(n_fit=frame["n_fit"].where(~frame["method"].str.startswith("simcse"), "0"),
                                       extra=extras)
    legacy.to_csv(path, index=False)
    return frame
