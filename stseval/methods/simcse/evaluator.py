"""What the training loop scores the model with: an evaluator callable, as sentence-transformers' trainer takes one.

sentence-transformers' `SentenceTransformerTrainer(evaluator=EmbeddingSimilarityEvaluator(...))` scores the
model during training; here `stseval.methods.simcse.loop.train_model(evaluator=...)` takes any `Evaluator`:
a callable `evaluator(model, precision) -> float` (higher is better) with the curve's `label`, how often
to call it (`every_steps`) and a cache of the untrained model's score. `stseval.evaluation.validation.ValidationPairs`,
labelled pairs scored by Spearman of cosine, is the one the SimCSE and CoSENT queues pass (it lives in the
evaluation layer, above this one, so the loop never imports a metric).
"""

from __future__ import annotations

from typing import Protocol


class Evaluator(Protocol):
    """Scores a model during training; the best-on-valid checkpoint is the one it scores highest."""

    label: str  # names the curve's score column, e.g. "valid-sample1000"
    every_steps: int  # score after every this many steps (and before the first, and after the last)
    untrained: dict[str, float]  # the step-0 score per untrained model (see evaluation.validation.ValidationPairs)

    def __call__(self, model, precision: str = "fp32") -> float: ...
