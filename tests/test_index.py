"""FAISS build/search, retrieval metrics, dimension reduction, index folders and the sweep."""

import json
import math
import re

import faiss
import numpy as np
import pandas as pd
import pytest

from stseval.common.errors import StsevalError
from stseval.common.settings import Pooling
from stseval.data.tasks import TASKS, Pair
from stseval.evaluation.index_eval import evaluate_retrieval
from stseval.evaluation.retrieval import exclude_self, positive_min_score, retrieval_metrics, retrieval_set, su_min_dims
from stseval.methods.index import (
    IndexMetadata,
    LoadedIndex,
    build_index,
    check_query_settings,
    load_index,
    save_index,
    search,
    truncate_dims,
    whiten_dims,
    whitening_digest,
)
from stseval.methods.whitening import Whitening, fit_whitening
from stseval.runs.results import COLUMNS
from tiny_models import SENTENCES, make_bert


@pytest.fixture(autouse=True)
def one_faiss_thread():
    """One FAISS thread: results do not depend on the machine, and OpenMP does not spin on a busy CPU."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


@pytest.fixture
def clustered_vectors(rng):
    """(2000, 32) float32: 40 clusters, so approximate indexes have structure to find."""
    centres = rng.normal(size=(40, 32))
    return (centres[rng.integers(0, 40, size=2000)] + 0.3 * rng.normal(size=(2000, 32))).astype(np.float32)


def _unit_circle(degrees):
    """(n, 2) unit vectors at the given angles: cosine ranks are read off the angle gaps."""
    radians = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# retrieval set and metrics on hand-computed toy cases


def test_retrieval_set_takes_positives_dedupes_and_keeps_every_sentence():
    pairs = [Pair("A", "B", 1), Pair("C", "D", 1), Pair("A", "E", 0), Pair("F", "F", 1), Pair("A", "B", 1)]
    retrieval = retrieval_set(pairs, positive_min_score("binary"))
    assert retrieval.corpus == ["A", "B", "C", "D", "E", "F"]  # negatives' sentences are distractors
    assert retrieval.query_ids.tolist() == [0, 2, 5]  # the duplicate A-B counts once
    assert retrieval.relevant_ids.tolist() == [1, 3, 5]


def test_sts_b_positive_threshold_is_four():
    assert positive_min_score(TASKS["STS-B"].label_kind) == 4.0
    assert positive_min_score(TASKS["ATEC"].label_kind) == 1.0
    pairs = [Pair("a", "b", 3), Pair("c", "d", 4), Pair("e", "f", 5)]
    assert retrieval_set(pairs, positive_min_score("graded")).query_ids.tolist() == [2, 4]
    with pytest.raises(StsevalError, match="label_kind"):
        positive_min_score("ordinal")


def test_metrics_match_hand_computation():
    # relevant document (row 7) at rank 1, rank 3, rank 11 and nowhere in the top 100
    ranked = np.tile(np.arange(100, 200), (4, 1))
    ranked[0, 0], ranked[1, 2], ranked[2, 10] = 7, 7, 7
    metrics = retrieval_metrics(ranked, np.full(4, 7))
    assert metrics["recall@1"] == pytest.approx(1 / 4)
    assert metrics["recall@10"] == pytest.approx(2 / 4)
    assert metrics["recall@100"] == pytest.approx(3 / 4)
    assert metrics["mrr@10"] == pytest.approx((1 + 1 / 3) / 4)
    assert metrics["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / 4)  # rank 3: 1/log2(3+1) = 0.5


def test_exclude_self_drops_own_sentence_unless_it_is_the_answer():
    ids = np.array([[0, 4, 1, 9], [5, 2, 3, 9]])
    # query 0 (relevant 1): its own row 0 is dropped; query 5 is a sentence1 == sentence2 pair: kept
    ranked = exclude_self(ids, np.array([0, 5]), np.array([1, 5]), top_k=3)
    assert ranked.tolist() == [[4, 1, 9], [5, 2, 3]]


def test_evaluate_retrieval_end_to_end_on_toy_geometry():
    pairs = [Pair("A", "B", 1), Pair("C", "D", 1), Pair("A", "E", 0), Pair("F", "F", 1)]
    retrieval = retrieval_set(pairs, 1.0)
    # corpus rows A B C D E F at these angles; cosine order = angular distance order
    vectors = _unit_circle([0, 10, 50, 105, 20, 180])
    measured = evaluate_retrieval(vectors, retrieval, top_k=100, timing_batch=8, min_runs=1, min_time_s=0.0)
    # A -> B(10°) rank 1 (A itself excluded); C -> E(30) B(40) A(50) D(55): rank 4; F -> itself: rank 1
    assert measured["recall@1"] == pytest.approx(2 / 3)
    assert measured["recall@10"] == pytest.approx(1.0)
    assert measured["mrr@10"] == pytest.approx((1 + 1 / 4 + 1) / 3)
    assert measured["ndcg@10"] == pytest.approx((1 + 1 / math.log2(5) + 1) / 3)
    assert measured["qps"] > 0 and measured["index_bytes"] > 0


# ---------------------------------------------------------------------------------------------
# build and search


def test_flat_index_is_exact_cosine(clustered_vectors):
    index = build_index(clustered_vectors)
    scores, ids = search(index, clustered_vectors[:5], top_k=3)
    unit = clustered_vectors / np.linalg.norm(clustered_vectors, axis=1, keepdims=True)
    cosines = unit[:5] @ unit.T
    np.testing.assert_array_equal(ids, np.argsort(-cosines, axis=1)[:, :3])
    np.testing.assert_allclose(scores, np.sort(cosines, axis=1)[:, ::-1][:, :3], atol=1e-5)


def test_ivf_training_path_on_synthetic_data(clustered_vectors):
    exact_ids = search(build_index(clustered_vectors), clustered_vectors[:50], top_k=10)[1]
    ivf = build_index(clustered_vectors, "IVF16,Flat", search_params="nprobe=16", seed=1)
    assert ivf.is_trained and ivf.ntotal == 2000
    np.testing.assert_array_equal(search(ivf, clustered_vectors[:50], top_k=10)[1], exact_ids)  # all lists probed
    ivfpq = build_index(clustered_vectors, "IVF8,PQ16", search_params="nprobe=8", seed=1)
    approximate_ids = search(ivfpq, clustered_vectors[:50], top_k=10)[1]
    assert (approximate_ids[:, 0] == np.arange(50)).mean() > 0.9  # each vector still finds itself
    found = [len(set(a) & set(e)) / 10 for a, e in zip(approximate_ids, exact_ids, strict=True)]
    assert np.mean(found) > 0.5  # lossy codes: most of the exact top 10 is still found
    assert ivfpq.sa_code_size() < build_index(clustered_vectors).sa_code_size()  # PQ codes are smaller


def test_too_few_vectors_to_train_is_a_clear_error(clustered_vectors):
    with pytest.raises(StsevalError, match=r"IVF64,Flat.*64 inverted lists.*corpus has 50"):
        build_index(clustered_vectors[:50], "IVF64,Flat")
    with pytest.raises(StsevalError, match=r"256 centroids per PQ sub-quantizer.*corpus has 100"):
        build_index(clustered_vectors[:100], "IVF4,PQ8")
    with pytest.raises(StsevalError, match="could not parse"):
        build_index(clustered_vectors, "IVF4x")
    with pytest.raises(StsevalError, match="--search-params"):
        build_index(clustered_vectors, "HNSW32", search_params="nprobe=4")


# ---------------------------------------------------------------------------------------------
# truncation vs whitening


def test_truncation_keeps_first_dims_renormalised(rng):
    vectors = rng.normal(size=(100, 16)).astype(np.float32)
    truncated = truncate_dims(vectors, 4)
    assert truncated.shape == (100, 4)
    np.testing.assert_allclose(np.linalg.norm(truncated, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(truncated, vectors[:, :4] / np.linalg.norm(vectors[:, :4], axis=1, keepdims=True),
                               atol=1e-6)
    assert truncate_dims(vectors, None).shape == (100, 16)
    with pytest.raises(StsevalError, match="outside 1..16"):
        truncate_dims(vectors, 32)


def test_whitening_dims_use_the_top_k_directions_not_the_first_k_coordinates(rng):
    # variance lives in the last coordinates: truncation keeps noise, whitening keeps the signal
    scales = np.r_[np.full(12, 0.01), np.full(4, 5.0)]
    vectors = (rng.normal(size=(400, 16)) * scales).astype(np.float32)
    whitening = Whitening(*fit_whitening(vectors))
    whitened = whiten_dims(vectors, whitening, 4)
    assert whitened.shape == (400, 4)
    np.testing.assert_allclose(np.linalg.norm(whitened, axis=1), 1, atol=1e-5)
    mu, kernel4 = fit_whitening(vectors, 4)  # cutting the full kernel == fitting with k components
    np.testing.assert_allclose(whitened, whiten_dims(vectors, Whitening(mu, kernel4), None), atol=1e-5)
    # neighbours in 4 whitened dims agree with full-space neighbours; 4 truncated dims do not
    full_ids = search(build_index(vectors), vectors[:50], 2)[1][:, 1]
    whitened_ids = search(build_index(whitened), whitened[:50], 2)[1][:, 1]
    truncated = truncate_dims(vectors, 4)
    truncated_ids = search(build_index(truncated), truncated[:50], 2)[1][:, 1]
    assert (whitened_ids == full_ids).mean() > (truncated_ids == full_ids).mean() + 0.3


@pytest.mark.parametrize("n_items, published_dims", [(100_000, 96), (5_000_000, 128)])
def test_su_rule_gives_the_dimensions_su_quotes(n_items, published_dims):
    """The sweep plot's line is Su's n > 8.33 log N: he quotes about 96 dimensions for 100,000 items
    and 128 for 5 million ("最小熵原理（六）：词向量的维度应该怎么选择？", and again in
    https://kexue.fm/archives/8711). Two points pin both the factor and the natural log."""
    assert round(su_min_dims(n_items)) == published_dims


# ---------------------------------------------------------------------------------------------
# index folders


def _metadata(dims, n_vectors, whitening=None, **overrides):
    settings = dict(model="tiny", model_fingerprint="fp-1", pooling="last-avg", prefix="", max_length=64,
                    dims=dims, n_vectors=n_vectors, factory="HNSW32", corpus="toy")
    settings.update(overrides)
    if whitening is not None:
        settings["whitening"] = {"digest": whitening_digest(whitening), "n_components": whitening.n_components,
                                 "source": "fit on toy", "provenance": {}}
    return IndexMetadata(**settings)


def test_save_load_round_trip_gives_identical_search(tmp_path, clustered_vectors):
    sentences = [f"句子{i}\n带换行" if i == 3 else f"句子{i}" for i in range(len(clustered_vectors))]
    whitening = Whitening(*fit_whitening(clustered_vectors, 16))
    whitened = whitening.apply(clustered_vectors)
    index = build_index(whitened, "HNSW32", search_params="efSearch=64")
    save_index(tmp_path / "idx", index, sentences,
               _metadata(16, len(sentences), whitening, search_params="efSearch=64"), whitening)
    loaded = load_index(tmp_path / "idx")
    assert loaded.sentences == sentences
    assert loaded.metadata.search_params == "efSearch=64" and loaded.metadata.files
    assert whitening_digest(loaded.whitening) == whitening_digest(whitening)
    queries = loaded.whitening.apply(clustered_vectors[:100])
    before, after = search(index, queries, 10), search(loaded.index, queries, 10)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(before[0], after[0])
    assert not list((tmp_path / "idx").glob(".*tmp"))  # no temp files left behind


def test_tampered_or_missing_index_folder_is_refused(tmp_path, clustered_vectors):
    with pytest.raises(StsevalError, match="not a stseval index"):
        load_index(tmp_path / "nothing")
    sentences = [str(i) for i in range(len(clustered_vectors))]
    save_index(tmp_path / "idx", build_index(clustered_vectors), sentences, _metadata(32, len(sentences)))
    (tmp_path / "idx" / "sentences.jsonl").write_text(json.dumps("other") + "\n", encoding="utf-8")
    with pytest.raises(StsevalError, match="sentences.jsonl: changed since meta.json"):
        load_index(tmp_path / "idx")


def test_query_settings_must_match_the_index(tmp_path):
    whitening = Whitening(np.zeros((1, 4), np.float32), np.eye(4, dtype=np.float32))
    loaded = LoadedIndex(None, [], _metadata(4, 0, whitening), whitening, tmp_path)
    check_query_settings(loaded, "fp-1", Pooling("last-avg"), "", whitening)  # the same settings pass
    with pytest.raises(StsevalError) as caught:
        check_query_settings(loaded, "fp-2", Pooling("cls"), "query: ", None)
    message = str(caught.value)
    for expected in ("does not match the index", "model fingerprint 'fp-2' != 'fp-1'", "pooling 'cls' != 'last-avg'",
                     "prefix 'query: ' != ''", f"whitening none != {whitening_digest(whitening)}", "meta.json"):
        assert expected in message
    other = Whitening(whitening.mu, 2 * whitening.kernel)
    with pytest.raises(StsevalError, match="whitening"):
        check_query_settings(loaded, "fp-1", Pooling("last-avg"), "", other)


# ---------------------------------------------------------------------------------------------
# orchestration on a tiny random BERT: build, search, mismatch, sweep


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return make_bert(root / "bert", seed=0), make_bert(root / "bert-other", seed=1)


@pytest.fixture
def tiny_data_dir(tmp_path):
    """An STS-B test split of 32 pairs over the 8 tiny-vocabulary sentences, scores 0-5."""
    lines = [f"{SENTENCES[i]}\t{SENTENCES[(i + offset) % 8]}\t{(i + offset) % 6}"
             for i in range(8) for offset in (1, 2, 3, 4)]
    folder = tmp_path / "data"
    (folder / "STS-B").mkdir(parents=True)
    (folder / "STS-B" / "STS-B.test.data").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_build_then_search_and_refuse_mismatched_encoder(tmp_path, tiny_models, tiny_data_dir):
    from stseval.runs.retrieval import build, search_index

    model, other_model = map(str, tiny_models)
    # 8 sentences span 7 directions: 8 dims is past the fit's rank, asked for on purpose
    meta = build(model, tmp_path / "idx", task=TASKS["STS-B"], data_dir=tiny_data_dir, fit_whitening_dims=8,
                 use_cache=False, show_progress=False, allow_low_rank=True)
    assert meta.dims == 8 and meta.whitening["n_components"] == 8 and meta.corpus == "STS-B/test"
    corpus = load_index(tmp_path / "idx").sentences
    results = search_index(tmp_path / "idx", [corpus[0], corpus[5]], top_k=3)
    assert [hits[0].sentence for hits in results] == [corpus[0], corpus[5]]  # a sentence finds itself
    assert results[0][0].score == pytest.approx(1.0, abs=1e-4) and len(results[0]) == 3
    with pytest.raises(StsevalError, match="model fingerprint"):
        search_index(tmp_path / "idx", [corpus[0]], model=other_model)
    with pytest.raises(StsevalError, match="pooling 'cls' != 'last-avg'"):
        search_index(tmp_path / "idx", [corpus[0]], pooling="cls")


def test_search_reads_queries_from_a_file_and_stdin_as_from_arguments(tmp_path, tiny_models, tiny_data_dir):
    from typer.testing import CliRunner

    from stseval.cli import app
    from stseval.runs.retrieval import build

    build(str(tiny_models[0]), tmp_path / "idx", task=TASKS["STS-B"], data_dir=tiny_data_dir, use_cache=False,
          show_progress=False)
    corpus = load_index(tmp_path / "idx").sentences
    (tmp_path / "queries.txt").write_text(f"{corpus[1]}\n\n{corpus[2]}\n", encoding="utf-8")
    common = ["index", "search", "--index-dir", str(tmp_path / "idx"), "-k", "2", "--threads", "1"]
    runner = CliRunner()
    by_arguments = runner.invoke(app, [*common, corpus[0], corpus[1], corpus[2]])
    by_file = runner.invoke(app, [*common, corpus[0], "--queries", str(tmp_path / "queries.txt")])
    by_stdin = runner.invoke(app, [*common, corpus[0], "--queries", "-"], input=f"{corpus[1]}\n{corpus[2]}\n")
    assert by_arguments.exit_code == 0, by_arguments.output
    assert by_file.stdout == by_arguments.stdout == by_stdin.stdout
    missing = runner.invoke(app, [*common, "--queries", str(tmp_path / "nope.txt")])
    assert missing.exit_code == 2 and "--queries" in missing.stderr and "nope.txt: no such file" in missing.stderr
    empty = runner.invoke(app, common)
    assert empty.exit_code == 2 and "give at least one QUERY or --queries FILE" in empty.stderr


def test_bf16_index_searches_with_bf16_queries(tmp_path, tiny_models, tiny_data_dir, monkeypatch):
    from stseval.runs.retrieval import build, search_index

    monkeypatch.setenv("STSEVAL_ALLOW_EMULATED_BF16", "1")
    meta = build(str(tiny_models[0]), tmp_path / "idx", task=TASKS["STS-B"], data_dir=tiny_data_dir,
                 use_cache=False, show_progress=False, precision="bf16")
    assert meta.model.endswith("+bf16")  # a folder is recorded with its precision, so search encodes alike
    corpus = load_index(tmp_path / "idx").sentences
    assert search_index(tmp_path / "idx", [corpus[3]], top_k=1)[0][0].sentence == corpus[3]
    with pytest.raises(StsevalError, match="model fingerprint"):
        search_index(tmp_path / "idx", [corpus[3]], model=str(tiny_models[0]))


def test_index_search_labels_each_query_apart_from_the_e5_prefix(tmp_path, tiny_models, tiny_data_dir):
    from typer.testing import CliRunner

    from stseval.cli import app
    from stseval.runs.retrieval import build

    build(str(tiny_models[0]), tmp_path / "idx", task=TASKS["STS-B"], data_dir=tiny_data_dir, use_cache=False,
          show_progress=False)
    corpus = load_index(tmp_path / "idx").sentences
    result = CliRunner().invoke(app, ["index", "search", "--index-dir", str(tmp_path / "idx"), corpus[0], corpus[5],
                                      "-k", "2"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # "query: " is E5's prefix (--prefix "query: "); a label that reads like it suggests it was searched for
    assert [line for line in lines if not line.startswith(" ")] == [f">> {corpus[0]}", f">> {corpus[5]}"]
    assert not any(line.startswith("query:") for line in lines)
    assert lines[1].split()[:2] == ["1", "1.0000"] and lines[1].endswith(corpus[0])


def test_sweep_writes_long_rows_and_plot_and_resumes(tmp_path, tiny_models, tiny_data_dir):
    from stseval.report.drawing import write_sweep_plot
    from stseval.runs.retrieval import SWEEP_CSV, SWEEP_METRICS, SWEEP_PNG, sweep
    from stseval.runs.specs import parse_sweep_run

    run = parse_sweep_run(model=str(tiny_models[0]), tasks=["STS-B"], out=tmp_path / "out", data_dir=tiny_data_dir,
                          dims="full,16,4", use_cache=False, show_progress=False, threads=1,
                          allow_low_rank=True)  # the 8-sentence corpus spans 7 directions
    threads_before = faiss.omp_get_max_threads()
    output = sweep(run, log=lambda message: None)
    assert faiss.omp_get_max_threads() == threads_before  # --threads pins FAISS for the sweep only
    assert len(output.computed) == 2 * 3 * len(SWEEP_METRICS)
    plot = tmp_path / "out" / SWEEP_PNG
    assert write_sweep_plot(output.results, plot, output.planned) == plot
    frame = pd.read_csv(tmp_path / "out" / SWEEP_CSV, dtype={"dims": str})
    assert list(frame.columns) == COLUMNS
    assert set(frame["method"]) == {"raw-truncate", "whitening"}
    assert set(frame["dims"]) == {"full", "16", "4"}
    assert set(frame["metric"]) == set(SWEEP_METRICS)
    recall = frame[frame["metric"] == "recall@10"]["value"]
    assert recall.between(0, 1).all()
    assert (frame[frame["method"] == "whitening"]["fit_on"] == "test-corpus").all()
    assert set(frame["n_dims"]) == {32, 16, 4} and set(frame["threads"]) == {1} and set(frame["index"]) == {"Flat"}
    assert set(frame["top_k"]) == {100} and frame["n_corpus"].nunique() == 1
    png = (tmp_path / "out" / SWEEP_PNG).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert sweep(run, log=lambda message: None).computed == []  # resumed


@pytest.mark.parametrize("mutate, message", [
    (lambda meta: [meta], "holds a JSON list, not an object"),
    (lambda meta: "index", "holds a JSON str"),
    (lambda meta: {**meta, "format_version": "1"}, "format_version is \"1\", not of type int"),
    (lambda meta: {**meta, "dims": True}, "dims is true, not of type int"),
    (lambda meta: {**meta, "files": {}}, "files lists no checksum for index.faiss, sentences.jsonl"),
    (lambda meta: {**meta, "files": {"sentences.jsonl": meta["files"]["sentences.jsonl"]}},
     "files lists no checksum for index.faiss"),
    (lambda meta: {**meta, "files": ["index.faiss"]}, "files is"),
    (lambda meta: {**meta, "whitening": []}, "whitening is"),
    (lambda meta: {key: value for key, value in meta.items() if key != "model"}, "lacks model"),
])
def test_index_metadata_of_the_wrong_shape_is_refused(tmp_path, clustered_vectors, mutate, message):
    sentences = [str(i) for i in range(len(clustered_vectors))]
    save_index(tmp_path / "idx", build_index(clustered_vectors), sentences, _metadata(32, len(sentences)))
    meta_path = tmp_path / "idx" / "meta.json"
    meta_path.write_text(json.dumps(mutate(json.loads(meta_path.read_text()))))
    with pytest.raises(StsevalError, match=re.escape(message)) as caught:
        load_index(tmp_path / "idx")
    assert str(caught.value).startswith(f"{meta_path}: ")


def test_index_search_on_bad_metadata_is_one_line(tmp_path, clustered_vectors):
    from typer.testing import CliRunner

    from stseval.cli import app

    (tmp_path / "idx").mkdir()
    (tmp_path / "idx" / "meta.json").write_text("[]")
    result = CliRunner().invoke(app, ["index", "search", "--index-dir", str(tmp_path / "idx"), "花呗"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"stseval: {tmp_path / 'idx' / 'meta.json'}: holds a JSON list, not an object; "
        "not index metadata written by stseval, rebuild the index"]


def test_sweep_pca_rotates_without_rescaling(tmp_path, tiny_models, tiny_data_dir):
    from stseval.runs.retrieval import sweep
    from stseval.runs.specs import parse_sweep_run

    run = parse_sweep_run(model=str(tiny_models[0]), tasks=["STS-B"], out=tmp_path / "out", data_dir=tiny_data_dir,
                          dims="full,4", methods="raw-truncate,whitening,pca", use_cache=False, show_progress=False,
                          threads=1, allow_low_rank=True)  # the 8-sentence corpus spans 7 directions
    rows = pd.DataFrame([row.__dict__ for row in sweep(run, log=lambda message: None).computed])
    quality = rows[rows.metric.isin(["recall@1", "recall@10", "mrr@10"])].set_index(["method", "dims", "metric"]).value
    pca = rows[rows.method == "pca"]
    assert set(pca.fit_on) == {"test-corpus"} and set(zip(pca.beta, pca.gamma, strict=True)) == {("0", "0")}
    # at full k a rotation keeps every cosine, so every ranking: the same numbers as the raw vectors
    for metric in ("recall@1", "recall@10", "mrr@10"):
        assert quality["pca", "full", metric] == pytest.approx(quality["raw-truncate", "full", metric], abs=1e-9)


def _never(*args, **kwargs):
    raise AssertionError("nothing may be encoded or loaded by a refused run")


def test_build_whiten_dims_above_the_corpus_rank_is_refused_unless_allowed(tmp_path, tiny_models, monkeypatch):
    from typer.testing import CliRunner

    import stseval.runs.retrieval as retrieval
    from stseval.cli import app

    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES[:5]) + "\n", encoding="utf-8")  # 5 vectors span 4 directions
    args = ["index", "build", "--sentences", str(corpus), "--model", str(tiny_models[0]), "--whiten-dims", "8",
            "--index-dir", str(tmp_path / "idx")]
    with monkeypatch.context() as patched:
        patched.setattr(retrieval, "encode_texts", _never)
        refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2, refused.output
    assert refused.output.strip().splitlines() == [
        f"stseval: {corpus} corpus: 5 vectors of 32 dims have covariance rank 4 (fewer vectors than dimensions), "
        "so --whiten-dims 8 would keep 4 direction(s) the fit never saw; give --whiten-dims 4 or less, fit on more "
        "sentences, or pass --allow-low-rank to build it anyway"]
    assert not (tmp_path / "idx").exists()
    assert CliRunner().invoke(app, [*args, "--allow-low-rank"]).exit_code == 0
    within = [*args[:-3], "4", "--index-dir", str(tmp_path / "idx4")]  # within the rank: no option needed
    assert CliRunner().invoke(app, within).exit_code == 0


def test_build_refuses_a_fit_whose_rank_falls_short_once_fitted(tmp_path, tiny_models):
    from stseval.encoders.encoder import load_encoder
    from stseval.runs.retrieval import _corpus_whitening

    encoder = load_encoder(str(tiny_models[0]))
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 32))  # 40 vectors in a 3-d subspace: rank 3
    with pytest.raises(StsevalError, match=r"^x corpus: 40 vectors of 32 dims have covariance rank 3, so "
                                           r"--whiten-dims 8 would keep 5"):
        _corpus_whitening(encoder, vectors, None, 8, {"fit_on": "x"})
    whitening, _ = _corpus_whitening(encoder, vectors, None, 8, {"fit_on": "x"}, allow_low_rank=True)
    assert whitening is not None and whitening.n_components == 8 and whitening.provenance["rank"] == 3


