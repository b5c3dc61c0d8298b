"""`train_simcse`: unsupervised SimCSE as an objective of the shared training loop.

Each step tokenises a batch of B sentences, encodes the 2B copies with dropout on (in length-sorted
chunks: less padding, same vectors), applies the loss of `build_loss` to (copy one, copy two) and takes
an Adam step; the loop (`stseval.methods.simcse.loop.train_model`) does the rest.

Example:
    >>> settings = SimcseSettings(pooling=Pooling("cls"), dropout=Dropout(0.3), max_length=64, seed=0)
    >>> sentences = select_sentences(all_sentences, max_sentences=10_000, seed=0)
    >>> trained = train_simcse(encoder.folder, sentences, settings, Path("runs/simcse/demo"))
    >>> SentenceTransformer(str(trained.folder)).encode(["今天天气很好"]).shape    # (1, d)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from stseval.common.errors import StsevalError
from stseval.methods.simcse.batching import to_device
from stseval.methods.simcse.evaluator import Evaluator
from stseval.methods.simcse.loop import Objective, TrainedModel, train_model
from stseval.methods.simcse.loss import build_loss, simcse_batch_loss
from stseval.methods.simcse.model import model_card
from stseval.methods.simcse.sentences import sentences_sha256
from stseval.methods.simcse.settings import SimcseSettings, settings_identity


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
    validation: Evaluator | None = None,
    max_steps: int | None = None,
) -> TrainedModel:
    """Train unsupervised SimCSE and save a sentence-transformers folder to `run_dir`.

    Each step encodes the 2B copies of a batch of B sentences with dropout on and applies the loss of
    `build_loss` to (copy one, copy two); batches, RowAdam, checkpoints and resume, the validation curve,
    the best-on-valid folder, torchrun and the files written are `train_model`'s (see there). A folder
    that already holds the same finished run is reused without training.

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
        validation: scores the model for the training curve and the best-on-valid checkpoint (e.g.
            `ValidationPairs`, the loop's `evaluator`); None skips both.
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
    identity = {"base_model": base_model, "base_fingerprint": base_fingerprint, **settings_identity(settings),
                "n_sentences": len(sentences), "sentences_sha256": sentences_sha256(sentences)}

    def objective(model, device: str, world_size: int) -> Objective:
        loss_fn = build_loss(model, settings.loss, settings.mini_batch_size, gather_across_devices=world_size > 1)

        def batch(ids: list[int]) -> dict:
            return to_device(model.preprocess([sentences[i] for i in ids]), device)

        def doubled_lengths(features: dict) -> list[int]:
            return features["attention_mask"].sum(dim=1).tolist() * 2  # both copies

        def loss(features: dict) -> tuple[torch.Tensor, float]:
            return simcse_batch_loss(model, loss_fn, features, settings.loss)

        return Objective(len(sentences), batch, loss, doubled_lengths)

    return train_model(objective, model_folder, settings, identity, run_dir, card=model_card,
                       card_facts=card_facts, show_progress=show_progress, on_step=on_step, evaluator=validation,
                       max_steps=max_steps)

