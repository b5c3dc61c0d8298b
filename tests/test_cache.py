"""The embedding cache: round trips, keys, atomic writes and corrupt shards."""

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest

from stseval.encoders.cache import CacheKey, EmbeddingCache, stseval_home

KEY = CacheKey("model-sha", "tokenizer-sha", max_length=64, prefix="", pooling="cls")
TEXTS = ["今天天气很好", "我喜欢吃苹果", "花呗怎么还款", "借钱"]


@pytest.fixture
def vectors(rng):
    return rng.normal(size=(len(TEXTS), 8)).astype(np.float32)


def _shard_files(cache: EmbeddingCache, key: CacheKey, suffix: str) -> list[Path]:
    return sorted((cache.root / key.digest).glob(f"*{suffix}"))


def test_round_trip_returns_found_rows_in_order(tmp_path, vectors):
    cache = EmbeddingCache(tmp_path)
    cache.put(KEY, TEXTS, vectors)
    found_indices, found_vectors = cache.get(KEY, ["new sentence", TEXTS[2], TEXTS[0], TEXTS[2]])
    np.testing.assert_array_equal(found_indices, [1, 2, 3])
    np.testing.assert_array_equal(found_vectors, vectors[[2, 0, 2]])
    assert found_vectors.dtype == np.float32


def test_a_new_cache_object_reads_what_an_earlier_one_wrote(tmp_path, vectors):
    EmbeddingCache(tmp_path).put(KEY, TEXTS, vectors)
    found_indices, found_vectors = EmbeddingCache(tmp_path).get(KEY, TEXTS)
    np.testing.assert_array_equal(found_indices, np.arange(len(TEXTS)))
    np.testing.assert_array_equal(found_vectors, vectors)


def test_lookups_span_several_shards(tmp_path, vectors):
    cache = EmbeddingCache(tmp_path)
    cache.put(KEY, TEXTS[:2], vectors[:2])
    cache.put(KEY, TEXTS[2:], vectors[2:])
    assert len(_shard_files(cache, KEY, ".vectors.npy")) == 2
    found_indices, found_vectors = cache.get(KEY, TEXTS[::-1])
    np.testing.assert_array_equal(found_indices, np.arange(len(TEXTS)))
    np.testing.assert_array_equal(found_vectors, vectors[::-1])


def test_empty_cache_finds_nothing(tmp_path):
    found_indices, found_vectors = EmbeddingCache(tmp_path).get(KEY, TEXTS)
    assert found_indices.shape == (0,) and found_vectors.shape == (0, 0)


def test_putting_nothing_writes_nothing(tmp_path):
    EmbeddingCache(tmp_path).put(KEY, [], np.zeros((0, 8), dtype=np.float32))
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "change",
    [
        {"model_fingerprint": "other"},
        {"tokenizer_fingerprint": "other"},
        {"max_length": 32},
        {"prefix": "query: "},
        {"pooling": "last-avg"},
    ],
)
def test_every_key_field_separates_entries(tmp_path, vectors, change):
    cache = EmbeddingCache(tmp_path)
    cache.put(KEY, TEXTS, vectors)
    other_key = dataclasses.replace(KEY, **change)
    assert other_key.digest != KEY.digest
    found_indices, _ = cache.get(other_key, TEXTS)
    assert len(found_indices) == 0


def test_writes_leave_no_temporary_files_and_record_the_key(tmp_path, vectors):
    cache = EmbeddingCache(tmp_path)
    cache.put(KEY, TEXTS, vectors)
    names = [path.name for path in (tmp_path / KEY.digest).iterdir()]
    assert not [name for name in names if name.endswith(".tmp")]
    assert "meta.json" in names
    assert '"pooling": "cls"' in (tmp_path / KEY.digest / "meta.json").read_text()


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "delete_vectors", "garble_record"])
def test_corrupt_shard_is_reported_deleted_and_not_used(tmp_path, vectors, damage):
    EmbeddingCache(tmp_path).put(KEY, TEXTS, vectors)
    vectors_path = _shard_files(EmbeddingCache(tmp_path), KEY, ".vectors.npy")[0]
    record_path = vectors_path.with_name(vectors_path.name.replace(".vectors.npy", ".json"))
    if damage == "flip_byte":
        payload = bytearray(vectors_path.read_bytes())
        payload[-5] ^= 0xFF  # inside the float data, so the .npy still parses
        vectors_path.write_bytes(bytes(payload))
    elif damage == "truncate":
        vectors_path.write_bytes(vectors_path.read_bytes()[:-16])
    elif damage == "delete_vectors":
        vectors_path.unlink()
    else:
        record_path.write_text("{not json")

    cache = EmbeddingCache(tmp_path)
    with pytest.warns(RuntimeWarning, match="corrupt"):
        found_indices, _ = cache.get(KEY, TEXTS)
    assert len(found_indices) == 0
    assert not record_path.exists() and not vectors_path.exists()

    cache.put(KEY, TEXTS, vectors)  # recomputed vectors replace the bad shard
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found_indices, found_vectors = EmbeddingCache(tmp_path).get(KEY, TEXTS)
    np.testing.assert_array_equal(found_vectors, vectors)


