"""Unsupervised SimCSE as Su ran it on the Chinese STS tasks: a sentence-transformers model and loss, a plain loop.

Method (Gao et al. 2021, arXiv:2104.08821; Su's Chinese runs, https://kexue.fm/archives/8348 and
github.com/bojone/SimCSE): every sentence is its own positive. A batch of B sentences goes through
the encoder twice with dropout on, so the two copies of a sentence differ only by their dropout
masks; the other sentences of the batch are the negatives. The loss is InfoNCE on cosine
similarities at temperature 0.05 (sentence-transformers `MultipleNegativesRankingLoss(scale=20)`
on (text, text) pairs). Labels are never used.

Losses (`--loss`):
    su:        directions ("query_to_doc", "query_to_query"): for copy one of sentence i the
               candidates are copy two of every sentence AND copy one of every other sentence
               (2B - 1 candidates), exactly one row of Su's `simcse_loss`. Su's Keras loss also
               averages the mirrored rows (copy two as anchor); both copies come from the same
               dropout distribution, so that half has the same expectation. Shown in
               tests/test_simcse.py: ours equals Su's rows for copy one, and Su's full loss is
               the mean of ours and ours with the columns swapped.
    princeton: the default direction only (copy one against copy two of every sentence, B
               candidates), as in princeton-nlp/SimCSE.
    cached:    the `su` loss through `CachedMultipleNegativesRankingLoss` (GradCache): the same
               numbers, memory bounded by `mini_batch_size`, for large batches on small devices.

Training sentences are chosen by the caller (stseval/runs/simcse.py): Su took every sentence1 and sentence2
of the task's train, valid and test files, did NOT deduplicate, shuffled and kept 10,000 (all for
PAWSX). `select_sentences` does the shuffle and cap with an explicit seed.

Pooling: one definition, `stseval.encoders.pooling.pool`. In memory the model is Transformer ->
`PoolingHead`, which calls `pool` on the Transformer's hidden states, so training, the validation curve
and `trained.model.encode` pool exactly as `stseval.encoders.encoder.encode` does. On disk (`save`) the
head is written as built-in sentence-transformers modules, so the folder loads with a plain
`SentenceTransformer(path)` and no `trust_remote_code` (sentence-transformers 6 refuses module classes
outside its own namespace without it); tests/test_simcse.py checks that all seven give the vectors
of `pool` to 2e-5:
    cls            Transformer -> Pooling("cls")
    last-avg       Transformer -> Pooling("mean")
    max            Transformer -> Pooling("max")
    pooler         Transformer -> Pooling("cls") -> Dense(identity), its Linear IS BERT's pooler
                   dense layer (shared), so the saved Transformer carries the trained pooler and
                   `stseval.encoders.encoder.load_encoder` sees it
    pooler-tanh    the same with Dense(tanh), i.e. Hugging Face `pooler_output`
    first-last-avg Transformer(output_hidden_states) -> WeightedLayerPooling(layers 1..L, frozen
                   weights 1,0,...,0,1) -> Pooling("mean"): mean of (hidden_states[1] + last) / 2
    last2avg       the same over layers L-1, L with weights 1, 1

Training is a plain PyTorch loop (`train_simcse`), not the Hugging Face trainer, whose per-step
overheads cost 2-5x on a 2-core CPU: the 2B copies go through the encoder in length-sorted chunks
(less padding, same vectors) and `RowAdam` skips the embedding rows no batch has touched (same
weights as dense Adam). benchmarks/simcse.py measures it against the CPU's matmul rate.

Multi-GPU: launch the same command under torchrun (tested on 2 CPU processes with gloo) or
accelerate launch (which sets the same RANK / WORLD_SIZE / LOCAL_RANK variables); it trains data-
parallel, each process taking batch_size sentences of a global batch of batch_size x processes,
with negatives gathered from every process, so the loss equals one process on the global batch:
    torchrun --nproc_per_node 4 -m stseval.cli simcse-train --tasks STS-B --pooling cls --out runs/simcse
Only rank 0 evaluates and writes results (see stseval/runs/simcse.py).

Example:
    >>> settings = SimcseSettings(pooling="cls", dropout=0.3, max_length=64, seed=0)
    >>> sentences = select_sentences(all_sentences, max_sentences=10_000, seed=0)
    >>> trained = train_simcse(encoder.folder, sentences, settings, Path("runs/simcse/demo"))
    >>> SentenceTransformer(str(trained.folder)).encode(["今天天气很好"]).shape    # (1, d)
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import torch
from torch import nn

from stseval.common.errors import StsevalError
from stseval.common.fileio import atomic_path, check_writable_dir, write_text_atomic
from stseval.encoders.pooling import NEEDS_POOLER, POOLINGS, pool
from stseval.encoders.precision import DEFAULT_PRECISION, PRECISIONS, autocast
from stseval.methods.row_adam import RowAdam

if TYPE_CHECKING:  # annotations only: sentence-transformers takes seconds to import
    from sentence_transformers.sentence_transformer.modules import Transformer

LOSSES: tuple[str, ...] = ("su", "princeton", "cached")
"""`--loss` choices; see the module docstring."""

SU_DIRECTIONS: tuple[Literal["query_to_doc", "query_to_query"], ...] = ("query_to_doc", "query_to_query")
"""MultipleNegativesRankingLoss directions that reproduce Su's `simcse_loss` rows."""

