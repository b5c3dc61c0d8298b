"""Resume points and the best-on-valid checkpoint of a training run, under run_dir/checkpoints/.

    checkpoints/
      identity.json      the settings and data these checkpoints belong to (checked before resuming)
      step-N/            weights.safetensors, trainer.pt (optimizer, RNG, step, losses), state.json
                         (curve, best, seconds), `complete` written last; the newest two are kept
      best/              weights.safetensors of the best validation score so far

Every `checkpoint_steps` steps the loop saves a step-N folder; a re-run resumes from the newest one
that loads, so an interrupted run ends with the same weights as an uninterrupted one. When training
ends, the best weights become the sentence-transformers folder run_dir/best-valid/ and the whole
checkpoints folder is deleted (stseval.methods.simcse.loop).
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from stseval.common.fileio import atomic_path
from stseval.methods.row_adam import RowAdam
from stseval.methods.simcse.run_folder import BEST_VALID_DIR, write_json_atomic

CHECKPOINT_DIR = "checkpoints"
"""Sub-folder of a run folder holding the training checkpoints (step-N/) until training ends."""


@dataclass
class TrainingState:
    """What a checkpoint must restore besides weights and optimizer: position, losses, curve, best."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    curve: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=dict)  # {"step": N, "valid_spearman": x} of the best checkpoint so far
    seconds: float = 0.0  # training wall time of the steps before this session (a resumed run counts them too)


def save_checkpoint(checkpoint_dir: Path, model, optimizer: RowAdam, state: TrainingState, keep: int = 2) -> None:
    """step-N/ with weights (safetensors), optimizer + RNG + state (tensors and numbers only); `complete` last."""
    from safetensors.torch import save_model

    final = checkpoint_dir / f"step-{state.step}"
    staging = checkpoint_dir / f".step-{state.step}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_model(model, str(staging / "weights.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                "step": state.step, "losses": torch.tensor(state.losses, dtype=torch.float64)},
               staging / "trainer.pt")
    progress = {"curve": state.curve, "best": state.best, "seconds": state.seconds}
    (staging / "state.json").write_text(json.dumps(progress), encoding="utf-8")
    (staging / "complete").write_text("", encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    for old in complete_checkpoints(checkpoint_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def complete_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Complete step-N folders, oldest first."""
    found = [path for path in checkpoint_dir.glob("step-*")
             if path.name[5:].isdigit() and (path / "complete").is_file()]
    return sorted(found, key=lambda path: int(path.name[5:]))


def load_newest_checkpoint(checkpoint_dir: Path, model, optimizer: RowAdam, state: TrainingState) -> int | None:
    """Restore the newest checkpoint that loads; returns its step, or None to start fresh.

    A checkpoint that fails to load (a truncated file) is skipped with one line on stderr naming it,
    and the next older one is tried.
    """
    from safetensors.torch import load_model

    for folder in reversed(complete_checkpoints(checkpoint_dir)):
        try:
            saved = torch.load(folder / "trainer.pt", weights_only=True)
            extra = json.loads((folder / "state.json").read_text(encoding="utf-8"))
            load_model(model, str(folder / "weights.safetensors"))
            optimizer.load_state_dict(saved["optimizer"])
        except Exception as err:  # noqa: BLE001 - any unreadable checkpoint is skipped, never trusted
            print(f"stseval: checkpoint {folder} does not load ({type(err).__name__}: {err}); "
                  "trying an older one (delete that folder to silence this)", file=sys.stderr)
            continue
        torch.set_rng_state(saved["torch_rng"])
        state.step = int(saved["step"])
        state.losses = [float(value) for value in saved["losses"].tolist()]
        state.curve, state.best = extra["curve"], extra["best"]
        state.seconds = float(extra.get("seconds", 0.0))
        return state.step
    return None


def record_score(model, score: float, state: TrainingState, checkpoint_dir: Path, rank: int) -> None:
    """Extend the curve with `score` (and the mean training loss since the last point); keep the weights in
    checkpoint_dir/best/ if the score is the best so far (rank 0 writes)."""
    from safetensors.torch import save_model

    since = state.curve[-1]["step"] if state.curve else 0
    recent = state.losses[since:state.step]
    state.curve.append({"step": state.step, "loss": float(np.mean(recent)) if recent else float("nan"),
                        "valid_spearman": score})
    if not state.best or score > state.best["valid_spearman"]:
        state.best = {"step": state.step, "valid_spearman": score}
        if rank == 0:
            best_dir = checkpoint_dir / "best"
            best_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(best_dir / "weights.safetensors") as tmp:
                save_model(model, str(tmp))


def save_best_valid(model, run_dir: Path, checkpoint_dir: Path, state: TrainingState, label: str) -> None:
    """Write the best-on-valid weights as a sentence-transformers folder run_dir/best-valid/.

    The training model itself is saved with the best weights and then given its final weights back
    (a model reloaded from disk could differ: transformers re-adds a random pooler we dropped).
    """
    from safetensors.torch import load_model, save_model

    weights = checkpoint_dir / "best" / "weights.safetensors"
    if not state.best or not weights.is_file():
        return

    final = checkpoint_dir / "final.safetensors"  # on disk, not a second copy of the weights in memory
    save_model(model, str(final))
    load_model(model, str(weights))
    target = run_dir / BEST_VALID_DIR
    shutil.rmtree(target, ignore_errors=True)
    model.save(str(target), create_model_card=False)
    write_json_atomic(target / "best_valid.json", {**state.best, "label": label})
    load_model(model, str(final))
