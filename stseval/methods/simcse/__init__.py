"""Unsupervised SimCSE as Su ran it on the Chinese STS tasks: a sentence-transformers model and loss, a plain loop.

Method (Gao et al. 2021, arXiv:2104.08821; Su's Chinese runs, https://kexue.fm/archives/8348 and
github.com/bojone/SimCSE): every sentence is its own positive. A batch of B sentences goes through
the encoder twice with dropout on, so the two copies of a sentence differ only by their dropout
masks; the other sentences of the batch are the negatives. The loss is InfoNCE on cosine
similarities at temperature 0.05 (sentence-transformers `MultipleNegativesRankingLoss(scale=20)`
on (text, text) pairs). Labels are never used. Training sentences are chosen by the caller
(stseval/runs/simcse.py) as Su chose them (`select_sentences`).

One module per concept:
    settings     SimcseSettings, what the loop reads (LoopSettings) and the checks CoSENT shares
    sentences    Su's cap per task, the seeded choice of training sentences, their hash
    model        Transformer -> PoolingHead (pooling by `stseval.encoders.pooling.pool`), saved as
                 built-in sentence-transformers modules; dropout everywhere; the model card
    loss         the InfoNCE loss (`--loss` su, princeton, cached), its inputs and shapes
    batching     length-sorted chunks: less padding, the same vectors
    evaluator    what the loop scores the model with (the Evaluator protocol; evaluation.validation.ValidationPairs)
    checkpoints  resume points and the best-on-valid weights
    run_folder   the files of a run folder, finished or reused runs, `--keep`
    distributed  torchrun / accelerate launch: rank, world size, collectives
    loop         train_model(make_objective, ...): the one training loop (SimCSE and CoSENT)
    train        train_simcse: SimCSE as an objective of that loop

The names below are importable from `stseval.methods.simcse` itself, as before the split.

Multi-GPU: launch the same command under torchrun (tested on 2 CPU processes with gloo) or
accelerate launch; it trains data-parallel, with negatives gathered from every process, so the loss
equals one process on the global batch (`stseval.methods.simcse.distributed`):
    torchrun --nproc_per_node 4 -m stseval.cli simcse-train --tasks STS-B --pooling cls --out runs/simcse
Only rank 0 evaluates and writes results (see stseval/runs/simcse.py).

Example:
    >>> settings = SimcseSettings(pooling=Pooling("cls"), dropout=Dropout(0.3), max_length=64, seed=0)
    >>> sentences = select_sentences(all_sentences, max_sentences=10_000, seed=0)
    >>> trained = train_simcse(encoder.folder, sentences, settings, Path("runs/simcse/demo"))
    >>> SentenceTransformer(str(trained.folder)).encode(["今天天气很好"]).shape    # (1, d)
"""

from stseval.methods.simcse.batching import embed_length_sorted, length_sorted_chunks, to_device
from stseval.methods.simcse.checkpoints import CHECKPOINT_DIR
from stseval.methods.simcse.evaluator import Evaluator
from stseval.methods.simcse.loop import PHASES, Objective, TrainedModel, train_model
from stseval.methods.simcse.loss import SCALE, SU_DIRECTIONS, build_loss, simcse_batch_loss
from stseval.methods.simcse.model import PoolingHead, build_simcse_model, model_card, set_dropout
from stseval.methods.simcse.run_folder import (
    BEST_VALID_DIR,
    CURVE_FILE,
    KEPT_FILES,
    SETTINGS_FILE,
    ensure_writable,
    finished_run,
    prune_run,
    settings_path,
)
from stseval.methods.simcse.sentences import (
    DEFAULT_MAX_SENTENCES,
    UNCAPPED_TASKS,
    default_max_sentences,
    select_sentences,
    sentences_sha256,
)
from stseval.methods.simcse.settings import (
    LOSSES,
    LoopSettings,
    SimcseSettings,
    check_loop_settings,
    check_trainable,
    settings_identity,
)
from stseval.methods.simcse.train import train_simcse

__all__ = [
    "BEST_VALID_DIR", "CHECKPOINT_DIR", "CURVE_FILE", "DEFAULT_MAX_SENTENCES", "KEPT_FILES", "LOSSES", "PHASES",
    "SCALE", "SETTINGS_FILE", "SU_DIRECTIONS", "UNCAPPED_TASKS", "Evaluator", "LoopSettings", "Objective",
    "PoolingHead", "SimcseSettings", "TrainedModel", "build_loss", "build_simcse_model",
    "check_loop_settings", "check_trainable", "default_max_sentences", "embed_length_sorted", "ensure_writable",
    "finished_run", "length_sorted_chunks", "model_card", "prune_run", "select_sentences", "sentences_sha256",
    "set_dropout", "settings_identity", "settings_path", "simcse_batch_loss", "to_device", "train_model",
    "train_simcse",
]
