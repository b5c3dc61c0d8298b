"""Encode a task's splits once and score pairs: the step shared by whiten, simcse-train and index."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stseval.common.errors import StsevalError
from stseval.common.settings import Pooling
from stseval.data.tasks import Pair, TaskSpec, load_pairs
from stseval.evaluation.metrics import bootstrap_ci, cosine_scores, spearman, undefined_reason


@dataclass
class SplitVectors:
    """One split of a task, encoded: row i of vectors_a[p] / vectors_b[p] is pair i under pooling p."""

    task: str
    split: str
    pairs: list[Pair]
    vectors_a: dict[str, np.ndarray]  # str(pooling), the name rows hold -> (n, d) float32, sentence1
    vectors_b: dict[str, np.ndarray]  # str(pooling) -> (n, d) float32, sentence2

    @property
    def gold_scores(self) -> np.ndarray:
        """(n,) float64 gold labels."""
        return np.array([pair.score for pair in self.pairs], dtype=np.float64)

    def all_vectors(self, pooling: str) -> np.ndarray:  # the pooling's name, as the dicts are keyed
        """(2n, d) sentence1 and sentence2 vectors stacked: the sentences whitening statistics use."""
        return np.concatenate([self.vectors_a[pooling], self.vectors_b[pooling]])


def encode_splits(
    encoder,
    spec: TaskSpec,
    splits: list[str],
    poolings: Sequence[Pooling],
    data_dir: Path,
    prefix: str = "",
    batch_size: int = 64,
    cache=None,
    show_progress: bool = True,
    max_pairs: int | None = None,
    sample_seed: int = 0,
) -> dict[str, SplitVectors]:
    """Encode every sentence of the given splits of one task in a single deduplicated pass.

    Args:
        encoder: from `stseval.encoders.encoder.load_encoder` (any `SentenceEncoder`).
        spec: the task; its max_length (64, PAWSX 128) is used.
        splits: split names, e.g. ["valid", "test"].
        poolings: `Pooling` values the encoder supports (`can_pool`), parsed once where the option was read;
            the vectors come back keyed by their names, `str(pooling)`.
        max_pairs: keep a seeded random sample of at most this many pairs per split (file order kept),
            for settings where encoding a whole split costs too much; None keeps every pair.
    Returns:
        split name -> SplitVectors.
    """
    from stseval.encoders.encoder import encode  # torch stays out of array-only users of this module
    from stseval.encoders.vectors import MissingSentencesError

    pairs_by_split = {
        split: sample_pairs(load_pairs(spec, split, data_dir), max_pairs, sample_seed) for split in splits
    }
    texts = [text for pairs in pairs_by_split.values() for pair in pairs for text in (pair.sentence1, pair.sentence2)]
    try:
        vectors = encode(encoder, texts, list(poolings), max_length=spec.max_length, prefix=prefix,
                         batch_size=batch_size, cache=cache, show_progress=show_progress)
    except MissingSentencesError as err:  # precomputed vectors (vectors:DIR) lacking some: say for which task
        raise StsevalError(f"{spec.name} {'+'.join(splits)}: {err}") from None
    result, start = {}, 0
    for split, pairs in pairs_by_split.items():
        stop = start + 2 * len(pairs)
        result[split] = SplitVectors(
            task=spec.name, split=split, pairs=pairs,
            vectors_a={p: v[start:stop:2] for p, v in vectors.items()},
            vectors_b={p: v[start + 1:stop:2] for p, v in vectors.items()},
        )
        start = stop
    return result


def sample_pairs(pairs: list[Pair], max_pairs: int | None, seed: int = 0) -> list[Pair]:
    """A seeded random subset of at most max_pairs pairs, in their file order; None keeps all."""
    if max_pairs is None or len(pairs) <= max_pairs:
        return pairs
    keep = np.sort(np.random.default_rng(seed).choice(len(pairs), size=max_pairs, replace=False))
    return [pairs[index] for index in keep]


def split_label(split: str, max_pairs: int | None) -> str:
    """The split as results rows name it: 'test', or 'test-sample1000' for a seeded sample."""
    return split if max_pairs is None else f"{split}-sample{max_pairs}"


@dataclass
class Score:
    spearman: float  # NaN when undefined, with the reason in `undefined`
    ci_low: float
    ci_high: float
    n_pairs: int
    undefined: str = ""  # why spearman is NaN (metrics.undefined_reason); "" when it is a number


def score_pairs(vectors_a: np.ndarray, vectors_b: np.ndarray, gold_scores: np.ndarray,
                n_resamples: int = 1000, seed: int = 0, normalize: bool = True) -> Score:
    """Spearman of cosine vs gold with a seeded bootstrap 95% interval; n_resamples=0 skips the interval.

    normalize=False scores the plain dot product instead of the cosine (whitened vectors left unnormalised).
    """
    if normalize:
        predicted = cosine_scores(vectors_a, vectors_b)
    else:
        predicted = (vectors_a.astype(np.float64) * vectors_b).sum(axis=1)
    reason = undefined_reason(predicted, gold_scores)
    if reason:  # no correlation to bootstrap either
        return Score(np.nan, np.nan, np.nan, len(gold_scores), reason)
    low, high = (bootstrap_ci(predicted, gold_scores, n_resamples=n_resamples, seed=seed) if n_resamples
                 else (np.nan, np.nan))
    return Score(spearman(predicted, gold_scores), low, high, len(gold_scores))
