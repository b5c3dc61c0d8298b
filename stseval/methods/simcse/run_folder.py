"""A training run's folder on disk: the files it holds, whether it finished, and what `--keep` leaves of it.

    run_dir/
      model.safetensors, config.json, ...   the final model, a sentence-transformers folder
      best-valid/                           the best-on-valid model (with validation pairs), with best_valid.json
      checkpoints/                          step-N/ resume points while training (stseval.methods.simcse.checkpoints)
      curve.csv                             step, mean training loss, validation Spearman
      README.md                             the model card
      stseval_training.json                 identity (settings, data) and result; written last
                                            (stseval_simcse.json in folders trained before CoSENT shared the loop)

A folder holding another identity is refused (`check_same_run`), one holding this finished identity is
reused without training (`stseval.methods.simcse.loop.train_model`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from stseval.common.errors import StsevalError
from stseval.common.fileio import check_writable_dir, write_text_atomic

SETTINGS_FILE = "stseval_training.json"
"""Written last into a run folder: its presence means the trained model there is complete."""

LEGACY_SETTINGS_FILE = "stseval_simcse.json"
"""SETTINGS_FILE's name before CoSENT runs shared the loop; still read, so those finished folders are reused."""

CURVE_FILE = "curve.csv"
"""Training curve written into a run folder: step, mean training loss since the last point, valid Spearman."""

BEST_VALID_DIR = "best-valid"
"""Sub-folder of a run folder holding the checkpoint that scored best on the validation pairs."""

KEPT_FILES = frozenset({"README.md", SETTINGS_FILE, LEGACY_SETTINGS_FILE, CURVE_FILE})
"""What a run folder keeps whatever `--keep` says: the model card, the settings and result, the curve."""


def settings_path(run_dir: Path) -> Path:
    """The settings file of a run folder: SETTINGS_FILE, or LEGACY_SETTINGS_FILE where only that one exists."""
    legacy = Path(run_dir) / LEGACY_SETTINGS_FILE
    current = Path(run_dir) / SETTINGS_FILE
    return legacy if legacy.is_file() and not current.is_file() else current


def finished_run(run_dir: Path) -> dict | None:
    """The identity recorded in a finished run folder, or None if training there never finished."""
    path = settings_path(run_dir)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def prune_run(run_dir: Path, keep: str) -> list[str]:
    """Delete the trained models of a scored run folder that `keep` does not ask for; returns what is kept.

    keep: "both", "final" (the folder's own model), "best" (run_dir/best-valid/; the final model when the run
    has no best-valid folder) or "none". The settings file records what is left, so a later run that needs a
    deleted model trains again instead of reusing the folder (`stseval.methods.simcse.loop.train_model`).
    """
    run_dir = Path(run_dir)
    has_best = (run_dir / BEST_VALID_DIR).is_dir()
    wanted = {"both": {"final", "best"}, "final": {"final"}, "best": {"best"} if has_best else {"final"},
              "none": set()}[keep]
    if "best" not in wanted and has_best:
        shutil.rmtree(run_dir / BEST_VALID_DIR)
    if "final" not in wanted:
        for path in run_dir.iterdir():
            if path.name not in KEPT_FILES and path.name != BEST_VALID_DIR:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    kept = sorted(name for name in wanted if name == "final" or has_best)
    done = finished_run(run_dir)
    if done is not None:
        write_json_atomic(settings_path(run_dir), {**done, "kept": kept})
    return kept


def write_curve(path: Path, curve: list[dict], label: str) -> None:
    """CURVE_FILE: one line per {"step", "loss", "valid_spearman"} point; the last column is named after `label`."""
    lines = [f"step,train_loss,{label}_spearman"]
    lines += [f"{point['step']},{point['loss']:.6f},{point['valid_spearman']:.6f}" for point in curve]
    write_text_atomic("\n".join(lines) + "\n", path)


def check_same_run(recorded: dict, identity: dict, run_dir: Path) -> None:
    """Raise StsevalError naming the first setting in which a run folder differs from this run."""
    for key, value in identity.items():
        if recorded.get(key) != value:
            raise StsevalError(f"--runs-dir: {run_dir} holds a run with {key}={recorded.get(key)!r}, not {value!r}; "
                               "delete that folder or choose another --runs-dir")


def ensure_writable(folder: Path, option: str) -> None:
    """Check `folder` can be written (one line naming `option` if not), then create it."""
    check_writable_dir(folder, option)
    folder.mkdir(parents=True, exist_ok=True)


def write_json_atomic(path: Path, value: dict) -> None:
    """`value` as sorted, indented UTF-8 JSON, replacing `path` atomically."""
    write_text_atomic(json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n", path)
