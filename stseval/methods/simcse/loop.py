"""The one training loop, shared by SimCSE (`stseval.methods.simcse.train`) and CoSENT (`stseval.methods.cosent`).

`train_model(make_objective, ...)` is a plain PyTorch loop, not the Hugging Face trainer, whose
per-step overheads cost 2-5x on a 2-core CPU (benchmarks/simcse.py measures the loop against the
CPU's matmul rate). An objective (`Objective`) says what is trained: its examples, how ids become a
tokenised batch and the batch's loss. The loop owns the rest:

- the model (`stseval.methods.simcse.model.build_simcse_model`: Transformer -> pooling head, dropout set);
- batches from a seeded permutation of the examples per epoch (the last batch may be smaller), the
  loss forward under `settings.precision`, and a `RowAdam` step (dense Adam's weights, updating only
  the embedding rows a batch touched);
- every `settings.checkpoint_steps` steps a resume point (`stseval.methods.simcse.checkpoints`);
- with an evaluator (as sentence-transformers' trainer takes an `EmbeddingSimilarityEvaluator`;
  `stseval.methods.simcse.evaluator`), a score before training, every `every_steps` steps and at the
  end: the curve and the best-on-valid folder;
- under torchrun, data-parallel steps (`stseval.methods.simcse.distributed`);
- at the end the model, the curve, the model card and the settings file, written to the run folder
  (`stseval.methods.simcse.run_folder`), and where each step's time went (`PHASES`).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stseval.common.fileio import write_text_atomic
from stseval.encoders.precision import DEFAULT_PRECISION, autocast
from stseval.methods.row_adam import RowAdam
from stseval.methods.simcse.batching import length_sorted_chunks
from stseval.methods.simcse.checkpoints import (
    CHECKPOINT_DIR,
    TrainingState,
    load_newest_checkpoint,
    record_score,
    save_best_valid,
    save_checkpoint,
)
from stseval.methods.simcse.distributed import (
    average_gradients,
    broadcast_parameters,
    local_device,
    mean_over_processes,
    rank_and_world_size,
)
from stseval.methods.simcse.evaluator import Evaluator
from stseval.methods.simcse.model import build_simcse_model
from stseval.methods.simcse.run_folder import (
    CURVE_FILE,
    SETTINGS_FILE,
    check_same_run,
    ensure_writable,
    finished_run,
    settings_path,
    write_curve,
    write_json_atomic,
)
from stseval.methods.simcse.settings import LoopSettings

PHASES: tuple[str, ...] = ("tokenize", "forward", "backward", "optimizer", "validation", "checkpoint", "logging")
"""Where a training step's wall time goes; `TrainedModel.phase_seconds` sums each over the run."""


@dataclass
class TrainedModel:
    """What `train_model` produced: a sentence-transformers folder and how training went."""

    folder: Path
    n_sentences: int
    steps: int
    final_loss: float
    train_seconds: float
    sentences_per_s: float
    resumed_from: str = ""  # checkpoint folder training resumed from; "" for a fresh run
    reused: bool = False  # the folder already held this exact finished run, nothing was trained
    identity: dict = field(default_factory=dict)  # the settings and data recorded in the folder
    model: object = field(default=None, repr=False)  # the trained SentenceTransformer (eval mode); None if reused
    phase_seconds: dict = field(default_factory=dict)  # seconds per PHASES entry, summed over the run
    losses: list = field(default_factory=list)  # training loss of every step (resumed steps included)
    curve: list = field(default_factory=list)  # {"step", "loss", "valid_spearman"} points; [] without validation
    phase_log: list = field(default_factory=list)  # per trained step: seconds per PHASES entry


@dataclass
class Objective:
    """What one training objective gives the loop: its examples, how ids become a batch, the batch's loss.

    The loop draws `batch_size` example ids per step from a seeded permutation of range(n_examples);
    `batch(ids)` tokenises them (time counted as "tokenize"), `loss(batch)` returns (loss tensor,
    forward seconds), `lengths(batch)` the real token count of every row forwarded (benchmarks).
    """

    n_examples: int
    batch: Callable[[list[int]], dict]
    loss: Callable[[dict], tuple[torch.Tensor, float]]
    lengths: Callable[[dict], list[int]]