def test_unfinished_shard_without_record_is_ignored_quietly(tmp_path, vectors):
    cache = EmbeddingCache(tmp_path)
    cache.put(KEY, TEXTS, vectors)
    for record_path in _shard_files(cache, KEY, ".json"):
        if record_path.name != "meta.json":
            record_path.unlink()  # as if the writer died before committing the shard
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found_indices, _ = EmbeddingCache(tmp_path).get(KEY, TEXTS)
    assert len(found_indices) == 0


def test_default_root_follows_stseval_home(tmp_path, monkeypatch):
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    assert stseval_home() == tmp_path / "home"
    assert EmbeddingCache().root == tmp_path / "home" / "embeddings"
    monkeypatch.delenv("STSEVAL_HOME")
    assert stseval_home() == Path.home() / ".cache" / "stseval"


def test_near_identical_sentences_each_get_their_own_vector(tmp_path, rng):
    """Sentences one space, one punctuation mark or one code point apart are different model inputs:
    among 20,000 of them in three shards, every lookup returns the vector stored for exactly that text."""
    variants = ["今天天气很好", "今天天气很好 ", " 今天天气很好", "今天天气很好。", "今天天气很好.", "今天天氣很好",
                "cafe\u0301", "caf\u00e9", "ＡＢＣ", "ABC"]  # decomposed / composed é, full- / half-width letters
    texts = [f"句子 {index}" for index in range(20_000 - len(variants))] + variants
    stored_vectors = rng.normal(size=(len(texts), 16)).astype(np.float32)
    cache = EmbeddingCache(tmp_path)
    for shard in (slice(0, 7_000), slice(7_000, -len(variants)), slice(-len(variants), None)):
        cache.put(KEY, texts[shard], stored_vectors[shard])
    order = rng.permutation(len(texts))
    asked = [texts[i] for i in order] + ["句子 20000", "今天天气很好  "]  # two never stored
    found_indices, found_vectors = EmbeddingCache(tmp_path).get(KEY, asked)
    np.testing.assert_array_equal(found_indices, np.arange(len(texts)))
    np.testing.assert_array_equal(found_vectors, stored_vectors[order])


def test_a_put_leaves_out_what_another_writer_stored_meanwhile(tmp_path, vectors):
    first, second = EmbeddingCache(tmp_path), EmbeddingCache(tmp_path)
    assert len(first.get(KEY, TEXTS)[0]) == len(second.get(KEY, TEXTS)[0]) == 0  # both miss, both encode
    first.put(KEY, TEXTS[:3], vectors[:3])
    second.put(KEY, TEXTS, vectors)
    assert len(_shard_files(first, KEY, ".vectors.npy")) == 2
    found_indices, found_vectors = EmbeddingCache(tmp_path).get(KEY, TEXTS)
    np.testing.assert_array_equal(found_vectors, vectors)
    second.put(KEY, TEXTS, vectors)  # everything stored already: no third shard
    assert len(_shard_files(first, KEY, ".vectors.npy")) == 2


def _put_after_barrier(root, barrier, seed):
    vectors = np.random.default_rng(seed).normal(size=(len(TEXTS), 8)).astype(np.float32)
    cache = EmbeddingCache(root)
    cache.get(KEY, TEXTS)
    barrier.wait()
    cache.put(KEY, TEXTS, vectors)