SCALE = 20.0
"""Cosine similarities are multiplied by 1 / temperature = 1 / 0.05 (Su and Gao et al.)."""

DEFAULT_MAX_SENTENCES = 10_000
"""Su trained on a random 10,000 sentences per task, except PAWSX (all of them)."""

UNCAPPED_TASKS: frozenset[str] = frozenset({"PAWSX"})
"""Tasks Su trained on every sentence of (PAWSX sentences are long and few)."""

SETTINGS_FILE = "stseval_simcse.json"
"""Written last into a run folder: its presence means the trained model there is complete."""

CHECKPOINT_DIR = "checkpoints"
"""Sub-folder of a run folder holding the training checkpoints (step-N/) until training ends."""


@dataclass
class SimcseSettings:
    """Everything one SimCSE training run depends on besides the base model and the sentences.

    Defaults follow Su: batch 64 sentences (64 pairs), AdamW without weight decay (= Adam) at a
    constant learning rate 1e-5 without gradient clipping, 1 epoch, dropout 0.1, 64 tokens (128
    for PAWSX), float32.
    """

    pooling: str = "cls"
    dropout: float = 0.1
    loss: str = "su"
    batch_size: int = 64
    learning_rate: float = 1e-5
    epochs: int = 1
    max_length: int = 64
    seed: int = 0
    prefix: str = ""  # prepended to every training sentence, e.g. "query: " for E5
    checkpoint_steps: int = 100  # a checkpoint every N steps (resume point)
    mini_batch_size: int = 32  # forward chunk of the cached loss
    precision: str = "fp32"  # bf16: forward and loss under torch.autocast; weights and Adam stay float32

    def validate(self) -> None:
        """Raise StsevalError naming the option of the first bad setting."""
        if self.pooling not in POOLINGS:
            raise StsevalError(f"--pooling: unknown pooling {self.pooling!r}; choose from {', '.join(POOLINGS)}")
        check_dropout(self.dropout)
        if self.loss not in LOSSES:
            raise StsevalError(f"--loss: unknown loss {self.loss!r}; choose from {', '.join(LOSSES)}")
        for option, value, low in (("--batch-size", self.batch_size, 2), ("--epochs", self.epochs, 1),
                                   ("--max-length", self.max_length, 2),
                                   ("--checkpoint-steps", self.checkpoint_steps, 1),
                                   ("--mini-batch-size", self.mini_batch_size, 1)):
            if not isinstance(value, int) or value < low:
                raise StsevalError(f"{option}: {value!r} must be an integer of at least {low}")
        if not self.learning_rate > 0:
            raise StsevalError(f"--lr: {self.learning_rate!r} must be positive")
        if self.precision not in PRECISIONS:
            raise StsevalError(f"--precision {self.precision}: unknown; choose from {', '.join(PRECISIONS)}")


@dataclass
class TrainedModel:
    """What `train_simcse` produced: a sentence-transformers folder and how training went."""

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


def check_dropout(dropout: float) -> float:
    """Return dropout if it is a probability in [0, 1), else raise StsevalError naming --dropout."""
    if not isinstance(dropout, (int, float)) or not 0.0 <= float(dropout) < 1.0:
        raise StsevalError(f"--dropout: {dropout!r} is outside [0, 1); Su used 0.1 and 0.3")
    return float(dropout)


def default_max_sentences(task: str) -> int | None:
    """Su's cap on training sentences for a task: 10,000, or None (no cap) for PAWSX."""
    return None if task in UNCAPPED_TASKS else DEFAULT_MAX_SENTENCES


def select_sentences(sentences: Sequence[str], max_sentences: int | None, seed: int) -> list[str]:
    """Shuffle with `seed` and keep the first `max_sentences`, as Su did (no deduplication).

    Args:
        sentences: every training sentence, e.g. sentence1 and sentence2 of each pair of each split;
            a sentence that occurs twice stays twice, like in Su's script.
        max_sentences: cap; None keeps all.
        seed: seeds the shuffle, so the same seed picks the same sentences.
    Returns:
        the chosen sentences in shuffled order.
    Raises:
        StsevalError naming --max-sentences when it is below 2, or --train-on when fewer than 2
        sentences are given (one sentence has no negatives).
    """
    if max_sentences is not None and max_sentences < 2:
        raise StsevalError(f"--max-sentences: {max_sentences} must be at least 2 (a batch needs negatives)")
    if len(sentences) < 2:
        raise StsevalError(f"--train-on: {len(sentences)} training sentence(s); SimCSE needs at least 2")
    chosen = list(sentences)
    random.Random(seed).shuffle(chosen)
    return chosen if max_sentences is None else chosen[:max_sentences]


def set_dropout(model: nn.Module, dropout: float) -> int:
    """Set every dropout probability of a model: config fields, nn.Dropout modules, float attributes.

    Hugging Face models read dropout from three places: `config.hidden_dropout_prob` /
    `config.attention_probs_dropout_prob` (read again when layers are rebuilt), `nn.Dropout(p)`
    modules (BERT's attention passes `self.dropout.p` to SDPA), and in some architectures plain
    float attributes such as `self.attention_dropout`. All three are set.

    Args:
        model: any torch module, e.g. a SentenceTransformer or a BertModel.
        dropout: probability in [0, 1).
    Returns:
        how many places were set (0 means the model has no dropout at all).
    """
    dropout = check_dropout(dropout)
    changed = 0
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            for key, value in config.to_dict().items():
                if "dropout" in key and isinstance(value, float):
                    setattr(config, key, dropout)
                    changed += 1
        if isinstance(module, nn.Dropout):
            module.p = dropout
            changed += 1
            continue
        for key, value in vars(module).items():
            if "dropout" in key and isinstance(value, float) and not isinstance(value, bool):
                setattr(module, key, dropout)
                changed += 1
    return changed


