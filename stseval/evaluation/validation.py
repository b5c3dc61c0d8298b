"""Labelled pairs that score a model during training: the SimCSE and CoSENT loops' evaluator.

`ValidationPairs` is our `EmbeddingSimilarityEvaluator(texts_a, texts_b, gold)` returning its
`spearman_cosine` only; it meets `stseval.methods.simcse.evaluator.Evaluator`, the protocol the training
loop takes, so the loop (methods layer) never imports a metric (evaluation layer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from stseval.encoders.precision import autocast
from stseval.evaluation.metrics import spearman_cosine
from stseval.methods.simcse.batching import to_device


@dataclass
class ValidationPairs:
    """Labelled pairs scored during training (Spearman of cosine), e.g. a seeded sample of the valid split.

    Only ever a dev split: the best-on-valid checkpoint is chosen on these, never on test. Our
    `EmbeddingSimilarityEvaluator(texts_a, texts_b, gold)`, returning its `spearman_cosine` only.

    Example:
        >>> validation = ValidationPairs(["今天天气很好"] * 10, ["今天天气不错"] * 10, [1.0] * 10, every_steps=20)
        >>> validation(model)    # Spearman in [-1, 1]; nan when the cosines or the gold scores are constant
    """

    texts_a: list[str]
    texts_b: list[str]
    gold: list[float]
    label: str = "valid"  # e.g. "valid-sample1000", recorded in the curve
    every_steps: int = 20  # score after every this many steps (and before the first, and after the last)
    untrained: dict[str, float] = field(default_factory=dict, repr=False)
    """The step-0 point per (base weights, pooling, max length): the untrained model in eval mode has no dropout,
    so every dropout and seed of a pooling shares it and it is scored once."""

    def __call__(self, model, precision: str = "fp32", batch_size: int = 64) -> float:
        """Spearman of cosine vs gold on the pairs, model in eval mode (no dropout, no gradient), the forward
        under `precision` as in training; the model's train/eval mode is restored afterwards.

        Sentences are cut at the model's own max_seq_length (set by build_simcse_model); each side is
        encoded in batches of `batch_size` into (n, d) float32 vectors.
        """
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        vectors = []
        with torch.inference_mode():
            for texts in (self.texts_a, self.texts_b):
                chunks = []
                for start in range(0, len(texts), batch_size):
                    features = to_device(model.preprocess(texts[start:start + batch_size]), device)
                    with autocast(device, precision):
                        embedded = model(features)["sentence_embedding"]
                    chunks.append(embedded.float().cpu().numpy())
                vectors.append(np.concatenate(chunks))
        model.train(was_training)
        return float(spearman_cosine(vectors[0], vectors[1], np.asarray(self.gold, dtype=np.float64)))
