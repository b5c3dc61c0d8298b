"""Unsupervised SimCSE as Su ran it on the Chinese STS tasks, on the sentence-transformers trainer.

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

Training sentences are chosen by the caller (simcse_run.py): Su took every sentence1 and sentence2
of the task's train, valid and test files, did NOT deduplicate, shuffled and kept 10,000 (all for
PAWSX). `select_sentences` does the shuffle and cap with an explicit seed.

Pooling: the trained model is made only of built-in sentence-transformers modules, so the saved
folder loads with a plain `SentenceTransformer(path)` and no `trust_remote_code` (sentence-
transformers 6 refuses module classes outside its own namespace without it). Each composition
gives the vectors of `stseval.pooling.pool` (tests/test_simcse.py checks all seven to 2e-5):
    cls            Transformer -> Pooling("cls")
    last-avg       Transformer -> Pooling("mean")
    max            Transformer -> Pooling("max")
    pooler         Transformer -> Pooling("cls") -> Dense(identity), its Linear IS BERT's pooler
                   dense layer (shared), so the saved Transformer carries the trained pooler and
                   `stseval.encoders.load_encoder` sees it
    pooler-tanh    the same with Dense(tanh), i.e. Hugging Face `pooler_output`
    first-last-avg Transformer(output_hidden_states) -> WeightedLayerPooling(layers 1..L, frozen
                   weights 1,0,...,0,1) -> Pooling("mean"): mean of (hidden_states[1] + last) / 2
    last2avg       the same over layers L-1, L with weights 1, 1

Multi-GPU: the trainer is Hugging Face's, so launch the same command under accelerate or torchrun
and it trains data-parallel (each process takes batch_size pairs; negatives stay per device):
    accelerate launch -m stseval.cli simcse-train --tasks STS-B --pooling cls --dropout 0.1,0.3
    torchrun --nproc_per_node 4 -m stseval.cli simcse-train --tasks STS-B --pooling cls
Only rank 0 evaluates and writes results (see simcse_run.py).

Example:
    >>> settings = SimcseSettings(pooling="cls", dropout=0.3, max_length=64, seed=0)
    >>> sentences = select_sentences(all_sentences, max_sentences=10_000, seed=0)
    >>> trained = train_simcse(encoder.folder, sentences, settings, Path("runs/simcse/demo"))
    >>> SentenceTransformer(str(trained.folder)).encode(["今天天气很好"]).shape    # (1, d)
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from stseval.errors import StsevalError
from stseval.fileio import write_text_atomic
from stseval.pooling import NEEDS_POOLER, POOLINGS

LOSSES: tuple[str, ...] = ("su", "princeton", "cached")
"""`--loss` choices; see the module docstring."""

SU_DIRECTIONS: tuple[str, ...] = ("query_to_doc", "query_to_query")
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
"""Sub-folder of a run folder holding the trainer's checkpoints until training ends."""


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
    checkpoint_steps: int = 100  # the trainer saves a checkpoint every N steps (resume point)
    mini_batch_size: int = 32  # forward chunk of the cached loss

    def validate(self) -> None:
        """Raise StsevalError naming the option of the first bad setting."""
        if self.pooling not in POOLINGS:
            raise StsevalError(f"--pooling: unknown pooling {self.pooling!r}; choose from {', '.join(POOLINGS)}")
        check_dropout(self.dropout)
        if self.loss not in LOSSES:
            raise StsevalError(f"--loss: unknown loss {self.loss!r}; choose from {', '.join(LOSSES)}")
        for option, value, low in (("--batch-size", self.batch_size, 2), ("--epochs", self.epochs, 1),
                                   ("--max-length", self.max_length, 2), ("--checkpoint-steps", self.checkpoint_steps, 1),
                                   ("--mini-batch-size", self.mini_batch_size, 1)):
            if not isinstance(value, int) or value < low:
                raise StsevalError(f"{option}: {value!r} must be an integer of at least {low}")
        if not self.learning_rate > 0:
            raise StsevalError(f"--lr: {self.learning_rate!r} must be positive")


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


