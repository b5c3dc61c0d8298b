"""--precision bf16 and --threads: option checks, the bf16 encoder (name, fingerprint, cache key, vectors)
and bf16 SimCSE training, on tiny models.

This machine may lack native bf16 (AVX2 only), so the tests that run bf16 set STSEVAL_ALLOW_EMULATED_BF16=1:
torch then emulates bf16 on the CPU, with the same rounding as native bf16 (round to nearest even to an 8-bit
mantissa), only slower.
"""

import hashlib

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from stseval import options
from stseval.cli import app
from stseval.common.errors import StsevalError
from stseval.encoders.cache import CacheKey, EmbeddingCache
from stseval.encoders.encoder import encode, load_encoder
from tiny_models import SENTENCES, make_bert

runner = CliRunner()
POOLINGS = ["cls", "last-avg", "first-last-avg"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    # 384 wide like e5-small, so the bf16 rounding is averaged over realistic dot-product lengths
    return make_bert(tmp_path_factory.mktemp("models") / "bert", hidden_size=384, num_attention_heads=12,
                     intermediate_size=1536)


@pytest.fixture(autouse=True)
def home_and_emulated_bf16(tmp_path, monkeypatch):
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(options.ALLOW_EMULATED_BF16, "1")


# ------------------------------------------------------------------ option checks (no torch needed)

def test_bf16_on_a_cpu_without_native_bf16_is_refused_naming_the_missing_feature(monkeypatch):
    monkeypatch.delenv(options.ALLOW_EMULATED_BF16)
    monkeypatch.setattr(options, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    with pytest.raises(StsevalError, match=r"--precision bf16: this CPU has no native bf16 \(no avx512_bf16 or "
                                           r"amx_bf16.*STSEVAL_ALLOW_EMULATED_BF16=1"):
        options.check_precision("bf16")


@pytest.mark.parametrize("flags", [{"avx512_bf16"}, {"amx_bf16", "amx_tile"}])
def test_bf16_passes_on_a_cpu_with_native_bf16(monkeypatch, flags):
    monkeypatch.delenv(options.ALLOW_EMULATED_BF16)
    monkeypatch.setattr(options, "cpu_flags", lambda: frozenset(flags))
    assert options.check_precision("bf16") == "bf16"


def test_the_env_var_forces_emulated_bf16(monkeypatch):
    monkeypatch.setattr(options, "cpu_flags", lambda: frozenset({"avx2"}))
    assert options.check_precision("bf16") == "bf16"
    monkeypatch.setenv(options.ALLOW_EMULATED_BF16, "0")
    with pytest.raises(StsevalError, match="no native bf16"):
        options.check_precision("bf16")


def test_bf16_on_a_gpu_does_not_look_at_the_cpu(monkeypatch):
    monkeypatch.delenv(options.ALLOW_EMULATED_BF16)
    monkeypatch.setattr(options, "cpu_flags", lambda: frozenset())
    assert options.check_precision("bf16", device="cuda:0") == "bf16"


@pytest.mark.parametrize("precision, backend, message", [
    ("fp16", "fp32", "--precision fp16: unknown; choose from fp32, bf16"),
    ("bf16", "int8", "does not combine with --backend int8"),
    ("bf16", "onnx", "does not combine with --backend onnx"),
    ("bf16", "onnx-int8", "does not combine with --backend onnx-int8"),
])
def test_bad_precision_is_one_clear_error(precision, backend, message):
    with pytest.raises(StsevalError, match=message):
        options.check_precision(precision, backend)


def test_threads_must_lie_between_one_and_the_cores():
    cores = len(__import__("os").sched_getaffinity(0))
    assert options.check_threads(None) is None and options.check_threads(cores) == cores
    for bad in (0, -1, cores + 1):
        with pytest.raises(StsevalError, match=f"--threads {bad}: must be between 1 and the {cores}"):
            options.check_threads(bad)


@pytest.mark.parametrize("args, phrase", [
    (["whiten", "--precision", "bf16"], "no native bf16 (no avx512_bf16 or amx_bf16"),
    (["whiten", "--precision", "bf16", "--backend", "onnx"], "does not combine with --backend onnx"),
    (["whiten", "--threads", "0"], "--threads 0: must be between 1"),
    (["simcse-train", "--precision", "bf16"], "no native bf16"),
    (["simcse-train", "--threads", "100000"], "--threads 100000"),
    (["index", "build", "--task", "STS-B", "--index-dir", "x", "--precision", "bf16"], "no native bf16"),
    (["index", "build", "--task", "STS-B", "--index-dir", "x", "--threads", "0"], "--threads 0"),
    (["index", "sweep", "--precision", "bf16"], "no native bf16"),
    (["index", "sweep", "--threads", "0"], "--threads 0"),
    (["index", "search", "--index-dir", ".", "--precision", "bf16", "q"], "no native bf16"),
    (["index", "search", "--index-dir", ".", "--threads", "0", "q"], "--threads 0"),
])
def test_cli_refuses_bad_precision_and_threads_in_one_line_before_loading(monkeypatch, args, phrase):
    monkeypatch.delenv(options.ALLOW_EMULATED_BF16)
    monkeypatch.setattr(options, "cpu_flags", lambda: frozenset({"avx2"}))
    loaded = []
    monkeypatch.setattr("stseval.encoders.encoder.load_encoder", lambda *a, **k: loaded.append(a))
    result = runner.invoke(app, [*args, "--model", "/no/such/model"] if args[0] != "index" or args[1] == "sweep"
                           else args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stseval: ") and phrase in lines[0], result.stderr
    assert not loaded


# ------------------------------------------------------------------ the bf16 encoder

@pytest.fixture(scope="module")
def encoders(bert_dir):
    import os

    os.environ[options.ALLOW_EMULATED_BF16] = "1"  # module scope: monkeypatch is per test
    try:
        return load_encoder(str(bert_dir)), load_encoder(str(bert_dir), precision="bf16")
    finally:
        del os.environ[options.ALLOW_EMULATED_BF16]


def test_bf16_is_in_name_fingerprint_and_cache_key(encoders, tmp_path):
    fp32, bf16 = encoders
    assert bf16.name == f"{fp32.name}+bf16" and bf16.precision == "bf16" and fp32.precision == "fp32"
    # pinned, not only unequal: cache keys and rows written earlier carry this digest
    assert bf16.fingerprint == hashlib.sha256(f"{fp32.fingerprint}\nprecision=bf16".encode()).hexdigest()
    cache = EmbeddingCache(tmp_path / "embeddings")
    encode(fp32, list(SENTENCES), ["cls"], max_length=32, cache=cache, show_progress=False)
    found, _ = cache.get(CacheKey(bf16.fingerprint, bf16.tokenizer_fingerprint, 32, "", "cls"), list(SENTENCES))
    assert len(found) == 0  # fp32 vectors are never served to a bf16 encoder


def test_precision_suffix_in_a_model_name_loads_that_precision(bert_dir, encoders):
    again = load_encoder(f"{bert_dir}+bf16")
    assert again.precision == "bf16" and again.fingerprint == encoders[1].fingerprint
    with pytest.raises(StsevalError, match="--precision bf16: runs the PyTorch float32 model"):
        load_encoder(str(bert_dir), backend="int8", precision="bf16")


def test_bf16_vectors_are_float32_and_close_to_fp32(encoders):
    """bf16 keeps 8 significant bits: each operand of a matrix product is rounded with relative error at most
    u = 2^-9 (round to nearest), products accumulate in float32. Through 2 layers of ~6 rounded products the
    errors add up to a relative error of the hidden states of a few times 2^-8 ~ 0.4%, observed <= ~1%. So
    the vectors must agree to cosine >= 0.999 (relative error <= ~4.5%, 10x headroom over what bf16 gives)
    and must not be bit-identical (then autocast would not have run at all)."""
    fp32, bf16 = encoders
    reference = encode(fp32, list(SENTENCES), POOLINGS, max_length=32, show_progress=False)
    reduced = encode(bf16, list(SENTENCES), POOLINGS, max_length=32, show_progress=False)
    for name in POOLINGS:
        assert reduced[name].dtype == np.float32
        a, b = reference[name], reduced[name]
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cosine.min() >= 0.999, (name, cosine.min())
        assert not np.array_equal(a, b), name
    assert next(bf16.model.parameters()).dtype == torch.float32  # autocast leaves the weights float32


def test_bf16_vector_does_not_depend_on_its_batch_company(encoders):
    """The invariance of encode holds under bf16 too (fixed batch shapes, as for fp32)."""
    bf16 = encoders[1]
    alone = encode(bf16, ["今天天气很好"], ["last-avg"], max_length=32, show_progress=False)["last-avg"][0]
    crowd = encode(bf16, ["今天天气很好", *SENTENCES[1:], "你好"], ["last-avg"], max_length=32,
                   show_progress=False)["last-avg"][0]
    np.testing.assert_array_equal(alone, crowd)


def test_load_model_api_takes_precision(bert_dir):
    import stseval

    model = stseval.load_model(str(bert_dir), precision="bf16")
    assert model.name.endswith("+bf16")