def test_sweep_whitening_above_the_corpus_rank_is_refused_before_computing(tmp_path, tiny_models, tiny_data_dir,
                                                                          monkeypatch):
    import stseval.runs.retrieval as retrieval
    from stseval.runs.specs import parse_sweep_run

    given = dict(model=str(tiny_models[0]), tasks=["STS-B"], out=tmp_path / "out", data_dir=tiny_data_dir,
                 dims="full,4", use_cache=False, show_progress=False, threads=1)
    with monkeypatch.context() as patched:
        patched.setattr(retrieval, "encode_texts", _never)
        with pytest.raises(StsevalError) as refused:
            retrieval.sweep(parse_sweep_run(**given), log=lambda message: None)
    assert str(refused.value).startswith(
        "STS-B test corpus: 8 vectors of 32 dims have covariance rank 7 (fewer vectors than dimensions), so --dims "
        "full would keep 25 direction(s) the fit never saw") and "--allow-low-rank" in str(refused.value)
    assert not (tmp_path / "out" / "retrieval.csv").exists()
    # within the rank, and pca or raw truncation at any k, need no option; fitted rows say what the fit saw
    rows = retrieval.sweep(parse_sweep_run(**{**given, "dims": "4", "methods": "whitening,pca,raw-truncate"}),
                           log=lambda message: None).computed
    assert {(row.method, row.n_fit, row.fit_rank) for row in rows} == {
        ("whitening", 8, 7), ("pca", 8, 7), ("raw-truncate", 0, 0)}
    allowed = retrieval.sweep(parse_sweep_run(**given, allow_low_rank=True), log=lambda message: None).computed
    assert {(row.method, row.dims, row.fit_rank) for row in allowed if row.method == "whitening"} == {
        ("whitening", "full", 7)}