class PoolingHead(nn.Module):
    """The sentence-transformers module after the Transformer: `pooling` by `stseval.encoders.pooling.pool`.

    Reads the Transformer module's features: `token_embeddings` (b, s, h), `all_layer_embeddings`
    (the hidden_states tuple, present when the model was loaded with output_hidden_states) and
    `attention_mask` (b, s); adds `sentence_embedding` (b, h).
    """

    def __init__(self, pooling: str, pooler_dense: nn.Linear | None = None):
        super().__init__()
        self.pooling = pooling
        self.pooler_dense = pooler_dense  # BERT's own pooler layer (shared), for pooler / pooler-tanh only

    def forward(self, features: dict) -> dict:
        hidden_states = features.get("all_layer_embeddings") or (features["token_embeddings"],)
        features["sentence_embedding"] = pool(self.pooling, hidden_states, features["attention_mask"],
                                              self.pooler_dense)
        return features


def build_simcse_model(model_folder: Path, pooling: str, dropout: float, max_length: int, device: str | None = None):
    """A SentenceTransformer over a Hugging Face encoder folder whose output is `pooling`.

    Args:
        model_folder: folder with config.json, *.safetensors and the tokenizer (e.g. `Encoder.folder`).
        pooling: one of `stseval.encoders.pooling.POOLINGS`, computed by `PoolingHead`; `save` writes
            it as the built-in modules listed in the module docstring.
        dropout: set everywhere (see `set_dropout`); used while training only, the model is
            returned in train mode and evaluation must call `.eval()`.
        max_length: tokens kept per sentence, [CLS] and [SEP] included.
        device: torch device; None lets sentence-transformers pick.
    Returns:
        the SentenceTransformer (Transformer -> PoolingHead).
    Raises:
        StsevalError naming --pooling when the model lacks a pooler or the layers it needs.
    """
    from sentence_transformers.sentence_transformer.modules import Transformer

    dropout = check_dropout(dropout)
    if pooling not in POOLINGS:
        raise StsevalError(f"--pooling: unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
    layer_pooling = pooling in ("first-last-avg", "last2avg")
    config_kwargs = {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    if layer_pooling:
        config_kwargs["output_hidden_states"] = True
    transformer = Transformer(
        str(model_folder), max_seq_length=max_length,
        model_kwargs={"use_safetensors": True, "dtype": torch.float32}, config_kwargs=config_kwargs,
    )
    backbone = transformer.auto_model
    if getattr(backbone, "pooler", None) is not None and not _has_trained_pooler(Path(model_folder)):
        # transformers filled it with random weights; drop it so they are neither trained nor saved as real
        backbone.pooler = None
    pooler_dense = None
    if pooling in NEEDS_POOLER:
        pooler = getattr(backbone, "pooler", None)
        if pooler is None or not hasattr(pooler, "dense") or not _has_trained_pooler(Path(model_folder)):
            raise StsevalError(f"--pooling {pooling}: {model_folder} has no trained pooler layer; use cls, last-avg, "
                               "first-last-avg, last2avg or max")
        pooler_dense = pooler.dense  # shared: training updates BERT's own pooler, which load_encoder reads
    if layer_pooling and int(backbone.config.num_hidden_layers) < 2:
        raise StsevalError(f"--pooling {pooling}: needs a model with at least 2 Transformer layers")
    model = _simcse_model_class()(modules=[transformer, PoolingHead(pooling, pooler_dense)], device=device)
    set_dropout(model, dropout)
    model.train()
    return model


@functools.cache
def _simcse_model_class() -> type:
    """SentenceTransformer whose `save` writes the PoolingHead as built-in modules (defined on first use:
    importing sentence-transformers takes seconds)."""
    from sentence_transformers import SentenceTransformer

    class SimcseModel(SentenceTransformer):
        def save(self, path: str, *args, **kwargs) -> None:
            from sentence_transformers.sentence_transformer.modules import Transformer

            transformer, head = self[0], self[1]
            if not isinstance(transformer, Transformer) or not isinstance(head, PoolingHead):
                # build_simcse_model makes these two modules
                raise TypeError(f"SimcseModel.save: modules {type(transformer).__name__}, {type(head).__name__}; "
                                "expected Transformer, PoolingHead")
            on_disk = SentenceTransformer(modules=[transformer, *_builtin_pooling(transformer, head)],
                                          device=str(self.device))
            on_disk.save(path, *args, **kwargs)

    return SimcseModel


def _builtin_pooling(transformer: Transformer, head: PoolingHead) -> list[nn.Module]:
    """Built-in sentence-transformers modules that give `head`'s vectors (table in the module docstring)."""
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling, WeightedLayerPooling

    dim = transformer.get_embedding_dimension()
    if head.pooling in NEEDS_POOLER:
        if head.pooler_dense is None:
            raise ValueError(f"PoolingHead({head.pooling!r}) has no pooler layer")
        with torch.random.fork_rng(devices=[]):  # Dense draws a random Linear that is replaced at once
            dense = Dense(dim, dim, bias=head.pooler_dense.bias is not None,
                          activation_function=nn.Tanh() if head.pooling == "pooler-tanh" else nn.Identity())
        dense.linear = head.pooler_dense
        return [Pooling(dim, "cls"), dense]
    if head.pooling in ("first-last-avg", "last2avg"):
        n_layers = int(transformer.auto_model.config.num_hidden_layers)
        # hidden_states[0] is the embedding output, [1] the first layer, [n_layers] the last
        layer_start = 1 if head.pooling == "first-last-avg" else n_layers - 1
        weights = torch.zeros(n_layers + 1 - layer_start)
        weights[[0, -1]] = 1.0
        layers = WeightedLayerPooling(dim, num_hidden_layers=n_layers, layer_start=layer_start,
                                      layer_weights=nn.Parameter(weights, requires_grad=False))
        return [layers, Pooling(dim, "mean")]
    return [Pooling(dim, {"cls": "cls", "last-avg": "mean", "max": "max"}[head.pooling])]


def build_loss(model, loss: str = "su", mini_batch_size: int = 32, gather_across_devices: bool = False) -> nn.Module:
    """The SimCSE loss on (text, text) pairs at temperature 0.05.

    Args:
        model: the SentenceTransformer being trained.
        loss: "su", "princeton" or "cached" (see the module docstring).
        mini_batch_size: forward chunk of the cached loss; ignored by the others.
        gather_across_devices: under torchrun, take the negatives from every process's batch.
    Returns:
        a sentence-transformers loss module.
    """
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    if loss == "su":
        return MultipleNegativesRankingLoss(model, scale=SCALE, directions=SU_DIRECTIONS,
                                            gather_across_devices=gather_across_devices)
    if loss == "princeton":
        return MultipleNegativesRankingLoss(model, scale=SCALE, gather_across_devices=gather_across_devices)
    if loss == "cached":
        return CachedMultipleNegativesRankingLoss(model, scale=SCALE, directions=SU_DIRECTIONS,
                                                  mini_batch_size=mini_batch_size,
                                                  gather_across_devices=gather_across_devices)
    raise StsevalError(f"--loss: unknown loss {loss!r}; choose from {', '.join(LOSSES)}")


def sentences_sha256(sentences: Sequence[str]) -> str:
    """sha256 of the sentences in order, one per line: identifies a training set."""
    digest = hashlib.sha256()
    for sentence in sentences:
        digest.update(sentence.encode("utf-8") + b"\n")
    return digest.hexdigest()


def finished_run(run_dir: Path) -> dict | None:
    """The identity recorded in a finished run folder, or None if training there never finished."""
    path = Path(run_dir) / SETTINGS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@dataclass
class ValidationPairs:
    """Labelled pairs scored during training (Spearman of cosine), e.g. a seeded sample of the valid split.

    Only ever a dev split: the best-on-valid checkpoint is chosen on these, never on test.
    """

    texts_a: list[str]
    texts_b: list[str]
    gold: list[float]
    label: str = "valid"  # e.g. "valid-sample1000", recorded in the curve
    every_steps: int = 20  # score after every this many steps (and before the first, and after the last)
    untrained: dict[str, float] = field(default_factory=dict, repr=False)
    """The step-0 point per (base weights, pooling, max length): the untrained model in eval mode has no dropout,
    so every dropout and seed of a pooling shares it and it is scored once."""


PHASES: tuple[str, ...] = ("tokenize", "forward", "backward", "optimizer", "validation", "checkpoint", "logging")
"""Where a training step's wall time goes; `TrainedModel.phase_seconds` sums each over the run."""


def train_simcse(
    model_folder: Path,
    sentences: Sequence[str],
    settings: SimcseSettings,
    run_dir: Path,
    base_model: str = "",
    base_fingerprint: str = "",
    card_facts: dict[str, str] | None = None,
    show_progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
    validation: ValidationPairs | None = None,
    max_steps: int | None = None,
) -> TrainedModel:
    """Train unsupervised SimCSE and save a sentence-transformers folder to `run_dir`.

    A plain PyTorch loop (no Trainer: its per-step overheads cost 2-5x on a 2-core CPU, see
    benchmarks/simcse.py): each step tokenises a batch of B sentences, encodes the 2B copies in one
    forward pass with dropout on, applies the loss of `build_loss` to (copy one, copy two), and takes
    an Adam step (`RowAdam`: dense Adam's weights, updating only embedding rows ever touched).
    Batches follow a seeded permutation of `sentences` per epoch; the last batch may be smaller.

    Every `settings.checkpoint_steps` steps a checkpoint (weights, optimizer state, RNG state, the
    curve so far) goes to `run_dir/checkpoints/step-N/`; a re-run resumes from the newest one that
    loads, so an interrupted run ends with the same weights as an uninterrupted one. With
    `validation`, the model is scored on those pairs before training, every `every_steps` steps and
    at the end; the curve goes to `run_dir/curve.csv` and the best-scoring weights after step 0 to
    `run_dir/best-valid/` (a sentence-transformers folder). When training ends the model, a README
    model card and `stseval_simcse.json` are written to `run_dir` (the JSON last) and the checkpoints
    deleted. A folder that already holds the same finished run is reused without training.

    Under torchrun (WORLD_SIZE > 1) every process takes `batch_size` sentences of each global batch
    of batch_size x world_size, the loss gathers the embeddings of all processes (negatives are
    global, as on one device with the global batch) and the gradients are averaged over processes
    (all-reduce, as DistributedDataParallel does; DDP itself refuses the several forward passes of
    one step that the length-sorted chunks make); only rank 0 writes. An incomplete last global batch is dropped there.

    Args:
        model_folder: Hugging Face encoder folder to start from (config, safetensors, tokenizer).
        sentences: training sentences in order (see `select_sentences`); labels are never used.
        settings: pooling, dropout, loss, batch size, learning rate, epochs, max_length, seed, ...
        run_dir: output folder, e.g. runs/simcse/default-STS-B-cls-d0.1-s0.
        base_model: the `--model` value, recorded in the card.
        base_fingerprint: identifies the base weights; a run folder trained from other weights is
            neither reused nor resumed.
        card_facts: extra "name: value" lines for the model card (data, versions, commit).
        show_progress: a tqdm bar over steps (loss, sentences/s).
        on_step: called with (step, loss) after every optimizer step (tests, custom logging).
        validation: pairs for the training curve and the best-on-valid checkpoint; None skips both.
        max_steps: stop after this many steps in total (benchmarks); None trains every epoch.
    Returns:
        TrainedModel with the folder, steps, last loss, throughput and where the time went.
    Raises:
        StsevalError for bad settings, fewer than 2 sentences, an unwritable run_dir, or a run_dir
        holding a run with other settings (the message names the differing setting).
    """
    settings.validate()
    sentences = [settings.prefix + sentence for sentence in sentences]
    if len(sentences) < 2:
        raise StsevalError(f"--train-on: {len(sentences)} training sentence(s); SimCSE needs at least 2")
    identity = {"base_model": base_model, "base_fingerprint": base_fingerprint, **asdict(settings),
                "n_sentences": len(sentences), "sentences_sha256": sentences_sha256(sentences)}

    def objective(model, device: str, world_size: int) -> Objective:
        loss_fn = build_loss(model, settings.loss, settings.mini_batch_size, gather_across_devices=world_size > 1)

        def batch(ids: list[int]) -> dict:
            return _to_device(model.preprocess([sentences[i] for i in ids]), device)

        def doubled_lengths(features: dict) -> list[int]:
            return features["attention_mask"].sum(dim=1).tolist() * 2  # both copies

        def loss(features: dict) -> tuple[torch.Tensor, float]:
            return _loss_of_batch(model, loss_fn, features, settings.loss)

        return Objective(len(sentences), batch, loss, doubled_lengths)

    return train_model(model_folder, settings, identity, objective, run_dir, card=model_card,
                       card_facts=card_facts, show_progress=show_progress, on_step=on_step, validation=validation,
                       max_steps=max_steps)


class LoopSettings(Protocol):
    """The settings the training loop reads (SimcseSettings and methods.cosent.CosentSettings have them)."""

    pooling: str
    dropout: float
    batch_size: int
    learning_rate: float
    epochs: int
    max_length: int
    seed: int
    checkpoint_steps: int
    precision: str  # "fp32" or "bf16" (forward and loss under autocast)


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
    model_folder: Path,
    settings: LoopSettings,
    identity: dict,
    make_objective: Callable[[nn.Module, str, int], Objective],
    run_dir: Path,
    card: Callable[[dict, dict, dict[str, str]], str],
    card_facts: dict[str, str] | None = None,
    show_progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
    validation: ValidationPairs | None = None,
    max_steps: int | None = None,
    progress_label: str = "simcse",
) -> TrainedModel:
    """The training loop shared by SimCSE (`train_simcse`) and CoSENT (`stseval.methods.cosent.train_cosent`).

    Builds the model (`build_simcse_model`: Transformer -> pooling head, dropout set), asks
    `make_objective(model, device, world_size)` for its examples and loss, and runs the plain loop
    `train_simcse` documents: seeded permutation per epoch, RowAdam, checkpoints and resume, the
    validation curve and best-on-valid folder, the model card (`card(identity, result, card_facts)`)
    and `SETTINGS_FILE` written last. `identity` holds everything the trained weights depend on; a
    run folder holding another identity is refused, one holding this finished identity is reused.
    """
    run_dir = Path(run_dir)
    identity = dict(identity)
    identity.pop("checkpoint_steps", None)  # where checkpoints fall does not change the trained weights
    identity.pop("mini_batch_size", None)
    if settings.precision == DEFAULT_PRECISION:
        identity.pop("precision", None)  # folders trained before --precision existed are float32 runs: still reused
    if max_steps is not None:
        identity["max_steps"] = max_steps
    if validation is not None:
        identity["validation"] = f"{validation.label} every {validation.every_steps} steps"
    n_examples = int(identity.get("n_sentences", identity.get("n_pairs", 0)))
    done = finished_run(run_dir)
    needed = {"final", "best"} if validation is not None else {"final"}  # what scoring a reused folder loads
    if done is not None and not needed.issubset(done.get("kept", ["final", "best"])):
        (run_dir / SETTINGS_FILE).unlink()  # --keep deleted a model scoring needs: train again
        done = None
    if done is not None:
        _check_same_run(done.get("identity", {}), identity, run_dir)
        result = done["result"]
        return TrainedModel(run_dir, n_examples, result["steps"], result["final_loss"], result["train_seconds"],
                            result["sentences_per_s"], reused=True, identity=identity)
    checkpoint_dir = run_dir / CHECKPOINT_DIR
    ensure_writable(checkpoint_dir, "--runs-dir")
    identity_path = checkpoint_dir / "identity.json"
    if identity_path.is_file():
        _check_same_run(json.loads(identity_path.read_text(encoding="utf-8")), identity, run_dir)
    else:
        for stale in checkpoint_dir.glob("step-*"):  # checkpoints of unknown settings: never resume from them
            shutil.rmtree(stale, ignore_errors=True)
    _write_json_atomic(identity_path, identity)

    rank, world_size = _distributed_rank_and_size()
    _seed_everything(settings.seed)
    device = "cpu"
    if torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    model = build_simcse_model(model_folder, settings.pooling, settings.dropout, settings.max_length, device=device)
    objective = make_objective(model, device, world_size)
    n_examples = objective.n_examples
    embedding = model[0].auto_model.get_input_embeddings()
    if world_size > 1:
        _broadcast_parameters(model)
    optimizer = RowAdam(model.parameters(), embedding, lr=settings.learning_rate, sparse_grad=world_size == 1)

    global_batch = settings.batch_size * world_size
    steps_per_epoch = -(-n_examples // global_batch)
    if world_size > 1:  # every process needs sentences: drop an incomplete last global batch
        steps_per_epoch = max(1, n_examples // global_batch)
    total_steps = steps_per_epoch * settings.epochs
    if max_steps is not None:
        total_steps = min(max_steps, total_steps)
    state = _TrainingState()
    resume = _load_newest_checkpoint(checkpoint_dir, model, optimizer, state)
    if resume is None and validation is not None:
        untrained_key = (f"{identity.get('base_fingerprint', '')}|{settings.pooling}|{settings.max_length}|"
                         f"{getattr(settings, 'prefix', '')}|{settings.precision}")
        if untrained_key not in validation.untrained or not identity.get("base_fingerprint"):
            validation.untrained[untrained_key] = _validation_spearman(model, validation, settings.precision)
        state.curve.append({"step": 0, "loss": float("nan"), "valid_spearman": validation.untrained[untrained_key]})
    phase = dict.fromkeys(PHASES, 0.0)
    phase_log: list[dict[str, float]] = []  # phase seconds of each step, for benchmarks/simcse.py
    bar = _progress(total_steps, state.step, show_progress and rank == 0, progress_label)
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
            _average_gradients(model, world_size)
        phase["backward"] += time.perf_counter() - tick
        tick = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad()
        phase["optimizer"] += time.perf_counter() - tick
        tick = time.perf_counter()
        state.step += 1
        state.losses.append(_mean_over_processes(loss.detach(), world_size))
        if on_step is not None:
            on_step(state.step, state.losses[-1])
        bar.update(1)
        bar.set_postfix(loss=f"{state.losses[-1]:.4f}", refresh=False)
        phase["logging"] += time.perf_counter() - tick
        if validation is not None and (state.step % validation.every_steps == 0 or state.step == total_steps):
            tick = time.perf_counter()
            _record_validation(model, validation, state, checkpoint_dir, rank, settings.precision)
            model.train()
            phase["validation"] += time.perf_counter() - tick
        if state.step % settings.checkpoint_steps == 0 and state.step < total_steps:
            tick = time.perf_counter()
            if rank == 0:
                state_seconds = state.seconds
                state.seconds = state_seconds + time.perf_counter() - started
                _save_checkpoint(checkpoint_dir, model, optimizer, state)
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
        if validation is not None:
            _write_curve(run_dir / CURVE_FILE, state.curve, validation.label)
            _save_best_valid(model, run_dir, checkpoint_dir, state, validation.label)
        write_text_atomic(card(identity, result, card_facts or {}), run_dir / "README.md")
        _write_json_atomic(run_dir / SETTINGS_FILE, {"identity": identity, "result": result})
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    if world_size > 1:
        torch.distributed.barrier()
    return TrainedModel(run_dir, n_examples, result["steps"], result["final_loss"], result["train_seconds"],
                        result["sentences_per_s"], result["resumed_from"], identity=identity, model=model,
                        phase_seconds={name: round(value, 4) for name, value in phase.items()},
                        losses=list(state.losses), curve=list(state.curve), phase_log=phase_log)


CURVE_FILE = "curve.csv"
"""Training curve written into a run folder: step, mean training loss since the last point, valid Spearman."""

BEST_VALID_DIR = "best-valid"
"""Sub-folder of a run folder holding the checkpoint that scored best on the validation pairs."""


@dataclass
class _TrainingState:
    """What a checkpoint must restore besides weights and optimizer: position, losses, curve, best."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    curve: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=dict)  # {"step": N, "valid_spearman": x} of the best checkpoint so far
    seconds: float = 0.0  # training wall time of the steps before this session (a resumed run counts them too)


def _loss_of_batch(
    forward_model: nn.Module, loss_fn: nn.Module, features: dict, loss: str
) -> tuple[torch.Tensor, float]:
    """The loss on (copy one, copy two) of a batch, and the forward seconds.

    su / princeton: the 2B copies (every row draws its own dropout mask, as in Su's and princeton's
    code, which repeat each sentence in the batch) go through the encoder in length-sorted chunks,
    each padded only to its own longest sentence (`length_sorted_chunks`). A sentence's vector does
    not depend on the padding or on the other rows of its forward pass (attention masks padding), so
    this is the same math as one padded pass, with far fewer padded tokens. cached: the loss runs its
    own mini-batched forward (GradCache).
    """
    tick = time.perf_counter()
    if loss == "cached":
        value = loss_fn([features, dict(features)], None)
        return value, time.perf_counter() - tick
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    if not isinstance(loss_fn, MultipleNegativesRankingLoss):  # build_loss's su and princeton losses are
        raise TypeError(f"loss {loss!r}: expected a MultipleNegativesRankingLoss, got {type(loss_fn).__name__}")
    doubled = {key: torch.cat([value, value]) if isinstance(value, torch.Tensor) else value
               for key, value in features.items()}
    first, second = embed_length_sorted(forward_model, doubled).chunk(2)
    # the loss ignores labels (the other rows are the negatives); its hint says Tensor, the trainer passes None too
    value = loss_fn.compute_loss_from_embeddings([first, second], None)  # type: ignore[arg-type]
    return value, time.perf_counter() - tick


def embed_length_sorted(forward_model: nn.Module, features: dict) -> torch.Tensor:
    """Sentence embeddings (n, d) of a tokenised batch of n rows, forwarded in length-sorted chunks.

    Each chunk is padded only to its own longest row (`length_sorted_chunks`); attention masks the
    padding, so every row gets the vector one padded pass would give it, with far fewer padded tokens.
    Rows come back in the order of `features`.
    """
    mask = features["attention_mask"]
    pieces, order = [], []
    for rows, width in length_sorted_chunks(mask.sum(dim=1).tolist()):
        index = torch.tensor(rows)
        chunk = {key: value[index, :width] if isinstance(value, torch.Tensor) and value.dim() == 2
                 and value.shape == mask.shape else value for key, value in features.items()}
        pieces.append(forward_model(chunk)["sentence_embedding"])
        order.extend(rows)
    return torch.cat(pieces)[torch.argsort(torch.tensor(order))]


def length_sorted_chunks(
    lengths: Sequence[int], token_budget: int = 2048, min_rows: int = 8
) -> list[tuple[list[int], int]]:
    """Rows grouped by length so that each group pads little: [(row indices, padded width), ...].

    Args:
        lengths: real token count of each row (attention mask sums), shape (n,).
        token_budget: a group holds at most max(min_rows, token_budget // width) rows, so the
            matmuls stay large while the padding stays small.
        min_rows: smallest group a long row can force.
    Returns:
        groups covering every row once, shortest rows first; width = the group's longest row.
    """
    order = sorted(range(len(lengths)), key=lambda row: (lengths[row], row))
    groups: list[tuple[list[int], int]] = []
    start = len(order)
    while start > 0:  # fill from the longest rows down: the width of a group is its first row's length
        width = max(1, int(lengths[order[start - 1]]))
        size = max(min_rows, token_budget // width)
        rows = order[max(0, start - size):start]
        groups.append((rows, width))
        start -= len(rows)
    return groups[::-1]


def _validation_spearman(model, validation: ValidationPairs, precision: str = "fp32", batch_size: int = 64) -> float:
    """Spearman of cosine vs gold on the validation pairs, model in eval mode (no dropout, no gradient),
    the forward under `precision` as in training.

    Sentences are cut at the model's own max_seq_length (set by build_simcse_model).
    """
    from stseval.evaluation.metrics import spearman_cosine

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    vectors = []
    with torch.inference_mode():
        for texts in (validation.texts_a, validation.texts_b):
            chunks = []
            for start in range(0, len(texts), batch_size):
                features = _to_device(model.preprocess(texts[start:start + batch_size]), device)
                with autocast(device, precision):
                    embedded = model(features)["sentence_embedding"]
                chunks.append(embedded.float().cpu().numpy())
            vectors.append(np.concatenate(chunks))
    model.train(was_training)
    return float(spearman_cosine(vectors[0], vectors[1], np.asarray(validation.gold, dtype=np.float64)))


def _record_validation(model, validation: ValidationPairs, state: _TrainingState,
                       checkpoint_dir: Path, rank: int, precision: str = "fp32") -> None:
    """Score the validation pairs, extend the curve and keep the weights if they are the best so far."""
    from safetensors.torch import save_model

    score = _validation_spearman(model, validation, precision)
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


def _save_best_valid(model, run_dir: Path, checkpoint_dir: Path, state: _TrainingState, label: str) -> None:
    """Write the best-on-valid weights as a sentence-transformers folder run_dir/best-valid/.

    The training model itself is saved with the best weights and then given its final weights back
    (a model reloaded from disk could differ: transformers re-adds a random pooler we dropped).
    """
    from safetensors.torch import load_model

    weights = checkpoint_dir / "best" / "weights.safetensors"
    if not state.best or not weights.is_file():
        return
    from safetensors.torch import save_model

    final = checkpoint_dir / "final.safetensors"  # on disk, not a second copy of the weights in memory
    save_model(model, str(final))
    load_model(model, str(weights))
    target = run_dir / BEST_VALID_DIR
    shutil.rmtree(target, ignore_errors=True)
    model.save(str(target), create_model_card=False)
    _write_json_atomic(target / "best_valid.json", {**state.best, "label": label})
    load_model(model, str(final))


KEPT_FILES = frozenset({"README.md", SETTINGS_FILE, CURVE_FILE})
"""What a run folder keeps whatever `--keep` says: the model card, the settings and result, the curve."""


def prune_run(run_dir: Path, keep: str) -> list[str]:
    """Delete the trained models of a scored run folder that `keep` does not ask for; returns what is kept.

    keep: "both", "final" (the folder's own model), "best" (run_dir/best-valid/; the final model when the run
    has no best-valid folder) or "none". The settings file records what is left, so a later run that needs a
    deleted model trains again instead of reusing the folder (`train_simcse`).
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
        _write_json_atomic(run_dir / SETTINGS_FILE, {**done, "kept": kept})
    return kept


def _write_curve(path: Path, curve: list[dict], label: str) -> None:
    lines = [f"step,train_loss,{label}_spearman"]
    lines += [f"{point['step']},{point['loss']:.6f},{point['valid_spearman']:.6f}" for point in curve]
    write_text_atomic("\n".join(lines) + "\n", path)


def _save_checkpoint(checkpoint_dir: Path, model, optimizer: RowAdam, state: _TrainingState, keep: int = 2) -> None:
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
    for old in _checkpoints(checkpoint_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Complete step-N folders, oldest first."""
    found = [path for path in checkpoint_dir.glob("step-*")
             if path.name[5:].isdigit() and (path / "complete").is_file()]
    return sorted(found, key=lambda path: int(path.name[5:]))


def _load_newest_checkpoint(checkpoint_dir: Path, model, optimizer: RowAdam, state: _TrainingState) -> int | None:
    """Restore the newest checkpoint that loads; returns its step, or None to start fresh.

    A checkpoint that fails to load (a truncated file) is skipped with one line on stderr naming it,
    and the next older one is tried.
    """
    import sys

    from safetensors.torch import load_model

    for folder in reversed(_checkpoints(checkpoint_dir)):
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


def _to_device(features: dict, device: torch.device | str) -> dict:
    """The tensors of a preprocessed batch moved to `device`; other entries (e.g. a task name) kept as they are."""
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in features.items()}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _distributed_rank_and_size() -> tuple[int, int]:
    """(rank, world size) under torchrun / accelerate launch (initialising the process group), else (0, 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _broadcast_parameters(model: nn.Module) -> None:
    """Every process starts from rank 0's weights."""
    for parameter in model.parameters():
        torch.distributed.broadcast(parameter.data, src=0)


def _average_gradients(model: nn.Module, world_size: int) -> None:
    """Mean of every gradient over processes: with each process's loss over its own anchors against the
    gathered candidates, the mean is the gradient of the global batch's loss."""
    for parameter in model.parameters():
        if parameter.grad is not None:
            torch.distributed.all_reduce(parameter.grad)
            parameter.grad /= world_size


def _mean_over_processes(value: torch.Tensor, world_size: int) -> float:
    if world_size > 1:
        value = value.clone()
        torch.distributed.all_reduce(value)
        value /= world_size
    return float(value)


def _progress(total: int, initial: int, enabled: bool, label: str = "simcse"):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=label, unit="step", disable=not enabled, dynamic_ncols=True)


def model_card(identity: dict, result: dict, card_facts: dict[str, str]) -> str:
    """README.md for a trained run folder: what it was trained on, with which settings and libraries."""
    facts = "\n".join(f"- {name}: {value}" for name, value in card_facts.items())
    settings = "\n".join(f"- {name}: {value!r}" for name, value in identity.items())
    outcome = "\n".join(f"- {name}: {value}" for name, value in result.items())
    base_model = identity["base_model"] or "a local model"
    return f"""---
library_name: sentence-transformers
pipeline_tag: sentence-similarity
tags: [sentence-transformers, simcse, unsupervised, chinese, stseval]
---

# Unsupervised SimCSE ({identity['pooling']}, dropout {identity['dropout']:g}) from {base_model}

Trained by `stseval simcse-train` (stseval/simcse.py) the way Su Jianlin ran SimCSE on the Chinese
STS tasks (https://kexue.fm/archives/8348): each training sentence is its own positive through
two dropout masks, the other sentences of the batch are negatives, InfoNCE at temperature 0.05.
Labels were not used. Sentences were not deduplicated (as in Su's script).

Load with `SentenceTransformer(path)` (built-in modules only, no remote code) or with
`stseval.encoders.encoder.load_encoder(path)`, which pools the Transformer's hidden states itself with the
same definition ({identity['pooling']}). Evaluate in eval mode (dropout off); `encode` does that.

## Data
{facts}

## Settings
{settings}

## Training
{outcome}
"""


def _has_trained_pooler(model_folder: Path) -> bool:
    """Whether the folder's safetensors hold pooler weights (else transformers would initialise them at random)."""
    from safetensors import safe_open

    for weights in model_folder.glob("*.safetensors"):
        with safe_open(str(weights), framework="pt") as handle:
            if any(key.endswith("pooler.dense.weight") for key in handle.keys()):
                return True
    return False


def _check_same_run(recorded: dict, identity: dict, run_dir: Path) -> None:
    """Raise StsevalError naming the first setting in which a run folder differs from this run."""
    for key, value in identity.items():
        if recorded.get(key) != value:
            raise StsevalError(f"--runs-dir: {run_dir} holds a run with {key}={recorded.get(key)!r}, not {value!r}; "
                               "delete that folder or choose another --runs-dir")


def ensure_writable(folder: Path, option: str) -> None:
    """Check `folder` can be written (one line naming `option` if not), then create it."""
    check_writable_dir(folder, option)
    folder.mkdir(parents=True, exist_ok=True)


def _write_json_atomic(path: Path, value: dict) -> None:
    write_text_atomic(json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n", path)