def build_simcse_model(model_folder: Path, pooling: str, dropout: float, max_length: int, device: str | None = None):
    """A SentenceTransformer over a Hugging Face encoder folder whose output is `pooling`.

    Args:
        model_folder: folder with config.json, *.safetensors and the tokenizer (e.g. `Encoder.folder`).
        pooling: one of `stseval.pooling.POOLINGS`; see the module docstring for the modules used.
        dropout: set everywhere (see `set_dropout`); used while training only, the model is
            returned in train mode and evaluation must call `.eval()`.
        max_length: tokens kept per sentence, [CLS] and [SEP] included.
        device: torch device; None lets sentence-transformers pick.
    Returns:
        the SentenceTransformer.
    Raises:
        StsevalError naming --pooling when the model lacks a pooler or the layers it needs.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer, WeightedLayerPooling

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
    dim = transformer.get_embedding_dimension()
    modules: list[nn.Module] = [transformer]
    if pooling in NEEDS_POOLER:
        pooler = getattr(backbone, "pooler", None)
        if pooler is None or not hasattr(pooler, "dense") or not _has_trained_pooler(Path(model_folder)):
            raise StsevalError(f"--pooling {pooling}: {model_folder} has no trained pooler layer; use cls, last-avg, "
                               "first-last-avg, last2avg or max")
        head = Dense(dim, dim, bias=pooler.dense.bias is not None,
                     activation_function=nn.Tanh() if pooling == "pooler-tanh" else nn.Identity())
        head.linear = pooler.dense  # shared: training updates BERT's own pooler, which load_encoder reads
        modules += [Pooling(dim, "cls"), head]
    elif layer_pooling:
        n_layers = int(backbone.config.num_hidden_layers)
        if n_layers < 2:
            raise StsevalError(f"--pooling {pooling}: needs a model with at least 2 Transformer layers")
        # hidden_states[0] is the embedding output, [1] the first layer, [n_layers] the last
        layer_start = 1 if pooling == "first-last-avg" else n_layers - 1
        weights = torch.zeros(n_layers + 1 - layer_start)
        weights[[0, -1]] = 1.0
        layers = WeightedLayerPooling(dim, num_hidden_layers=n_layers, layer_start=layer_start,
                                      layer_weights=nn.Parameter(weights, requires_grad=False))
        modules += [layers, Pooling(dim, "mean")]
    else:
        modules.append(Pooling(dim, {"cls": "cls", "last-avg": "mean", "max": "max"}[pooling]))
    model = SentenceTransformer(modules=modules, device=device)
    set_dropout(model, dropout)
    model.train()
    return model


def build_loss(model, loss: str = "su", mini_batch_size: int = 32) -> nn.Module:
    """The SimCSE loss on (text, text) pairs at temperature 0.05.

    Args:
        model: the SentenceTransformer being trained.
        loss: "su", "princeton" or "cached" (see the module docstring).
        mini_batch_size: forward chunk of the cached loss; ignored by the others.
    Returns:
        a sentence-transformers loss module.
    """
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    if loss == "su":
        return MultipleNegativesRankingLoss(model, scale=SCALE, directions=SU_DIRECTIONS)
    if loss == "princeton":
        return MultipleNegativesRankingLoss(model, scale=SCALE)
    if loss == "cached":
        return CachedMultipleNegativesRankingLoss(model, scale=SCALE, directions=SU_DIRECTIONS,
                                                  mini_batch_size=mini_batch_size)
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


def train_simcse(
    model_folder: Path,
    sentences: Sequence[str],
    settings: SimcseSettings,
    run_dir: Path,
    base_model: str = "",
    base_fingerprint: str = "",
    card_facts: dict[str, str] | None = None,
    show_progress: bool = True,
    callbacks: list | None = None,
) -> TrainedModel:
    """Train unsupervised SimCSE and save a sentence-transformers folder to `run_dir`.

    Training runs on `SentenceTransformerTrainer` with a `datasets.Dataset` of (text, text) pairs.
    A checkpoint is written to `run_dir/checkpoints/` every `settings.checkpoint_steps` steps; if
    one is there (an interrupted run of the same settings) training resumes from the latest
    complete one. When training ends the model (safetensors), a README model card and
    `stseval_simcse.json` are written to `run_dir` (the JSON last) and the checkpoints deleted. A
    folder that already holds the same finished run is reused without training.

    Args:
        model_folder: Hugging Face encoder folder to start from (config, safetensors, tokenizer).
        sentences: training sentences in order (see `select_sentences`); labels are never used.
        settings: pooling, dropout, loss, batch size, learning rate, epochs, max_length, seed, ...
        run_dir: output folder, e.g. runs/simcse/default-STS-B-cls-d0.1-s0.
        base_model: the `--model` value, recorded in the card.
        base_fingerprint: identifies the base weights (`Encoder.fingerprint`); a run folder trained
            from other weights is not reused or resumed.
        card_facts: extra "name: value" lines for the model card (data, versions, commit).
        show_progress: the trainer's tqdm bar (steps/s, loss every few steps).
        callbacks: extra `transformers.TrainerCallback`s (e.g. early stopping, custom logging).
    Returns:
        TrainedModel with the folder, step count, last logged loss and throughput.
    Raises:
        StsevalError for bad settings, fewer than 2 sentences, an unwritable run_dir, or a run_dir
        holding a run with other settings (the message names the differing setting).
    """
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from transformers import set_seed

    settings.validate()
    sentences = [settings.prefix + sentence for sentence in sentences]
    if len(sentences) < 2:
        raise StsevalError(f"--train-on: {len(sentences)} training sentence(s); SimCSE needs at least 2")
    run_dir = Path(run_dir)
    identity = {"base_model": base_model, "base_fingerprint": base_fingerprint, **asdict(settings),
                "n_sentences": len(sentences), "sentences_sha256": sentences_sha256(sentences)}
    identity.pop("checkpoint_steps")  # where checkpoints fall does not change the trained weights
    identity.pop("mini_batch_size")
    done = finished_run(run_dir)
    if done is not None:
        _check_same_run(done.get("identity", {}), identity, run_dir)
        result = done["result"]
        return TrainedModel(run_dir, len(sentences), result["steps"], result["final_loss"], result["train_seconds"],
                            result["sentences_per_s"], reused=True, identity=identity)
    checkpoint_dir = run_dir / CHECKPOINT_DIR
    ensure_writable(checkpoint_dir, "--runs-dir")
    identity_path = checkpoint_dir / "identity.json"
    resume = _last_complete_checkpoint(checkpoint_dir)
    if resume is not None and identity_path.is_file():
        _check_same_run(json.loads(identity_path.read_text(encoding="utf-8")), identity, run_dir)
    elif resume is not None:
        resume = None  # checkpoints of unknown settings: do not resume from them
    _write_json_atomic(identity_path, identity)

    set_seed(settings.seed)
    model = build_simcse_model(model_folder, settings.pooling, settings.dropout, settings.max_length)
    steps_per_epoch = -(-len(sentences) // settings.batch_size)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        weight_decay=0.0,  # AdamW without decay is Su's Adam
        lr_scheduler_type="constant",  # Su's Keras Adam kept lr fixed
        max_grad_norm=0.0,  # no gradient clipping, as Su (the trainer would clip at 1.0)
        warmup_steps=0,
        seed=settings.seed,
        data_seed=settings.seed,
        save_strategy="steps",
        save_steps=settings.checkpoint_steps,
        save_total_limit=1,  # old checkpoints are deleted only after a newer one is complete
        logging_steps=max(1, min(10, steps_per_epoch // 5)),
        logging_first_step=True,
        disable_tqdm=not show_progress,
        report_to="none",
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    dataset = Dataset.from_dict({"anchor": sentences, "positive": sentences})
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset,
                                         loss=build_loss(model, settings.loss, settings.mini_batch_size),
                                         callbacks=callbacks)
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    train_seconds = time.perf_counter() - started
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    trained_pairs = (output.global_step - (_step_of(resume) if resume is not None else 0)) * settings.batch_size
    result = {
        "steps": int(output.global_step),
        "final_loss": float(losses[-1]) if losses else float("nan"),
        "train_seconds": round(train_seconds, 3),
        "sentences_per_s": round(min(trained_pairs, len(sentences) * settings.epochs) / max(train_seconds, 1e-9), 2),
        "resumed_from": resume.name if resume is not None else "",
    }
    model.eval()
    if trainer.is_world_process_zero():
        model.save(str(run_dir), create_model_card=False)
        write_text_atomic(model_card(identity, result, card_facts or {}), run_dir / "README.md")
        _write_json_atomic(run_dir / SETTINGS_FILE, {"identity": identity, "result": result})
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return TrainedModel(run_dir, len(sentences), result["steps"], result["final_loss"], result["train_seconds"],
                        result["sentences_per_s"], result["resumed_from"], identity=identity, model=model)


def model_card(identity: dict, result: dict, card_facts: dict[str, str]) -> str:
    """README.md for a trained run folder: what it was trained on, with which settings and libraries."""
    facts = "\n".join(f"- {name}: {value}" for name, value in card_facts.items())
    settings = "\n".join(f"- {name}: {value!r}" for name, value in identity.items())
    outcome = "\n".join(f"- {name}: {value}" for name, value in result.items())
    return f"""---
