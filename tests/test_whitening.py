import numpy as np
import pytest
from sklearn.decomposition import PCA

from stseval.errors import StsevalError
from stseval.metrics import cosine_scores
from stseval.whitening import Whitening, apply_whitening, fit_whitening, load_whitening, save_whitening


@pytest.fixture
def correlated_vectors():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(500, 16)) @ rng.normal(size=(16, 16)) + 3.0).astype(np.float32)


def test_whitened_covariance_is_identity(correlated_vectors):
    mu, kernel = fit_whitening(correlated_vectors)
    whitened = apply_whitening(correlated_vectors, mu, kernel)
    np.testing.assert_allclose(whitened.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(np.cov(whitened.T), np.eye(16), atol=1e-3)


def test_truncation_keeps_largest_variance_directions(correlated_vectors):
    mu, kernel = fit_whitening(correlated_vectors, n_components=4)
    assert kernel.shape == (16, 4)
    full_mu, full_kernel = fit_whitening(correlated_vectors)
    np.testing.assert_allclose(kernel, full_kernel[:, :4], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_components", [16, 6])
def test_cosine_scores_equal_sklearn_pca_whiten(correlated_vectors, n_components):
    rng = np.random.default_rng(1)
    queries = correlated_vectors[:100] + rng.normal(size=(100, 16)).astype(np.float32)
    mu, kernel = fit_whitening(correlated_vectors, n_components)
    ours = cosine_scores(apply_whitening(correlated_vectors[:100], mu, kernel), apply_whitening(queries, mu, kernel))
    # sklearn's PCA uses the unbiased covariance too; whitened axes may differ in sign only
    pca = PCA(n_components=n_components, whiten=True, svd_solver="full").fit(correlated_vectors.astype(np.float64))
    theirs = cosine_scores(pca.transform(correlated_vectors[:100]), pca.transform(queries))
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_near_singular_covariance_stays_finite():
    rng = np.random.default_rng(2)
    low_rank = rng.normal(size=(50, 3)) @ rng.normal(size=(3, 32))  # rank 3 in 32 dims, n < d
    mu, kernel = fit_whitening(low_rank.astype(np.float32))
    assert np.isfinite(kernel).all()
    assert np.isfinite(apply_whitening(low_rank.astype(np.float32), mu, kernel)).all()


def test_dims_larger_than_vector_size_is_refused(correlated_vectors):
    with pytest.raises(StsevalError, match="--dims"):
        fit_whitening(correlated_vectors, n_components=17)


def test_save_load_round_trip(tmp_path, correlated_vectors):
    mu, kernel = fit_whitening(correlated_vectors, 8)
    saved = Whitening(mu, kernel, {"model": "tiny", "fit_on": "test", "n_fit_vectors": 500})
    save_whitening(saved, tmp_path / "w.npz")
    loaded = load_whitening(tmp_path / "w.npz")
    assert loaded.provenance == saved.provenance
    assert loaded.n_components == 8
    np.testing.assert_array_equal(loaded.apply(correlated_vectors), saved.apply(correlated_vectors))
    assert not list(tmp_path.glob(".*tmp*"))


def test_load_rejects_a_file_that_is_not_a_whitening(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, something=np.zeros(3))
    with pytest.raises(StsevalError, match="bad.npz"):
        load_whitening(bad)


def test_apply_refuses_wrong_dimension(correlated_vectors):
    mu, kernel = fit_whitening(correlated_vectors)
    with pytest.raises(StsevalError, match="16-d"):
        apply_whitening(np.zeros((2, 8), dtype=np.float32), mu, kernel)
