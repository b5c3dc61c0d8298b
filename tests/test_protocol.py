"""The SentenceEncoder protocol: encode (dedupe, prefix, cache, chunks) runs any encoder through it."""

import numpy as np
import pytest

from stseval.common.errors import StsevalError
from stseval.encoders.cache import CacheKey, EmbeddingCache
from stseval.encoders.encoder import encode, load_encoder
from stseval.encoders.pooling import POOLINGS
from stseval.encoders.protocol import SENTENCE_POOLING, SentenceEncoder, fixed_batches, supported_poolings
from stseval.options import parse_poolings
from tiny_models import SENTENCES, make_bert


class CharCodes:
    """A toy sentence-vector encoder: 4-d counts of character codes mod 4; records what it was given."""

    name, fingerprint, dimension = "char-codes-4", "char-codes-4-v1", 4

    def __init__(self, fail_after_batches=None):
        self.seen: list[list[str]] = []
        self.fail_after_batches = fail_after_batches

    def supports(self, pooling):
        return pooling == SENTENCE_POOLING

    def embed_batches(self, texts, poolings, max_length, batch_size):
        return fixed_batches(self._embed, texts, batch_size)

    def _embed(self, texts):
        if self.fail_after_batches is not None and len(self.seen) == self.fail_after_batches:
            raise KeyboardInterrupt
        self.seen.append(list(texts))
        counts = [np.bincount([ord(char) % 4 for char in text], minlength=4) for text in texts]
        return {SENTENCE_POOLING: np.array(counts, dtype=np.float32)}


@pytest.fixture(autouse=True)
def stseval_home(tmp_path, monkeypatch):
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))


def test_transformer_encoder_satisfies_the_protocol(tmp_path):
    encoder = load_encoder(str(make_bert(tmp_path / "bert", with_pooler=False)))
    assert isinstance(encoder, SentenceEncoder)
    assert supported_poolings(encoder) == [p for p in POOLINGS if p not in ("pooler", "pooler-tanh")]
    texts = list(SENTENCES)
    yielded = list(encoder.embed_batches(texts, ["cls", "max"], 32, 3))
    rows = np.concatenate([batch_rows for batch_rows, _ in yielded])
    assert sorted(rows) == list(range(len(texts)))  # every text once, in the encoder's own order
    vectors = {name: np.empty((len(texts), encoder.dimension), dtype=np.float32) for name in ("cls", "max")}
    for batch_rows, pooled in yielded:
        for name in vectors:
            vectors[name][batch_rows] = pooled[name]
    expected = encode(encoder, texts, ["cls", "max"], max_length=32, batch_size=3, show_progress=False)
    for name in vectors:
        np.testing.assert_array_equal(vectors[name], expected[name])


def test_encode_dedupes_prefixes_and_keeps_input_order():
    encoder = CharCodes()
    texts = ["ab", "cde", "ab", "f"]
    vectors = encode(encoder, texts, "sentence", max_length=64, prefix="q: ", batch_size=2, show_progress=False)
    assert encoder.seen == [["q: ab", "q: cde"], ["q: f"]]  # unique texts, prefix in front, batch_size each
    expected = CharCodes()._embed(["q: ab", "q: cde", "q: ab", "q: f"])[SENTENCE_POOLING]
    np.testing.assert_array_equal(vectors["sentence"], expected)


def test_cache_serves_a_second_encode_and_keeps_the_batches_of_an_interrupted_one(tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    texts = [f"sentence {i}" for i in range(10)]
    interrupted = CharCodes(fail_after_batches=3)
    with pytest.raises(KeyboardInterrupt):
        encode(interrupted, texts, "sentence", max_length=64, batch_size=2, cache=cache, cache_every=4,
               show_progress=False)
    key = CacheKey("char-codes-4-v1", "", 64, "", "sentence")
    found_rows, _ = cache.get(key, texts)
    # the chunk of 4 stored on the way, and on Ctrl-C the finished batch of the unfinished chunk: 3 batches of 2
    assert list(found_rows) == [0, 1, 2, 3, 4, 5]

    resumed = CharCodes()
    first = encode(resumed, texts, "sentence", max_length=64, batch_size=2, cache=cache, show_progress=False)
    assert sum(map(len, resumed.seen)) == 4  # only the sentences not cached
    again = CharCodes()
    second = encode(again, texts, "sentence", max_length=64, cache=cache, show_progress=False)
    assert again.seen == []
    np.testing.assert_array_equal(first["sentence"], second["sentence"])


def test_unsupported_pooling_names_what_the_encoder_gives():
    with pytest.raises(StsevalError,
                       match=r"--pooling cls: not available for model char-codes-4 \(it gives sentence only\)"):
        encode(CharCodes(), ["ab"], "cls,sentence", max_length=64, show_progress=False)


def test_transformer_refuses_sentence_pooling_with_the_reason(tmp_path):
    encoder = load_encoder(str(make_bert(tmp_path / "bert")))
    assert not encoder.supports("sentence")
    with pytest.raises(StsevalError,
                       match=r"--pooling sentence: .*'sentence' is the output of sentence-vector encoders only"):
        encode(encoder, ["今天"], "sentence", max_length=32, show_progress=False)


class LeavesOneOut(CharCodes):
    def embed_batches(self, texts, poolings, max_length, batch_size):
        return fixed_batches(self._embed, texts[:-1], batch_size)


class WrongShape(CharCodes):
    def _embed(self, texts):
        return {SENTENCE_POOLING: np.zeros((len(texts), 3), dtype=np.float32)}


@pytest.mark.parametrize("broken, message", [(LeavesOneOut, "left 1 of 3 texts out"), (WrongShape, r"shape \(3, 3\)")])
def test_an_encoder_breaking_the_protocol_fails_loudly(broken, message, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    with pytest.raises(RuntimeError, match=message):
        encode(broken(), ["a", "b", "c"], "sentence", max_length=64, cache=cache, show_progress=False)


def test_sentence_is_a_pooling_name_but_not_part_of_all():
    assert [str(p) for p in parse_poolings("last-avg, sentence")] == ["last-avg", "sentence"]
    assert [str(p) for p in parse_poolings("all")] == list(POOLINGS) and "sentence" not in POOLINGS
    with pytest.raises(StsevalError, match=r"choose from .*max, sentence or 'all'"):
        parse_poolings("sentences")
