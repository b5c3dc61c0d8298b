"""evaluation/scoring.py: a split's pairs encoded once, and Spearman of cosine vs gold with its interval."""

from __future__ import annotations

import numpy as np
import pytest

from stseval.data.tasks import TASKS, Pair, split_path
from stseval.evaluation.scoring import SplitVectors, encode_splits, sample_pairs, score_pairs, split_label

# Spearman of a perfectly monotone relation is 1 up to the rounding of a Pearson over 20 ranks (sums of
# ~20 products near 1e2, each exact in float64, then one division and a sqrt): far below 1e-12.
EXACT = 1e-12


def rotated_pairs(n: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs whose cosine falls as i grows (angle i * 4 degrees) while the dot product rises (lengths 10^i)."""
    angles = np.radians(4.0 * np.arange(n))
    vectors_a = np.tile([1.0, 0.0], (n, 1)).astype(np.float32)
    lengths = 10.0 ** np.arange(n, dtype=np.float64) / 1e9  # float32 holds 1e-9..1e10 with 7 digits
    vectors_b = (lengths[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)).astype(np.float32)
    gold = np.cos(angles)  # gold follows the cosine
    return vectors_a, vectors_b, gold


def test_score_is_spearman_of_cosine_against_gold():
    vectors_a, vectors_b, gold = rotated_pairs()
    score = score_pairs(vectors_a, vectors_b, gold, n_resamples=0)
    assert score.spearman == pytest.approx(1.0, abs=EXACT)
    assert score.n_pairs == 20 and score.undefined == ""
    assert np.isnan(score.ci_low) and np.isnan(score.ci_high)  # n_resamples=0: no interval
    assert score_pairs(vectors_a, vectors_b, -gold, n_resamples=0).spearman == pytest.approx(-1.0, abs=EXACT)


def test_unnormalized_scores_rank_by_the_dot_product():
    vectors_a, vectors_b, gold = rotated_pairs()
    # the lengths grow 10x per pair while the cosine falls: the dot product ranks the pairs the other way round
    assert score_pairs(vectors_a, vectors_b, gold, n_resamples=0, normalize=False).spearman == \
        pytest.approx(-1.0, abs=EXACT)


def test_interval_is_seeded_and_brackets_the_score(rng):
    n = 200
    gold = rng.normal(size=n)
    vectors_a = rng.normal(size=(n, 8)).astype(np.float32)
    vectors_b = (vectors_a + rng.normal(size=(n, 8)) * (1.5 - np.tanh(gold))[:, None]).astype(np.float32)
    first = score_pairs(vectors_a, vectors_b, gold, n_resamples=200, seed=3)
    again = score_pairs(vectors_a, vectors_b, gold, n_resamples=200, seed=3)
    other = score_pairs(vectors_a, vectors_b, gold, n_resamples=200, seed=4)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)  # same seed, same numbers
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)
    assert first.spearman == other.spearman  # the point estimate does not resample
    assert first.ci_low < first.spearman < first.ci_high


def test_sample_pairs_keeps_file_order_and_is_seeded():
    pairs = [Pair(f"a{i}", f"b{i}", float(i % 2)) for i in range(100)]
    assert sample_pairs(pairs, None) is pairs and sample_pairs(pairs, 100) is pairs
    sample = sample_pairs(pairs, 10, seed=0)
    positions = [pairs.index(pair) for pair in sample]
    assert len(sample) == 10 and positions == sorted(positions) and len(set(positions)) == 10
    assert sample_pairs(pairs, 10, seed=0) == sample
    assert sample_pairs(pairs, 10, seed=1) != sample


def test_split_label_names_a_sample_by_its_size():
    assert split_label("test", None) == "test"
    assert split_label("valid", 1000) == "valid-sample1000"


class CodeCounts:
    """A SentenceEncoder whose 8-d vector counts character codes mod 8; it records what it was asked."""

    name, fingerprint, dimension = "code-counts-8", "code-counts-8-v1", 8

    def __init__(self):
        self.texts: list[str] = []

    def supports(self, pooling: str) -> bool:
        return pooling == "sentence"

    def embed_batches(self, texts, poolings, max_length, batch_size):
        self.texts += list(texts)
        yield np.arange(len(texts)), {"sentence": self.vector(texts)}

    @staticmethod
    def vector(texts) -> np.ndarray:
        return np.stack([np.bincount([ord(c) % 8 for c in text], minlength=8) for text in texts]).astype(np.float32)


def test_encode_splits_encodes_each_sentence_once_and_aligns_rows_with_pairs(tmp_path):
    spec = TASKS["BQ"]
    lines = {"valid": "甲乙\t丙丁\t1\n丙丁\t戊\t0\n", "test": "甲乙\t己\t0\n庚辛\t丙丁\t1\n壬\t癸\t1\n"}
    for split, text in lines.items():
        path = split_path(spec, split, tmp_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    encoder = CodeCounts()

    out = encode_splits(encoder, spec, ["valid", "test"], ["sentence"], tmp_path, show_progress=False)

    assert sorted(encoder.texts) == sorted({"甲乙", "丙丁", "戊", "己", "庚辛", "壬", "癸"})  # each text once
    assert list(out) == ["valid", "test"]
    test = out["test"]
    assert isinstance(test, SplitVectors) and (test.task, test.split) == ("BQ", "test")
    assert [pair.sentence1 for pair in test.pairs] == ["甲乙", "庚辛", "壬"]
    np.testing.assert_array_equal(test.vectors_a["sentence"], CodeCounts.vector(["甲乙", "庚辛", "壬"]))
    np.testing.assert_array_equal(test.vectors_b["sentence"], CodeCounts.vector(["己", "丙丁", "癸"]))
    np.testing.assert_array_equal(test.gold_scores, [0.0, 1.0, 1.0])
    np.testing.assert_array_equal(test.all_vectors("sentence"),
                                  CodeCounts.vector(["甲乙", "庚辛", "壬", "己", "丙丁", "癸"]))


def test_encode_splits_samples_as_sample_pairs_does(tmp_path):
    spec = TASKS["BQ"]
    path = split_path(spec, "test", tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"句{i}\t答{i}\t{i % 2}\n" for i in range(30)), encoding="utf-8")
    from stseval.data.tasks import load_pairs

    out = encode_splits(CodeCounts(), spec, ["test"], ["sentence"], tmp_path, show_progress=False,
                        max_pairs=5, sample_seed=7)
    assert out["test"].pairs == sample_pairs(load_pairs(spec, "test", tmp_path), 5, seed=7)
    assert len(out["test"].vectors_a["sentence"]) == 5
