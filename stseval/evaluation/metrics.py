"""Spearman correlation of cosine similarity against gold scores, as in Su's eval.py and mteb.

Pure functions over numpy arrays: no I/O, no printing, randomness only through an explicit seed.
"""

from __future__ import annotations

import numpy as np

from stseval.common.arrays import l2_normalize  # here too for callers of metrics.l2_normalize (api)

# scipy.stats is imported inside the functions that use it: ~1 s of start-up that `index search` never needs


def cosine_scores(vectors_a: np.ndarray, vectors_b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two aligned sets of vectors.

    Args:
        vectors_a: (n, d) vectors of sentence1.
        vectors_b: (n, d) vectors of sentence2, row i paired with row i of vectors_a.
    Returns:
        (n,) float64 cosine similarities.
    """
    if vectors_a.shape != vectors_b.shape:
        raise ValueError(f"shape mismatch: {vectors_a.shape} vs {vectors_b.shape}")
    # the dot product of L2-normalised vectors is the cosine
    products = l2_normalize(vectors_a).astype(np.float64) * l2_normalize(vectors_b)
    return products.sum(axis=1)


def spearman(predicted_scores: np.ndarray, gold_scores: np.ndarray) -> float:
    """Spearman rank correlation (scipy, ties averaged), the main score of every STS task here.

    Args:
        predicted_scores: (n,) similarities.
        gold_scores: (n,) gold labels (0/1 or 0-5).
    Returns:
        correlation in [-1, 1]; NaN when either side is constant.
    """
    from scipy import stats

    return float(stats.spearmanr(predicted_scores, gold_scores).statistic)


def undefined_reason(predicted_scores: np.ndarray, gold_scores: np.ndarray) -> str:
    """Why the Spearman of these scores is undefined (NaN), or "" when it is defined.

    A rank correlation needs both sides to vary: constant gold labels (a split whose labels are all 3)
    or constant similarities (every pair's vectors identical, or all vectors the same) leave it 0/0.

    Args:
        predicted_scores: (n,) similarities.
        gold_scores: (n,) gold labels.
    Returns:
        e.g. "gold scores are constant (all 3) over 40 pairs", or "".
    """
    predicted, gold = np.asarray(predicted_scores, dtype=np.float64), np.asarray(gold_scores, dtype=np.float64)
    if len(gold) < 2:
        return f"{len(gold)} pair(s): a rank correlation needs at least 2"
    if np.all(gold == gold[0]):
        return f"gold scores are constant (all {gold[0]:g}) over {len(gold)} pairs"
    if np.all(predicted == predicted[0]):
        return f"predicted similarities are constant (all {predicted[0]:.6g}) over {len(gold)} pairs"
    if not (np.isfinite(predicted).all() and np.isfinite(gold).all()):
        return "scores that are not finite numbers"
    return ""


def spearman_cosine(vectors_a: np.ndarray, vectors_b: np.ndarray, gold_scores: np.ndarray) -> float:
    """Spearman of row-wise cosine similarity against gold scores (Su 2021; mteb's cosine_spearman).

    Args:
        vectors_a: (n, d) sentence1 vectors.
        vectors_b: (n, d) sentence2 vectors.
        gold_scores: (n,) gold labels.
    Returns:
        Spearman correlation in [-1, 1] (multiply by 100 for Su's tables).

    Example:
        >>> a = np.eye(3, dtype=np.float32); spearman_cosine(a, a, np.array([1, 2, 3]))
        nan
    """
    return spearman(cosine_scores(vectors_a, vectors_b), gold_scores)


def bootstrap_ci(
    predicted_scores: np.ndarray,
    gold_scores: np.ndarray,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the Spearman correlation, resampling pairs with replacement.

    Two methods scored on the same pairs whose intervals overlap widely are not shown to differ.

    Args:
        predicted_scores: (n,) similarities.
        gold_scores: (n,) gold labels.
        n_resamples: bootstrap resamples.
        confidence: interval level, 0.95 for a 95% interval.
        seed: seeds the resampling, so the same inputs give the same interval.
    Returns:
        (low, high) correlation bounds.
    """
    return _paired_percentile_interval((np.asarray(predicted_scores), np.asarray(gold_scores)),
                                       lambda predicted, gold, axis=-1: _spearman_along(predicted, gold, axis),
                                       n_resamples, confidence, seed)


def paired_difference_ci(
    predicted_scores: np.ndarray,
    baseline_scores: np.ndarray,
    gold_scores: np.ndarray,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Spearman(predicted) - Spearman(baseline) on the same pairs, with a paired percentile bootstrap interval.

    Each resample draws the same pairs for both methods, so the interval is that of the difference:
    two methods whose own intervals overlap can still differ significantly (and vice versa).

    Args:
        predicted_scores: (n,) similarities of the method, e.g. after SimCSE.
        baseline_scores: (n,) similarities of the baseline on the same pairs, e.g. raw.
        gold_scores: (n,) gold labels.
        n_resamples, confidence, seed: as `bootstrap_ci`.
    Returns:
        (difference, low, high); an interval that excludes 0 means the difference is established
        at that level on these pairs.
    """
    predicted, baseline, gold = (np.asarray(values) for values in (predicted_scores, baseline_scores, gold_scores))
    difference = spearman(predicted, gold) - spearman(baseline, gold)
    low, high = _paired_percentile_interval(
        (predicted, baseline, gold),
        lambda ours, base, labels, axis=-1: _spearman_along(ours, labels, axis) - _spearman_along(base, labels, axis),
        n_resamples, confidence, seed)
    return float(difference), low, high


def _paired_percentile_interval(samples: tuple[np.ndarray, ...], statistic, n_resamples: int, confidence: float,
                                seed: int) -> tuple[float, float]:
    """scipy's percentile bootstrap, resampling the same pair indices in every array of `samples`."""
    from scipy import stats

    result = stats.bootstrap(
        samples,
        statistic,
        paired=True,
        vectorized=True,
        n_resamples=n_resamples,
        confidence_level=confidence,
        # BCa needs a jackknife of n Spearman fits: far too slow for 20k pairs
        method="percentile",
        batch=50,
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _spearman_along(predicted: np.ndarray, gold: np.ndarray, axis: int) -> np.ndarray:
    """Spearman of each resample (rows of a (b, n) batch): Pearson correlation of average ranks."""
    from scipy import stats

    predicted_ranks = stats.rankdata(predicted, axis=axis)
    gold_ranks = stats.rankdata(gold, axis=axis)
    predicted_ranks -= predicted_ranks.mean(axis=axis, keepdims=True)
    gold_ranks -= gold_ranks.mean(axis=axis, keepdims=True)
    numerator = (predicted_ranks * gold_ranks).sum(axis=axis)
    denominator = np.sqrt((predicted_ranks**2).sum(axis=axis) * (gold_ranks**2).sum(axis=axis))
    return numerator / denominator