library_name: sentence-transformers
pipeline_tag: sentence-similarity
tags: [sentence-transformers, simcse, unsupervised, chinese, stseval]
---

# Unsupervised SimCSE ({identity['pooling']}, dropout {identity['dropout']:g}) from {identity['base_model'] or 'a local model'}

Trained by `stseval simcse-train` (stseval/simcse.py) the way Su Jianlin ran SimCSE on the Chinese
STS tasks (https://kexue.fm/archives/8348): each training sentence is its own positive through
two dropout masks, the other sentences of the batch are negatives, InfoNCE at temperature 0.05.
Labels were not used. Sentences were not deduplicated (as in Su's script).

Load with `SentenceTransformer(path)` (built-in modules only, no remote code) or with
`stseval.encoders.load_encoder(path)`, which pools the Transformer's hidden states itself with the
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


def _step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[-1])


def _last_complete_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest checkpoint-N folder whose trainer_state.json (the trainer's last write) exists."""
    if not checkpoint_dir.is_dir():
        return None
    complete = [path for path in checkpoint_dir.glob("checkpoint-*")
                if path.name.rsplit("-", 1)[-1].isdigit() and (path / "trainer_state.json").is_file()]
    return max(complete, key=_step_of, default=None)


def ensure_writable(folder: Path, option: str) -> None:
    """Create `folder` and check a file can be written there; raise StsevalError naming `option`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise StsevalError(f"{option}: cannot write to {folder} ({err.strerror or err})") from None




def _write_json_atomic(path: Path, value: dict) -> None:
    write_text_atomic(json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n", path)