def test_sweep_refuses_a_damaged_results_file_before_loading_the_model(tmp_path, tiny_models, tiny_data_dir,
                                                                       monkeypatch):
    import stseval.encoders.encoder as encoders
    from stseval.runs.retrieval import sweep
    from stseval.runs.specs import parse_sweep_run

    out = tmp_path / "out"
    out.mkdir()
    (out / "retrieval.csv").write_text("model,task\nx,STS-B\n", encoding="utf-8")  # no value column
    before = (out / "retrieval.csv").read_bytes()
    monkeypatch.setattr(encoders, "load_encoder", _never)
    run = parse_sweep_run(model=str(tiny_models[0]), tasks=["STS-B"], out=out, data_dir=tiny_data_dir, dims="4",
                          use_cache=False, show_progress=False)
    with pytest.raises(StsevalError, match="retrieval.csv"):
        sweep(run, log=lambda message: None)
    assert (out / "retrieval.csv").read_bytes() == before


def test_index_search_path_does_not_import_pandas_or_scipy_stats():
    """`stseval index search` starts in a new process: the results modules (pandas, ~0.4 s) are sweep-only and
    scipy.stats (~1 s) serves Spearman only."""
    import subprocess
    import sys

    code = ("import sys, stseval.cli, stseval.runs.retrieval; "
            "print('pandas' in sys.modules, 'scipy.stats' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False False"