def train_model(
    make_objective: Callable[[nn.Module, str, int], Objective],
    model_folder: Path,
    settings: LoopSettings,
    identity: dict,
    run_dir: Path,
    card: Callable[[dict, dict, dict[str, str]], str],
    card_facts: dict[str, str] | None = None,
    show_progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
    evaluator: Evaluator | None = None,
    max_steps: int | None = None,
    progress_label: str = "simcse",
) -> TrainedModel:
    """Train `make_objective`'s objective from `model_folder` and save a sentence-transformers folder to `run_dir`.

    Builds the model (`build_simcse_model`: Transformer -> pooling head, dropout set), asks
    `make_objective(model, device, world_size)` for its examples and loss, and runs the loop of the
    module docstring. Every `settings.checkpoint_steps` steps a checkpoint (weights, optimizer state,
    RNG state, the curve so far) goes to `run_dir/checkpoints/step-N/`; a re-run resumes from the
    newest one that loads, so an interrupted run ends with the same weights as an uninterrupted one.
    With `evaluator`, the model is scored before training, every `evaluator.every_steps` steps and at
    the end; the curve goes to `run_dir/curve.csv` and the best-scoring weights after step 0 to
    `run_dir/best-valid/` (a sentence-transformers folder). When training ends the model, a README
    model card (`card(identity, result, card_facts)`) and `SETTINGS_FILE` are written to `run_dir`
    (the JSON last) and the checkpoints deleted.

    Under torchrun (WORLD_SIZE > 1) every process takes `batch_size` examples of each global batch
    of batch_size x world_size and the gradients are averaged over processes; only rank 0 writes. An
    incomplete last global batch is dropped there.

    Args:
        make_objective: (model, device, world_size) -> Objective, called once the model is built.
        model_folder: Hugging Face encoder folder to start from (config, safetensors, tokenizer).
        settings: pooling, dropout, batch size, learning rate, epochs, max_length, seed, checkpoint
            steps and precision (`LoopSettings`).
        identity: everything the trained weights depend on (settings, base model fingerprint, data
            hash); a run folder holding another identity is refused (the message names the differing
            setting), one holding this finished identity is reused without training.
        run_dir: output folder, e.g. runs/simcse/default-STS-B-cls-d0.1-s0.
        card: writes the README model card from (identity, result, card_facts).
        card_facts: extra "name: value" lines for the model card (data, versions, commit).
        show_progress: a tqdm bar over steps (loss).
        on_step: called with (step, loss) after every optimizer step (tests, custom logging).
        evaluator: scores the model for the curve and the best-on-valid checkpoint (e.g.
            `ValidationPairs`); None skips both.
        max_steps: stop after this many steps in total (benchmarks); None trains every epoch.
        progress_label: the progress bar's label.
    Returns:
        TrainedModel with the folder, steps, last loss, throughput and where the time went.
    Raises:
        StsevalError for an unwritable run_dir or a run_dir holding a run with other settings.
    """
    run_dir = Path(run_dir)
    identity = dict(identity)
    identity.pop("checkpoint_steps", None)  # where checkpoints fall does not change the trained weights
    identity.pop("mini_batch_size", None)
    if settings.precision == DEFAULT_PRECISION:
        identity.pop("precision", None)  # folders trained before --precision existed are float32 runs: still reused
    if max_steps is not None:
        identity["max_steps"] = max_steps
    if evaluator is not None:
        identity["validation"] = f"{evaluator.label} every {evaluator.every_steps} steps"
    n_examples = int(identity.get("n_sentences", identity.get("n_pairs", 0)))
    done = finished_run(run_dir)
    needed = {"final", "best"} if evaluator is not None else {"final"}  # what scoring a reused folder loads
    if done is not None and not needed.issubset(done.get("kept", ["final", "best"])):
        settings_path(run_dir).unlink()  # --keep deleted a model scoring needs: train again
        done = None
    if done is not None:
        check_same_run(done.get("identity", {}), identity, run_dir)
        result = done["result"]
        return TrainedModel(run_dir, n_examples, result["steps"], result["final_loss"], result["train_seconds"],
                            result["sentences_per_s"], reused=True, identity=identity)
    checkpoint_dir = run_dir / CHECKPOINT_DIR
    ensure_writable(checkpoint_dir, "--runs-dir")
    identity_path = checkpoint_dir / "identity.json"
    if identity_path.is_file():
        check_same_run(json.loads(identity_path.read_text(encoding="utf-8")), identity, run_dir)
    else:
        for stale in checkpoint_dir.glob("step-*"):  # checkpoints of unknown settings: never resume from them
            shutil.rmtree(stale, ignore_errors=True)
    write_json_atomic(identity_path, identity)

    rank, world_size = rank_and_world_size()
    seed_everything(settings.seed)
    device = local_device()
    model = build_simcse_model(model_folder, settings.pooling, settings.dropout, settings.max_length, device=device)
    objective = make_objective(model, device, world_size)
    n_examples = objective.n_examples
    embedding = model[0].auto_model.get_input_embeddings()
    if world_size > 1:
        broadcast_parameters(model)
    optimizer = RowAdam(model.parameters(), embedding, lr=settings.learning_rate, sparse_grad=world_size == 1)

    global_batch = settings.batch_size * world_size
    steps_per_epoch = -(-n_examples // global_batch)
    if world_size > 1:  # every process needs sentences: drop an incomplete last global batch
        steps_per_epoch = max(1, n_examples // global_batch)
    total_steps = steps_per_epoch * settings.epochs
    if max_steps is not None:
        total_steps = min(max_steps, total_steps)
    state = TrainingState()
    resume = load_newest_checkpoint(checkpoint_dir, model, optimizer, state)
    if resume is None and evaluator is not None:
        untrained_key = (f"{identity.get('base_fingerprint', '')}|{settings.pooling}|{settings.max_length}|"
                         f"{getattr(settings, 'prefix', '')}|{settings.precision}")
        if untrained_key not in evaluator.untrained or not identity.get("base_fingerprint"):
            evaluator.untrained[untrained_key] = evaluator(model, settings.precision)
        state.curve.append({"step": 0, "loss": float("nan"), "valid_spearman": evaluator.untrained[untrained_key]})
    phase = dict.fromkeys(PHASES, 0.0)
    phase_log: list[dict[str, float]] = []  # phase seconds of each step, for benchmarks/simcse.py
    bar = progress_bar(total_steps, state.step, show_progress and rank == 0, progress_label)
    started = time.perf_counter()
    model.train()
    while state.step < total_steps:
        before = dict(phase)
        epoch, within = divmod(state.step, steps_per_epoch)
        order = torch.randperm(n_examples, generator=torch.Generator().manual_seed(settings.seed + epoch))
        batch_ids = order[within * global_batch:(within + 1) * global_batch].tolist()
        local = batch_ids[rank * settings.batch_size:(rank + 1) * settings.batch_size]
        tick = time.perf_counter()
        features = objective.batch(local)
        phase["tokenize"] += time.perf_counter() - tick
        with autocast(device, settings.precision):  # bf16 matmuls; parameters and gradients stay float32
            loss, forward_seconds = objective.loss(features)
        phase["forward"] += forward_seconds
        tick = time.perf_counter()
        loss.backward()
        if world_size > 1:
            average_gradients(model, world_size)
        phase["backward"] += time.perf_counter() - tick
        tick = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad()
        phase["optimizer"] += time.perf_counter() - tick
        tick = time.perf_counter()
        state.step += 1
        state.losses.append(mean_over_processes(loss.detach(), world_size))
        if on_step is not None:
            on_step(state.step, state.losses[-1])
        bar.update(1)
        bar.set_postfix(loss=f"{state.losses[-1]:.4f}", refresh=False)
        phase["logging"] += time.perf_counter() - tick
        if evaluator is not None and (state.step % evaluator.every_steps == 0 or state.step == total_steps):
            tick = time.perf_counter()
            record_score(model, evaluator(model, settings.precision), state, checkpoint_dir, rank)
            model.train()
            phase["validation"] += time.perf_counter() - tick
        if state.step % settings.checkpoint_steps == 0 and state.step < total_steps:
            tick = time.perf_counter()
            if rank == 0:
                state_seconds = state.seconds
                state.seconds = state_seconds + time.perf_counter() - started
                save_checkpoint(checkpoint_dir, model, optimizer, state)
                state.seconds = state_seconds
            phase["checkpoint"] += time.perf_counter() - tick
        lengths = objective.lengths(features)
        phase_log.append({**{name: phase[name] - before[name] for name in PHASES}, "tokens": sum(lengths),
                          "tokens_squared": sum(length * length for length in lengths),
                          "padded_tokens": sum(len(rows) * width for rows, width in length_sorted_chunks(lengths))})
    bar.close()
    session_seconds = time.perf_counter() - started
    train_seconds = state.seconds + session_seconds  # every session's steps, not only this one's
    trained_steps = state.step - (resume or 0)
    result = {
        "steps": int(state.step),
        "final_loss": float(state.losses[-1]) if state.losses else float("nan"),
        "train_seconds": round(train_seconds, 3),
        "sentences_per_s": round(min(trained_steps * global_batch, n_examples * settings.epochs)
                                 / max(session_seconds, 1e-9), 2),
        "resumed_from": f"step-{resume}" if resume else "",
        "best_valid": state.best,
        "world_size": world_size,
        "losses": [round(value, 6) for value in state.losses],  # every step's loss (mean over processes)
    }
    model.eval()
    if rank == 0:
        model.save(str(run_dir), create_model_card=False)
        if evaluator is not None:
            write_curve(run_dir / CURVE_FILE, state.curve, evaluator.label)
            save_best_valid(model, run_dir, checkpoint_dir, state, evaluator.label)
        write_text_atomic(card(identity, result, card_facts or {}), run_dir / "README.md")
        write_json_atomic(run_dir / SETTINGS_FILE, {"identity": identity, "result": result})
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    if world_size > 1:
        torch.distributed.barrier()
    return TrainedModel(run_dir, n_examples, result["steps"], result["final_loss"], result["train_seconds"],
                        result["sentences_per_s"], result["resumed_from"], identity=identity, model=model,
                        phase_seconds={name: round(value, 4) for name, value in phase.items()},
                        losses=list(state.losses), curve=list(state.curve), phase_log=phase_log)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (dropout masks draw from torch's)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def progress_bar(total: int, initial: int, enabled: bool, label: str = "simcse"):
    """A tqdm bar over steps, starting at `initial` (a resumed run); disabled unless `enabled`."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=label, unit="step", disable=not enabled, dynamic_ncols=True)
