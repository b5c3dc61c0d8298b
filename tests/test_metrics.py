import numpy as np
import pytest

from stseval.evaluation.metrics import bootstrap_ci, cosine_scores, spearman, spearman_cosine


def test_cosine_scores_hand_computed():
    a = np.array([[1.0, 0.0], [3.0, 4.0], [1.0, 1.0]], dtype=np.float32)
    b = np.array([[0.0, 2.0], [3.0, 4.0], [-1.0, -1.0]], dtype=np.float32)
    np.testing.assert_allclose(cosine_scores(a, b), [0.0, 1.0, -1.0], atol=1e-6)


def test_spearman_hand_computed():
    # ranks of predicted: 1,2,3,4 ; gold ranks: 1,3,2,4 -> d^2 = 0+1+1+0 = 2 -> 1 - 6*2/(4*15) = 0.8
    assert spearman(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0, 2, 1, 3])) == pytest.approx(0.8)


def test_spearman_with_ties_uses_average_ranks():
    # binary gold labels tie heavily, as in ATEC/BQ/LCQMC/PAWSX
    predicted = np.array([0.9, 0.1, 0.8, 0.2])
    gold = np.array([1, 0, 1, 0])
    assert spearman(predicted, gold) == pytest.approx(np.corrcoef([4, 1, 3, 2], [3.5, 1.5, 3.5, 1.5])[0, 1])


def test_identical_vectors_rank_perfectly():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 8)).astype(np.float32)
    b = a + 0.01 * rng.normal(size=(50, 8)).astype(np.float32) * np.arange(50)[:, None]
    # gold decreases as noise grows, so cosine ranks should match
    assert spearman_cosine(a, b, -np.arange(50)) > 0.9


def test_matches_sentence_transformers_evaluator():
    from sentence_transformers import SimilarityFunction
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    rng = np.random.default_rng(1)
    n, d = 200, 16
    a, b = rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(n, d)).astype(np.float32)
    gold = rng.integers(0, 6, size=n).astype(float)
    sentences1 = [f"a{i}" for i in range(n)]
    sentences2 = [f"b{i}" for i in range(n)]
    lookup = {**dict(zip(sentences1, a, strict=True)), **dict(zip(sentences2, b, strict=True))}

    class FixedModel:
        """Stands in for a SentenceTransformer: returns the fixed vectors of the test."""
        similarity_fn_name = "cosine"

        class model_card_data:
            @staticmethod
            def set_evaluation_metrics(*args, **kwargs):
                pass

        def encode(self, sentences, **kwargs):
            return np.stack([lookup[s] for s in sentences])

    evaluator = EmbeddingSimilarityEvaluator(sentences1, sentences2, gold.tolist(),
                                             main_similarity=SimilarityFunction.COSINE)
    embeddings1, embeddings2 = FixedModel().encode(sentences1), FixedModel().encode(sentences2)
    metrics = evaluator(FixedModel())
    key = next(k for k in metrics if k.endswith("spearman_cosine"))
    assert spearman_cosine(embeddings1, embeddings2, gold) == pytest.approx(metrics[key], abs=1e-6)


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(2)
    gold = rng.integers(0, 2, size=2000)
    predicted = gold + rng.normal(size=2000)
    first = bootstrap_ci(predicted, gold, n_resamples=200, seed=7)
    again = bootstrap_ci(predicted, gold, n_resamples=200, seed=7)
    other = bootstrap_ci(predicted, gold, n_resamples=200, seed=8)
    assert first == again
    assert first != other
    estimate = spearman(predicted, gold)
    assert first[0] < estimate < first[1]
    assert first[1] - first[0] < 0.1


def test_paired_difference_ci_finds_a_small_consistent_gain_that_separate_intervals_miss():
    from stseval.evaluation.metrics import bootstrap_ci, paired_difference_ci

    rng = np.random.default_rng(0)
    gold = rng.normal(size=400)
    noise = rng.normal(size=400)
    baseline = gold + 1.5 * noise
    better = gold + 1.3 * noise  # the same noise, a little less of it: better on every resample
    difference, low, high = paired_difference_ci(better, baseline, gold, n_resamples=500, seed=0)
    assert difference == pytest.approx(spearman(better, gold) - spearman(baseline, gold))
    assert 0 < low <= difference <= high
    base_low, base_high = bootstrap_ci(baseline, gold, n_resamples=500, seed=0)
    better_low, better_high = bootstrap_ci(better, gold, n_resamples=500, seed=0)
    assert better_low < base_high  # the two separate intervals overlap
    same, same_low, same_high = paired_difference_ci(baseline, baseline, gold, n_resamples=200, seed=0)
    assert same == same_low == same_high == 0.0


@pytest.mark.parametrize("predicted, gold, reason", [
    ([0.1, 0.5, 0.9], [3.0, 3.0, 3.0], "gold scores are constant (all 3) over 3 pairs"),
    ([0.7, 0.7, 0.7], [0.0, 1.0, 1.0], "predicted similarities are constant (all 0.7) over 3 pairs"),
    ([0.7], [1.0], "1 pair(s): a rank correlation needs at least 2"),
    ([0.1, 0.5, 0.9], [0.0, 1.0, 1.0], ""),
])
def test_undefined_spearman_says_why(predicted, gold, reason):
    from stseval.evaluation.metrics import undefined_reason

    assert undefined_reason(np.array(predicted), np.array(gold)) == reason
    assert np.isnan(spearman(np.array(predicted), np.array(gold))) == bool(reason)


def test_a_score_of_identical_vectors_is_undefined_and_has_no_interval(rng):
    from stseval.evaluation.scoring import score_pairs

    vectors = np.tile(rng.normal(size=(1, 8)).astype(np.float32), (20, 1))  # every sentence the same vector
    score = score_pairs(vectors, vectors, rng.integers(0, 2, size=20).astype(float), n_resamples=50)
    assert np.isnan([score.spearman, score.ci_low, score.ci_high]).all() and score.n_pairs == 20
    assert score.undefined.startswith("predicted similarities are constant")
