"""Published reference numbers beside our rows: Su's 2021/2022 tables, mteb and C-MTEB scores, mteb folders.

The tables ship in the wheel under stseval/data/reference/ (`REFERENCE_DIR`); `--reference su2021:BERT`
picks one table's rows, and `reference_rows` turns them into long-format rows with the model labelled
"<table label>:<model>", so `grids.build_grid` places them like ours.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from stseval.common.errors import StsevalError
from stseval.common.lists import comma_parts
from stseval.report.rows import as_text

REFERENCE_DIR = Path(str(importlib.resources.files("stseval.data") / "reference"))  # shipped in the wheel
REFERENCES = {"su2021": ("su2021.csv", "Su2021"), "su2022": ("su2021.csv", "Su2022"), "mteb": ("mteb_e5.csv", "mteb"),
              "cmteb": ("cmteb.csv", "C-MTEB"), "su2022-cosent": ("su2022_cosent.csv", "Su2022-CoSENT")}
# ^ --reference name -> (file, the `label` of its rows): a name selects only its own rows (Su's 2022 rows share
#   su2021.csv with his 2021 rows)
MAP_REFERENCES = frozenset({"cmteb", "su2022-cosent"})
"""Tables of other models or trained settings: placed in a grid whatever their pooling, method and dims (so are
`mteb:DIR` folders); the others only beside ours of the same pooling, method and dims."""
REFERENCE_METRIC = "spearman_cosine"  # the only metric the published tables report


def reference_rows(reference: Sequence[str], ours: pd.DataFrame, split: str | None = "test") -> pd.DataFrame:
    """Published rows, as long-format results rows, that compare with ours.

    Args:
        reference: names from REFERENCES, optionally with models: "su2021", "su2021:BERT,SimBERT", "su2022",
            "mteb", "cmteb", "su2022-cosent"; or "mteb:DIR", a folder of mteb result files (`mteb_reader`). Each
            name gives only the rows of its own label (su2021 never adds Su's 2022 rows).
        ours: our rows; only published rows with the pooling, method and dims of one of ours, and the
            tasks ours cover, are kept.
        split: our split; a published "test (assumed)" counts as test.
    Returns:
        rows with model "<label>:<model>" (e.g. "Su2021:BERT"), value = published Spearman / 100, and
        `reference_source`, `reference_note`, `source_file` columns for provenance.
    Raises:
        StsevalError for an unknown table or model, or when no published row compares with ours.
    """
    tables = []
    for spec in reference:
        name, _, models = spec.partition(":")
        if name.strip().lower() == "mteb" and models and Path(models).expanduser().is_dir():
            from stseval.report.mteb_reader import mteb_reference_table

            tables.append(mteb_reference_table(Path(models).expanduser()).assign(any_setting=True))
            continue
        table = _reference_table(name.strip().lower()).assign(any_setting=name.strip().lower() in MAP_REFERENCES)
        if models:
            wanted = comma_parts(models)
            unknown = [m for m in wanted if m not in set(table["model"])]
            if unknown:
                raise StsevalError(f"--reference {spec}: no model {', '.join(unknown)} in {name}; "
                                   f"it has {', '.join(dict.fromkeys(table['model']))}")
            table = table[table["model"].isin(wanted)]
        tables.append(table)
    published = pd.concat(tables, ignore_index=True).drop_duplicates()
    published_split = published["split"].str.split().str[0]  # "test (assumed)" -> "test"
    if split not in (None, "all"):
        published = published[published_split == split]
        published_split = published_split[published.index]
    comparable = set(zip(as_text(ours["pooling"]), as_text(ours["method"]), as_text(ours["dims"]), strict=True))
    matches = [(p, m, d) in comparable
               for p, m, d in zip(published["pooling"], published["method"], published["dims"], strict=True)]
    matches = [match or bool(any_setting) for match, any_setting in zip(matches, published["any_setting"], strict=True)]
    keep = np.array(matches, dtype=bool) & published["task"].isin(set(as_text(ours["task"]))).to_numpy()
    if not keep.any():
        offered = sorted(set(zip(published["pooling"], published["method"], published["dims"], strict=True)))
        raise StsevalError(
            f"--reference {' '.join(reference)}: no published row has the pooling/method/dims of ours "
            f"(published: {', '.join('/'.join(t) for t in offered[:8])}{', ...' if len(offered) > 8 else ''})")
    published, published_split = published[keep], published_split[keep]
    return pd.DataFrame({
        "model": published["label"] + ":" + published["model"],
        "pooling": published["pooling"], "method": published["method"], "dims": published["dims"],
        "task": published["task"], "split": published_split, "metric": REFERENCE_METRIC,
        "value": published["spearman_x100"].astype(float) / 100.0, "status": "ok",
        "reference_source": published["source"], "reference_note": published["note"],
        "source_file": published["source_file"],
    }).reset_index(drop=True)


@functools.cache
def _reference_table_cached(name: str) -> pd.DataFrame:
    file_name, label = REFERENCES[name]
    path = REFERENCE_DIR / file_name
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table = table[table["label"] == label].reset_index(drop=True)
    table["source_file"] = f"stseval/data/reference/{path.name}"
    return table


def _reference_table(name: str) -> pd.DataFrame:
    """One published table from stseval/data/reference/ (cached; a copy, so callers may change it)."""
    if name not in REFERENCES:
        raise StsevalError(f"--reference {name!r}: unknown table; known: {', '.join(REFERENCES)}")
    return _reference_table_cached(name).copy()
