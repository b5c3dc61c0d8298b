import numpy as np
import pytest
from sklearn.decomposition import PCA

from stseval.common.errors import StsevalError
from stseval.evaluation.metrics import cosine_scores
from stseval.methods.whitening import (
    Whitening,
    apply_whitening,
    fit_whitening,
    fit_whitening_basis,
    load_whitening,
    mean_and_covariance,
    save_whitening,
)


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


def _old_in_memory_fit(vectors, n_components=None):
    """The fit as it was before streaming: np.cov of the whole centred array, then an SVD."""
    x = np.asarray(vectors, dtype=np.float64)
    mu = x.mean(axis=0, keepdims=True)
    u, s, _ = np.linalg.svd(np.cov((x - mu).T))
    s = np.maximum(s, s[0] * 1e-10)
    return mu, (u / np.sqrt(s))[:, :n_components]


@pytest.fixture
def embedding_like():
    """Vectors shaped like sentence embeddings: a large shared mean (anisotropy), a decaying
    spectrum, and pairs whose gold score follows their latent similarity; (vectors, a, b, gold)."""
    rng = np.random.default_rng(3)
    dim, n_pairs = 64, 1500
    basis = np.linalg.qr(rng.normal(size=(dim, dim)))[0] * (1.0 / np.arange(1, dim + 1)) @ rng.normal(size=(dim, dim))
    offset = 5.0 * rng.normal(size=dim)
    latent_a = rng.normal(size=(n_pairs, dim))
    gold = rng.uniform(size=n_pairs)
    latent_b = gold[:, None] * latent_a + (1 - gold[:, None]) * rng.normal(size=(n_pairs, dim))
    a = (latent_a @ basis + offset).astype(np.float32)
    b = (latent_b @ basis + offset).astype(np.float32)
    return np.concatenate([a, b]), a, b, gold


def test_streamed_fit_equals_in_memory_fit(embedding_like):
    vectors, a, b, gold = embedding_like
    whole_mu, whole_kernel = fit_whitening(vectors)
    old_mu, old_kernel = _old_in_memory_fit(vectors)
    chunks = (vectors[start : start + 97] for start in range(0, len(vectors), 97))  # a generator, odd sizes
    chunk_mu, chunk_kernel = fit_whitening(chunks)
    small_mu, small_kernel = fit_whitening(vectors, chunk_rows=128)  # an array read 128 rows at a time
    for mu, kernel in ((chunk_mu, chunk_kernel), (small_mu, small_kernel)):  # float32: equal up to rounding
        np.testing.assert_allclose(mu, whole_mu, rtol=1e-6)
        np.testing.assert_allclose(kernel, whole_kernel, rtol=0, atol=1e-6 * np.abs(whole_kernel).max())
    # the float64 statistics behind them agree to 1e-10 with the whole-array formula
    n_rows, mean, covariance = mean_and_covariance(iter([vectors[:1000], vectors[1000:]]), chunk_rows=333)
    x = vectors.astype(np.float64)
    assert n_rows == len(vectors)
    np.testing.assert_allclose(mean, x.mean(axis=0, keepdims=True), rtol=1e-10)
    np.testing.assert_allclose(covariance, np.cov(x.T), rtol=0, atol=1e-10 * np.abs(np.cov(x.T)).max())
    # against the old whole-array formula: same whitening (the inverse covariance K K^T), signs aside
    np.testing.assert_allclose(whole_mu, old_mu, rtol=1e-6)
    np.testing.assert_allclose(chunk_kernel.astype(np.float64) @ chunk_kernel.T, old_kernel @ old_kernel.T,
                               rtol=1e-4, atol=1e-6 * np.abs(old_kernel @ old_kernel.T).max())
    from stseval.evaluation.metrics import spearman

    def whitened_spearman(mu, kernel):
        return spearman(cosine_scores(apply_whitening(a, mu, kernel), apply_whitening(b, mu, kernel)), gold)

    assert abs(whitened_spearman(chunk_mu, chunk_kernel) - whitened_spearman(whole_mu, whole_kernel)) < 1e-6
    old = whitened_spearman(old_mu.astype(np.float32), old_kernel.astype(np.float32))
    assert abs(whitened_spearman(chunk_mu, chunk_kernel) - old) < 1e-6


def test_fit_reads_a_memory_mapped_npy_and_its_path(tmp_path, embedding_like):
    vectors = embedding_like[0]
    np.save(tmp_path / "v.npy", vectors)
    expected_mu, expected_kernel = fit_whitening(vectors, 16)
    for source in (np.load(tmp_path / "v.npy", mmap_mode="r"), tmp_path / "v.npy", str(tmp_path / "v.npy")):
        mu, kernel = fit_whitening(source, 16, chunk_rows=500)
        np.testing.assert_allclose(mu, expected_mu, atol=1e-6)
        np.testing.assert_allclose(kernel, expected_kernel, atol=1e-6)


