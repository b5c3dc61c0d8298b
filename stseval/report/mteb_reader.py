"""`report --reference mteb:DIR`: mteb result files (any model's) as published reference rows.

Reads every `*.json` under DIR except model_meta.json that is an mteb TaskResult of a C-MTEB STS task (ATEC,
BQ, LCQMC, PAWSX, STSB), in mteb 2.x's layout `{org__name}/{revision}/[experiments/{name}/]{Task}.json` (also
the results repository's `results/{org__name}/{revision}/{Task}.json`, and `report --format mteb`'s). Each
split's `main_score` (else `cosine_spearman`, else the pre-1.11 `cos_sim.spearman`) of subset "default" is one
row. No mteb import: the files are JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from stseval.common.errors import StsevalError

CMTEB_TASK_NAMES = {"ATEC": "ATEC", "BQ": "BQ", "LCQMC": "LCQMC", "PAWSX": "PAWSX", "STS-B": "STSB"}
"""stseval task -> C-MTEB task name (mteb/tasks/sts/zho/cmtebsts.py)."""
REFERENCE_COLUMNS = ("label", "source", "model", "pooling_code", "pooling", "method", "dims", "task", "split",
                     "spearman_x100", "note")


def mteb_reference_table(folder: Path) -> pd.DataFrame:
    """The C-MTEB STS scores of the mteb result files under `folder`, as a reference table (REFERENCE_COLUMNS)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StsevalError(f"--reference mteb:{folder}: no such folder of mteb result files")
    ours = {mteb_name: task for task, mteb_name in CMTEB_TASK_NAMES.items()}
    rows = []
    for path in sorted(folder.rglob("*.json")):
        if path.name == "model_meta.json":
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise StsevalError(f"{path}: not a readable mteb result file ({err})") from None
        task = ours.get(str(data.get("task_name") or data.get("mteb_dataset_name") or "")) if isinstance(data, dict) \
            else None
        if task is None:
            continue
        model = _model_name(path.relative_to(folder))
        version = data.get("mteb_version") or "not recorded"
        scores = data.get("scores", {k: v for k, v in data.items() if k in ("test", "validation", "dev", "valid")})
        for split, entries in (scores or {}).items():
            for entry in entries if isinstance(entries, list) else [entries]:
                if not isinstance(entry, dict) or entry.get("hf_subset", "default") != "default":
                    continue
                value = entry.get("main_score", entry.get("cosine_spearman",
                                                          (entry.get("cos_sim") or {}).get("spearman")))
                if value is None:
                    continue
                block = entry.get("stseval")
                ours_block: dict = block if isinstance(block, dict) else {}
                prefix = ours_block.get("prefix")
                note = (f"mteb {version}; " + (f"prefix {prefix!r}" if prefix is not None
                                               else "prefix/instruction not recorded in the file") + f"; {path.name}")
                rows.append({"label": "mteb", "source": f"mteb result files in {folder}", "model": model,
                             "pooling_code": "", "pooling": str(ours_block.get("pooling") or "model default"),
                             "method": str(ours_block.get("method") or "raw"),
                             "dims": str(ours_block.get("dims") or "full"), "task": task,
                             "split": "valid" if split in ("validation", "dev") else str(split),
                             "spearman_x100": f"{100 * float(value):.4f}", "note": note, "source_file": str(path)})
    if not rows:
        raise StsevalError(f"--reference mteb:{folder}: no mteb result file of ATEC, BQ, LCQMC, PAWSX or STSB there")
    return pd.DataFrame(rows)


def _model_name(relative: Path) -> str:
    """'org__name/rev/experiments/x/ATEC.json' -> 'org/name@rev/x'; the results repo's leading 'results/' dropped."""
    parts = list(relative.parts[:-1])
    if parts and parts[0] == "results" and len(parts) > 1:
        parts = parts[1:]
    if not parts:
        return "unknown"
    name = parts[0].replace("__", "/")
    revision = f"@{parts[1][:12]}" if len(parts) > 1 else ""
    experiment = f"/{parts[3]}" if len(parts) > 3 and parts[2] == "experiments" else ""
    return name + revision + experiment