def test_two_processes_storing_one_key_at_once_write_one_shard(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_put_after_barrier, args=(tmp_path, barrier, seed)) for seed in (1, 2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert len(_shard_files(EmbeddingCache(tmp_path), KEY, ".vectors.npy")) == 1


def test_cache_command_sizes_verifies_and_cleans(tmp_path, vectors, monkeypatch):
    import os
    import time

    from typer.testing import CliRunner

    from stseval.cli import app

    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    cache = EmbeddingCache()
    cache.put(KEY, TEXTS[:2], vectors[:2])
    other = dataclasses.replace(KEY, pooling="last-avg")
    cache.put(other, TEXTS, vectors)
    folder = cache.root / KEY.digest
    old = time.time() - 3600
    for name in ("123-1-dead.vectors.npy", ".x.json.99.abcd1234.tmp"):  # left by killed writers
        (folder / name).write_bytes(b"junk")
        os.utime(folder / name, (old, old))
    (folder / "999-2-young.vectors.npy").write_bytes(b"maybe a writer without the lock")
    [bad] = _shard_files(cache, other, ".vectors.npy")
    bad.write_bytes(bad.read_bytes()[:-8])
    runner = CliRunner()

    size = runner.invoke(app, ["cache", "size"])
    assert size.exit_code == 0, size.output
    assert "2 key(s), 6 vectors" in size.output and "3 orphan file(s)" in size.output
    verify = runner.invoke(app, ["cache", "verify"])
    assert verify.exit_code == 1 and bad.name in verify.output and "1 of 2 shard(s) verified" in verify.output
    dry = runner.invoke(app, ["cache", "clean", "--dry-run"])
    assert dry.exit_code == 0 and "would delete 5 file(s)" in dry.output and bad.exists()
    clean = runner.invoke(app, ["cache", "clean"])
    assert clean.exit_code == 0 and "deleted 5 file(s)" in clean.output  # 2 old orphans + the bad shard's 3
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".json") and p.name != ".lock") == sorted([
        "999-2-young.vectors.npy", *[p.name for p in _shard_files(cache, KEY, ".npy") if "young" not in p.name]])
    assert runner.invoke(app, ["cache", "verify"]).exit_code == 0
    found_indices, _ = EmbeddingCache().get(KEY, TEXTS)
    np.testing.assert_array_equal(found_indices, [0, 1])  # the good shard survived


def test_a_full_disk_while_writing_a_shard_is_one_line_and_keeps_earlier_shards(tmp_path, vectors, monkeypatch):
    import errno

    from stseval.common.errors import StsevalError

    cache = EmbeddingCache(tmp_path)
    cache.put(KEY, TEXTS[:2], vectors[:2])
    real_write = Path.write_bytes

    def full_for_hashes(path, data):  # the vectors fit, the hashes do not: a shard half-way
        if ".hashes.npy" in path.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, data)

    monkeypatch.setattr(Path, "write_bytes", full_for_hashes)
    with pytest.raises(StsevalError) as caught:
        cache.put(KEY, TEXTS[2:], vectors[2:])
    message = str(caught.value)
    assert ".hashes.npy: cannot write it (no space left on the device)" in message and "\n" not in message
    assert str(cache.root / KEY.digest) in message
    monkeypatch.undo()
    found_indices, found_vectors = EmbeddingCache(tmp_path).get(KEY, TEXTS)
    np.testing.assert_array_equal(found_indices, [0, 1])  # the earlier shard, not the unfinished one
    np.testing.assert_array_equal(found_vectors, vectors[:2])


def test_a_full_disk_for_the_key_folder_is_one_line(tmp_path, vectors, monkeypatch):
    import errno

    from stseval.common.errors import StsevalError

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "mkdir", full)
    with pytest.raises(StsevalError, match=f"^{tmp_path / KEY.digest}: cannot write it \\(no space left"):
        EmbeddingCache(tmp_path).put(KEY, TEXTS, vectors)


def test_cache_clean_in_a_read_only_home_is_one_line_naming_the_lock(tmp_path, vectors, monkeypatch):
    import errno

    import filelock
    from typer.testing import CliRunner

    from stseval.cli import app

    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    cache = EmbeddingCache()
    cache.put(KEY, TEXTS, vectors)
    [bad] = _shard_files(cache, KEY, ".vectors.npy")
    bad.write_bytes(bad.read_bytes()[:-8])  # a corrupt shard: something to delete
    before = sorted(path.name for path in (cache.root / KEY.digest).iterdir())

    def read_only(lock, *args, **kwargs):  # what filelock raises when the lock file cannot be created
        raise PermissionError(errno.EACCES, "Permission denied", lock.lock_file)

    monkeypatch.setattr(filelock.FileLock, "acquire", read_only)
    result = CliRunner().invoke(app, ["cache", "clean"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"stseval: {cache.root / KEY.digest / '.lock'}: cannot take the cache lock (Permission denied); "
        "`stseval cache clean` deletes files in STSEVAL_HOME's embeddings, so it needs them writable: fix their "
        "permissions, or run it as their owner"]
    assert sorted(path.name for path in (cache.root / KEY.digest).iterdir()) == before
    dry = CliRunner().invoke(app, ["cache", "clean", "--dry-run"])  # deletes nothing, so needs no lock
    assert dry.exit_code == 0 and "would delete 3 file(s)" in dry.output, dry.output