def test_far_from_origin_vectors_keep_their_covariance(correlated_vectors):
    """Gram-minus-mean accumulation would cancel catastrophically at an offset of 1e5; the shift must not."""
    far = correlated_vectors.astype(np.float64) + 1e5
    mu, kernel = fit_whitening(far, chunk_rows=64)
    whitened = (far - mu.astype(np.float64)) @ kernel.astype(np.float64)
    np.testing.assert_allclose(np.cov(whitened.T), np.eye(16), atol=1e-3)


def test_fit_refuses_mixed_dimensions_and_too_few_vectors(tmp_path):
    with pytest.raises(StsevalError, match="8-d and 4-d"):
        fit_whitening([np.zeros((3, 8)), np.zeros((3, 4))])
    with pytest.raises(StsevalError, match="at least 2 vectors"):
        fit_whitening(iter([np.zeros((1, 8)), np.zeros((0, 8))]))
    (tmp_path / "not.npy").write_text("hello")
    with pytest.raises(StsevalError, match="not.npy"):
        fit_whitening(tmp_path / "not.npy")


def _cosines(vectors: np.ndarray) -> np.ndarray:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit @ unit.T


def test_beta_gamma_one_is_bert_whitening(correlated_vectors):
    mu, kernel = fit_whitening(correlated_vectors, n_components=8)
    general = fit_whitening_basis(correlated_vectors).whitening(beta=1.0, gamma=1.0, n_components=8)
    np.testing.assert_allclose(general.apply(correlated_vectors), apply_whitening(correlated_vectors, mu, kernel),
                               rtol=1e-5, atol=1e-5)


def test_beta_gamma_zero_is_a_rotation_that_keeps_every_cosine(correlated_vectors):
    rotation = fit_whitening_basis(correlated_vectors).whitening(beta=0.0, gamma=0.0)
    rotated = rotation.apply(correlated_vectors)
    np.testing.assert_allclose(np.linalg.norm(rotated, axis=1), np.linalg.norm(correlated_vectors, axis=1), rtol=1e-4)
    np.testing.assert_allclose(_cosines(rotated), _cosines(correlated_vectors), atol=1e-5)
    # truncated, it is the PCA projection (up to each axis' sign) without centring
    projected = fit_whitening_basis(correlated_vectors).whitening(0.0, 0.0, n_components=4).apply(correlated_vectors)
    axes = PCA(n_components=4).fit(correlated_vectors).components_.T
    np.testing.assert_allclose(np.abs(projected), np.abs(correlated_vectors @ axes), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0])
def test_gamma_sets_the_power_of_the_eigenvalues_left(correlated_vectors, gamma):
    basis = fit_whitening_basis(correlated_vectors)
    whitened = basis.whitening(beta=1.0, gamma=gamma).apply(correlated_vectors)
    np.testing.assert_allclose(whitened.mean(axis=0), 0, atol=1e-3)
    # covariance after the map: diag(S^(1 - gamma))
    np.testing.assert_allclose(np.diag(np.cov(whitened.T)), basis.eigenvalues ** (1 - gamma), rtol=2e-3)


def test_beta_half_subtracts_half_the_mean(correlated_vectors):
    basis = fit_whitening_basis(correlated_vectors)
    half = basis.whitening(beta=0.5, gamma=1.0).apply(correlated_vectors)
    full = basis.whitening(beta=1.0, gamma=1.0).apply(correlated_vectors)
    shift = (0.5 * basis.mu) @ basis.whitening(1.0, 1.0).kernel
    np.testing.assert_allclose(half - full, np.broadcast_to(shift, full.shape), rtol=1e-4, atol=1e-4)


def test_saved_whitening_carries_beta_and_gamma(tmp_path, correlated_vectors):
    saved = fit_whitening_basis(correlated_vectors).whitening(beta=0.5, gamma=0.25, n_components=6).truncate(3)
    path = tmp_path / "kernel.npz"
    save_whitening(saved, path)
    loaded = load_whitening(path)
    assert (loaded.beta, loaded.gamma, loaded.n_components) == (0.5, 0.25, 3)
    np.testing.assert_array_equal(loaded.apply(correlated_vectors), saved.apply(correlated_vectors))


def test_a_file_saved_before_beta_gamma_loads_as_bert_whitening(tmp_path, correlated_vectors):
    mu, kernel = fit_whitening(correlated_vectors)
    path = tmp_path / "old.npz"
    np.savez(path, mu=mu, kernel=kernel, provenance=np.array("{}"))
    loaded = load_whitening(path)
    assert (loaded.beta, loaded.gamma) == (1.0, 1.0)
    np.testing.assert_allclose(loaded.apply(correlated_vectors), apply_whitening(correlated_vectors, mu, kernel))


def test_basis_rank_counts_the_directions_the_fit_saw():
    rng = np.random.default_rng(1)
    flat = rng.normal(size=(200, 3)) @ rng.normal(size=(3, 10))  # 10-d vectors in a 3-d subspace
    assert fit_whitening_basis(flat).rank == 3
    assert fit_whitening_basis(rng.normal(size=(5, 10))).rank == 4  # 5 vectors span 4 directions around their mean
