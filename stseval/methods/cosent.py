"""Supervised CoSENT training on a task's labelled train pairs, through the SimCSE training loop.

Method (Su Jianlin, "CoSENT", https://kexue.fm/archives/8847, github.com/bojone/CoSENT; Huang et al.
2024, IEEE/ACM TASLP): for a batch of labelled pairs (a_i, b_i, y_i) with cosine s_i = cos(u(a_i), u(b_i)),

    loss = log(1 + sum over (i, j) with y_i > y_j of exp(scale * (s_j - s_i))),    scale = 20,

so every pair of pairs whose gold order disagrees with the order of their cosines is penalised. Only
the order of the labels matters, so 0/1 labels (BQ) and 0-5 scores (STS-B) need no rescaling. The loss
is sentence-transformers' own `CoSENTLoss(model, scale=20)`; the loop (batches, RowAdam, checkpoints,
resume, validation curve, best-on-valid folder, model card) is `stseval.methods.simcse.loop.train_model`.

Su's settings (../shared/SU_PROTOCOL.md): batch 32 pairs, Adam at lr 2e-5, 5 epochs, the checkpoint
chosen on valid Spearman, CLS pooling in his table, BERT's own dropout (0.1). Those are the defaults
here; the pooling is a setting (`cls`, `last-avg`, ... as for SimCSE).

Example:
    >>> settings = CosentSettings(pooling=Pooling("cls"), max_length=64, seed=0)
    >>> trained = train_cosent(encoder.folder, texts_a, texts_b, gold, settings, Path("runs/cosent/demo"))
    >>> SentenceTransformer(str(trained.folder)).encode(["今天天气很好"]).shape    # (1, d)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from stseval.common.errors import StsevalError
from stseval.common.settings import Dropout, Pooling
from stseval.methods.simcse.batching import embed_length_sorted, to_device
from stseval.methods.simcse.evaluator import Evaluator
from stseval.methods.simcse.loop import Objective, TrainedModel, train_model
from stseval.methods.simcse.model import card_text
from stseval.methods.simcse.settings import check_loop_settings, settings_identity

SCALE = 20.0
"""CoSENT's scale (inverse temperature), as Su and sentence-transformers' CoSENTLoss default."""


@dataclass
class CosentSettings:
    """Everything one CoSENT run depends on besides the base model and the pairs (defaults: Su's)."""

    pooling: Pooling = Pooling("cls")  # a token pooling value, parsed once where --pooling was read
    batch_size: int = 32  # pairs per step (2 x batch_size sentences forwarded)
    learning_rate: float = 2e-5
    epochs: int = 5
    max_length: int = 64
    seed: int = 0
    prefix: str = ""  # prepended to both sentences of every pair, e.g. "query: " for E5
    dropout: Dropout = Dropout(0.1)  # BERT's own training dropout, as in Su's run
    checkpoint_steps: int = 200  # a checkpoint every N steps (resume point)
    precision: str = "fp32"  # bf16: forward and loss under torch.autocast; weights and Adam stay float32

    def validate(self) -> None:
        """Raise StsevalError naming the option of the first bad setting (the checks SimCSE's settings share)."""
        check_loop_settings(self)


def pairs_sha256(texts_a: Sequence[str], texts_b: Sequence[str], gold: Sequence[float]) -> str:
    """sha256 of the labelled pairs in order: identifies a training set."""
    digest = hashlib.sha256()
    for text_a, text_b, score in zip(texts_a, texts_b, gold, strict=True):
        digest.update(f"{text_a}\t{text_b}\t{float(score)!r}\n".encode())
    return digest.hexdigest()


def cosent_batch_loss(loss_fn, model: torch.nn.Module,
                      features: dict) -> tuple[torch.Tensor, float]:
    """CoSENT loss of one batch: `features` holds 2B tokenised rows (the B first sentences, then the B
    second ones) and `labels` (B,); the rows go through the encoder in length-sorted chunks."""
    import time

    tick = time.perf_counter()
    rows = {key: value for key, value in features.items() if key != "labels"}
    first, second = embed_length_sorted(model, rows).chunk(2)
    value = loss_fn.compute_loss_from_embeddings([first, second], features["labels"])
    return value, time.perf_counter() - tick


def train_cosent(
    model_folder: Path,
    texts_a: Sequence[str],
    texts_b: Sequence[str],
    gold: Sequence[float],
    settings: CosentSettings,
    run_dir: Path,
    base_model: str = "",
    base_fingerprint: str = "",
    card_facts: dict[str, str] | None = None,
    show_progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
    validation: Evaluator | None = None,
    max_steps: int | None = None,
) -> TrainedModel:
    """Train CoSENT on labelled pairs and save a sentence-transformers folder to `run_dir`.

    Args:
        model_folder: Hugging Face encoder folder to start from (config, safetensors, tokenizer).
        texts_a, texts_b: the two sentences of each training pair, (n,) each.
        gold: (n,) gold labels or scores; only their order matters.
        settings: pooling, batch size, learning rate, epochs, max_length, seed, prefix, dropout.
        run_dir: output folder, e.g. runs/cosent/default-BQ-cls-s0.
        base_model, base_fingerprint, card_facts, show_progress, on_step, validation, max_steps: as
            `stseval.methods.simcse.train_simcse`: the best-on-valid checkpoint is chosen on `validation`
            (the loop's `evaluator`, e.g. `ValidationPairs`).
    Returns:
        TrainedModel (its `sentences_per_s` counts pairs per second here).
    Raises:
        StsevalError for bad settings, fewer than 2 pairs, labels that are all equal (CoSENT learns
        only from pairs with different labels), an unwritable run_dir, or a run_dir holding another run.
    """
    settings.validate()
    texts_a = [settings.prefix + text for text in texts_a]
    texts_b = [settings.prefix + text for text in texts_b]
    labels = [float(score) for score in gold]
    if not len(texts_a) == len(texts_b) == len(labels):
        raise ValueError(f"train_cosent: {len(texts_a)}, {len(texts_b)} and {len(labels)} sentences/labels")
    if len(labels) < 2:
        raise StsevalError(f"--train-on: {len(labels)} training pair(s); CoSENT needs at least 2")
    if len(set(labels)) < 2:
        raise StsevalError(f"--train-on: every training label is {labels[0]:g}; CoSENT learns from pairs whose "
                           "labels differ")
    identity = {"objective": "cosent", "base_model": base_model, "base_fingerprint": base_fingerprint,
                **settings_identity(settings), "scale": SCALE, "n_pairs": len(labels),
                "pairs_sha256": pairs_sha256(texts_a, texts_b, labels)}

    def objective(model, device: str, world_size: int) -> Objective:
        from sentence_transformers.sentence_transformer.losses import CoSENTLoss

        loss_fn = CoSENTLoss(model, scale=SCALE)

        def batch(ids: list[int]) -> dict:
            features = model.preprocess([texts_a[i] for i in ids] + [texts_b[i] for i in ids])
            features["labels"] = torch.tensor([labels[i] for i in ids], dtype=torch.float32)
            return to_device(features, device)

        return Objective(len(labels), batch, lambda features: cosent_batch_loss(loss_fn, model, features),
                         lambda features: features["attention_mask"].sum(dim=1).tolist())

    return train_model(objective, model_folder, settings, identity, run_dir, card=model_card, card_facts=card_facts,
                       show_progress=show_progress, on_step=on_step, evaluator=validation, max_steps=max_steps,
                       progress_label="cosent")


def model_card(identity: dict, result: dict, card_facts: dict[str, str]) -> str:
    """README.md for a CoSENT run folder: what it was trained on, with which settings and libraries."""
    base_model = identity["base_model"] or "a local model"
    about = f"""Trained by `stseval cosent-train` on labelled pairs with CoSENT (Su Jianlin,
https://kexue.fm/archives/8847): for every two pairs whose gold labels are ordered, the cosine of the
lower-labelled pair is pushed below the cosine of the higher one (sentence-transformers `CoSENTLoss`,
scale {identity['scale']:g}).

Load with `SentenceTransformer(path)` (built-in modules only, no remote code) or with
`stseval.encoders.encoder.load_encoder(path)`."""
    return card_text("cosent, supervised", f"CoSENT ({identity['pooling']}) from {base_model}", about,
                     identity, result, card_facts)
