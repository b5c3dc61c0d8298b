"""Sentence vectors on disk, keyed by model, tokenizer, max_length, prefix, pooling and sentence.

Layout under `root` (default `$STSEVAL_HOME/embeddings`, STSEVAL_HOME defaulting to
`~/.cache/stseval`):

    <key digest>/meta.json                 the CacheKey fields, for people reading the folder
    <key digest>/<shard>.vectors.npy       (m, d) float32 sentence vectors
    <key digest>/<shard>.hashes.npy        (m, 16) uint8 blake2b-128 of each sentence (UTF-8)
    <key digest>/<shard>.json              n, dim and the sha256 of both .npy files

Each `put` writes one new shard, holding the key's lock (`<key digest>/.lock`) and leaving out the
sentences another process stored meanwhile, so concurrent runs do not store a key's vectors twice;
shards are never modified afterwards. Every file is written to a
temporary name in the same folder and moved into place with `os.replace`, and the shard's .json is
moved last, so a shard without its .json is an unfinished write and is ignored. On first use in a
process a shard's checksums are verified; a corrupt or partial shard is reported with a
`RuntimeWarning`, deleted, and its sentences count as missing, so they are recomputed rather than
silently used. Verified shards are then memory-mapped, so a lookup copies only the rows it needs.

Example:
    >>> cache = EmbeddingCache(tmp_path)
    >>> key = CacheKey("model-sha", "tokenizer-sha", max_length=64, prefix="", pooling="cls")
    >>> cache.put(key, ["a", "b"], vectors)            # vectors: (2, d) float32
    >>> found_indices, found_vectors = cache.get(key, ["b", "c"])   # -> [0], (1, d)
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from stseval.common.errors import StsevalError
from stseval.common.fileio import WriteError, file_sha256, write_bytes_atomic, write_error
from stseval.common.paths import stseval_home

SHARD_FORMAT = 1
_HASH_BYTES = 16


def check_home_writable() -> None:
    """Raise StsevalError (one line) unless $STSEVAL_HOME can take the models and vectors we store there."""
    from stseval.common.fileio import check_writable_dir

    check_writable_dir(stseval_home(), "STSEVAL_HOME",
                       fix="stseval keeps models and embedding vectors there: set STSEVAL_HOME to a writable folder")


def default_cache_root() -> Path:
    """Where `EmbeddingCache()` keeps vectors: $STSEVAL_HOME/embeddings."""
    return stseval_home() / "embeddings"


@dataclass(frozen=True)
class CacheKey:
    """Everything besides the sentence that decides a sentence vector.

    Attributes:
        model_fingerprint: sha256 of the model weights, config and tokenizer (`Encoder.fingerprint`).
        tokenizer_fingerprint: sha256 of the tokenizer files (`Encoder.tokenizer_fingerprint`).
        max_length: truncation length in tokens.
        prefix: text prepended to every sentence before tokenisation, e.g. "query: ".
        pooling: one of `stseval.encoders.pooling.POOLINGS`.
        recipe: how forward passes were shaped: "" the default (grid) path, "query" the query path
            (`encode(..., query=True)`); left out of the digest when "", so existing caches stay valid.
    """

    model_fingerprint: str
    tokenizer_fingerprint: str
    max_length: int
    prefix: str
    pooling: str
    recipe: str = ""

    @property
    def digest(self) -> str:
        """32 hex characters naming this key's folder."""
        fields = json.dumps(self.fields(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(fields.encode("utf-8")).hexdigest()[:32]

    def fields(self) -> dict:
        """The key as a dict, recipe left out when it is the default path's ("")."""
        fields = asdict(self)
        if not self.recipe:
            del fields["recipe"]
        return fields


def sentence_hashes(texts: Sequence[str]) -> list[bytes]:
    """blake2b-128 of each sentence's UTF-8 bytes: n texts -> n 16-byte digests."""
    return [hashlib.blake2b(text.encode("utf-8"), digest_size=_HASH_BYTES).digest() for text in texts]


def _npy_bytes(array: np.ndarray) -> bytes:
    """The .npy file contents of `array`."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


class _CorruptShard(Exception):
    """A shard whose files are missing, unreadable or fail their checksum."""


@dataclass
class _Shard:
    """A verified shard: row of each sentence hash, and the memory-mapped (m, d) vectors."""

    row_of_hash: dict[bytes, int]
    vectors: np.ndarray


class EmbeddingCache:
    """Sentence vectors on disk, checksummed and written atomically; see the module docstring.

    Args:
        root: folder holding one sub-folder per `CacheKey`; None means
            `$STSEVAL_HOME/embeddings`.
    """

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_root()
        self._shards: dict[Path, _Shard] = {}  # verified shards by .json path; shards never change

    def get(self, key: CacheKey, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Look up cached vectors.

        Args:
            key: model, tokenizer, max_length, prefix and pooling.
            texts: n sentences (without the prefix).
        Returns:
            found_indices: (k,) int64 positions in `texts` that are cached, ascending.
            found_vectors: (k, d) float32 vectors of those sentences; (0, 0) when k == 0.
        """
        shards = self._load_shards(key)
        found_list: list[int] = []
        # per shard: (positions in the output, rows in the shard), so each shard is read once
        picks: list[tuple[list[int], list[int]]] = [([], []) for _ in shards]
        if shards:
            for index, text_hash in enumerate(sentence_hashes(texts)):
                for shard, (positions, rows) in zip(shards, picks, strict=True):
                    row = shard.row_of_hash.get(text_hash)
                    if row is not None:
                        positions.append(len(found_list))
                        rows.append(row)
                        found_list.append(index)
                        break
        if not found_list:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        found_vectors = np.empty((len(found_list), shards[0].vectors.shape[1]), dtype=np.float32)
        for shard, (positions, rows) in zip(shards, picks, strict=True):
            if positions:
                found_vectors[positions] = shard.vectors[rows]
        return np.asarray(found_list, dtype=np.int64), found_vectors

    def put(self, key: CacheKey, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store the (n, d) float32 `vectors` of n `texts` as one new shard (no-op when n == 0)."""
        if len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
        if len(texts) == 0:
            return
        folder = self.root / key.digest
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with _key_lock(folder):
                stored, _ = self.get(key, texts)  # a concurrent run may have stored some of them meanwhile
                if len(stored):
                    keep = np.ones(len(texts), dtype=bool)
                    keep[stored] = False
                    texts, vectors = [text for text, kept in zip(texts, keep, strict=True) if kept], vectors[keep]
                if len(texts):
                    self._write_shard(key, folder, texts, vectors)
        except WriteError:  # a shard file; its .json was not written, so earlier shards are all the cache holds
            raise
        except OSError as err:  # the key's folder or its lock (a full disk, a read-only STSEVAL_HOME)
            raise write_error(folder, err) from None

    def _write_shard(self, key: CacheKey, folder: Path, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Write one shard: both arrays first, then the record that commits them."""
        meta_path = folder / "meta.json"
        if not meta_path.exists():
            write_bytes_atomic(json.dumps(key.fields(), indent=1, ensure_ascii=False).encode("utf-8"), meta_path)
        vector_bytes = _npy_bytes(np.ascontiguousarray(vectors, dtype=np.float32))
        hash_rows = np.frombuffer(b"".join(sentence_hashes(texts)), dtype=np.uint8).reshape(-1, _HASH_BYTES)
        hash_bytes = _npy_bytes(hash_rows)
        shard_name = f"{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        write_bytes_atomic(vector_bytes, folder / f"{shard_name}.vectors.npy")
        write_bytes_atomic(hash_bytes, folder / f"{shard_name}.hashes.npy")
        record = {
            "format": SHARD_FORMAT,
            "n": len(texts),
            "dim": int(vectors.shape[1]),
            "vectors_sha256": hashlib.sha256(vector_bytes).hexdigest(),
            "hashes_sha256": hashlib.sha256(hash_bytes).hexdigest(),
        }
        write_bytes_atomic(json.dumps(record).encode("utf-8"), folder / f"{shard_name}.json")  # last: commits

    def _load_shards(self, key: CacheKey) -> list[_Shard]:
        """Every complete, verified shard of `key`; corrupt ones are warned about and deleted."""
        folder = self.root / key.digest
        if not folder.is_dir():
            return []
        shards = []
        for record_path in sorted(folder.glob("*.json")):
            if record_path.name == "meta.json" or record_path.name.startswith("."):
                continue
            shard = self._shards.get(record_path)
            if shard is None:
                try:
                    shard = _verify_shard(record_path)
                except FileNotFoundError:
                    continue  # deleted by another process between glob and open
                except _CorruptShard as err:
                    warnings.warn(
                        f"stseval: embedding cache shard {record_path} is corrupt ({err}); "
                        "deleting it, its sentences will be encoded again",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                    _delete_shard(record_path)
                    continue
                self._shards[record_path] = shard
            shards.append(shard)
        return shards


LOCK_NAME = ".lock"
LOCK_TIMEOUT_S = 600.0  # a shard write takes seconds; a lock held longer belongs to a hung process


def _key_lock(folder: Path):
    """The lock serialising writers (and `clean_cache`) of one key's folder."""
    from filelock import FileLock

    return FileLock(str(folder / LOCK_NAME), timeout=LOCK_TIMEOUT_S)


def _shard_files(record_path: Path) -> tuple[Path, Path]:
    """The .vectors.npy and .hashes.npy that belong to a shard's .json."""
    stem = record_path.name.removesuffix(".json")
    return record_path.with_name(f"{stem}.vectors.npy"), record_path.with_name(f"{stem}.hashes.npy")


def _delete_shard(record_path: Path) -> None:
    """Remove a shard's .json first (so nobody starts reading it), then its arrays."""
    record_path.unlink(missing_ok=True)
    for path in _shard_files(record_path):
        path.unlink(missing_ok=True)


def _verify_shard(record_path: Path) -> _Shard:
    """Check a shard's checksums and shapes, then memory-map it."""
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        n_rows, dim = int(record["n"]), int(record["dim"])
        expected = (record["vectors_sha256"], record["hashes_sha256"])
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise _CorruptShard(f"unreadable record: {err}") from None
    vectors_path, hashes_path = _shard_files(record_path)
    for path, checksum in zip((vectors_path, hashes_path), expected, strict=True):
        if not path.exists():
            raise _CorruptShard(f"{path.name} is missing")
        if file_sha256(path) != checksum:
            raise _CorruptShard(f"{path.name} fails its sha256 checksum")
    try:
        vectors = np.load(vectors_path, mmap_mode="r", allow_pickle=False)
        hashes = np.load(hashes_path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise _CorruptShard(f"unreadable array: {err}") from None
    if vectors.shape != (n_rows, dim) or vectors.dtype != np.float32 or hashes.shape != (n_rows, _HASH_BYTES):
        raise _CorruptShard(f"shapes {vectors.shape} / {hashes.shape} do not match n={n_rows}, dim={dim}")
    hash_buffer = hashes.tobytes()
    row_of_hash = {hash_buffer[row * _HASH_BYTES : (row + 1) * _HASH_BYTES]: row for row in range(n_rows)}
    return _Shard(row_of_hash=row_of_hash, vectors=vectors)


# ------------------------------------------------------------------------------ `stseval cache` upkeep

ORPHAN_MIN_AGE_S = 60.0  # `clean_cache` leaves younger stray files alone: a writer without the lock may own them


@dataclass
class KeySummary:
    """One cache key's folder: what it is for and what it holds."""

    folder: Path
    key: dict  # the CacheKey fields from meta.json ({} when unreadable)
    n_shards: int
    n_vectors: int
    n_bytes: int
    orphans: list[Path]  # files of no committed shard: unfinished writes, temp files


def summarize_cache(root: Path | None = None) -> list[KeySummary]:
    """Every key folder under the cache root with its shard count, vector count, bytes and orphan files.

    Reads records only (no checksums); see `verify_cache` for those.
    """
    root = Path(root) if root is not None else default_cache_root()
    summaries = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        try:
            key = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            key = {}
        records = _records(folder)
        n_vectors = 0
        for record_path in records:
            try:
                n_vectors += int(json.loads(record_path.read_text(encoding="utf-8"))["n"])
            except (OSError, ValueError, KeyError, TypeError):
                pass  # counted by verify_cache as corrupt
        files = [p for p in folder.iterdir() if p.is_file()]
        summaries.append(KeySummary(folder, key if isinstance(key, dict) else {}, len(records), n_vectors,
                                    sum(_stat(p).st_size for p in files), _orphans(folder)))
    return summaries


def verify_cache(root: Path | None = None) -> list[tuple[Path, str]]:
    """Check every shard's checksums and shapes; returns (record path, problem) for each bad one."""
    problems = []
    for summary in summarize_cache(root):
        for record_path in _records(summary.folder):
            try:
                _verify_shard(record_path)
            except FileNotFoundError:
                continue  # deleted meanwhile
            except _CorruptShard as err:
                problems.append((record_path, str(err)))
    return problems


def clean_cache(root: Path | None = None, dry_run: bool = False) -> list[Path]:
    """Delete orphan files (unfinished shards, temp files older than ORPHAN_MIN_AGE_S) and corrupt shards.

    Each key folder is cleaned under its lock, so a shard being written is never taken for an orphan
    (a dry run that cannot take the lock, e.g. in a read-only STSEVAL_HOME, lists without it).
    Returns the paths deleted (or that would be, with dry_run).
    Raises:
        StsevalError naming the lock or file when the cache cannot be written (read-only, no permission).
    """
    removed: list[Path] = []
    now = time.time()
    for summary in summarize_cache(root):
        with _cleaning_lock(summary.folder, dry_run):
            doomed = [p for p in _orphans(summary.folder) if now - _stat(p).st_mtime >= ORPHAN_MIN_AGE_S]
            for record_path in _records(summary.folder):
                try:
                    _verify_shard(record_path)
                except FileNotFoundError:
                    continue
                except _CorruptShard:
                    doomed += [p for p in (record_path, *_shard_files(record_path)) if p.exists()]
            if not dry_run:
                for path in doomed:
                    try:
                        path.unlink(missing_ok=True)
                    except OSError as err:
                        raise StsevalError(f"{path}: cannot delete it ({err.strerror or err}); {_READ_ONLY_FIX}"
                                           ) from None
            removed += doomed
    return removed


_READ_ONLY_FIX = ("`stseval cache clean` deletes files in STSEVAL_HOME's embeddings, so it needs them writable: "
                  "fix their permissions, or run it as their owner")


@contextlib.contextmanager
def _cleaning_lock(folder: Path, dry_run: bool) -> Iterator[None]:
    """Hold a key folder's lock while cleaning it; one line, not a traceback, when it cannot be taken."""
    lock = _key_lock(folder)
    try:
        lock.acquire()
    except OSError as err:
        if dry_run:  # deletes nothing: a listing without the lock is still a true listing
            yield
            return
        raise StsevalError(f"{folder / LOCK_NAME}: cannot take the cache lock ({err.strerror or err}); "
                           f"{_READ_ONLY_FIX}") from None
    try:
        yield
    finally:
        lock.release()


def _orphans(folder: Path) -> list[Path]:
    """Files of a key folder that belong to no committed shard: unfinished writes and temp files."""
    owned = {path for record in _records(folder) for path in (record, *_shard_files(record))}
    owned |= {folder / "meta.json", folder / LOCK_NAME}
    return sorted(p for p in folder.iterdir() if p.is_file() and p not in owned)


def _records(folder: Path) -> list[Path]:
    """The committed shard records (<shard>.json) of a key folder."""
    return sorted(p for p in folder.glob("*.json") if p.name != "meta.json" and not p.name.startswith("."))


def _stat(path: Path) -> os.stat_result:
    """os.stat, or zeros for a file deleted meanwhile (sizes and ages are for reports)."""
    try:
        return path.stat()
    except FileNotFoundError:
        return os.stat_result((0,) * 10)


def format_cache_summary(summaries: list[KeySummary], root: Path) -> str:
    """One line per key (model, pooling, prefix, max_length, shards, vectors, MB, orphans) and a total."""
    lines = []
    for summary in summaries:
        key = summary.key
        what = (f"model {str(key.get('model_fingerprint', '?'))[:12]} {key.get('pooling', '?')} "
                f"max_length={key.get('max_length', '?')} prefix={key.get('prefix', '')!r}")
        orphans = f", {len(summary.orphans)} orphan file(s)" if summary.orphans else ""
        lines.append(f"{summary.folder.name}  {what}: {summary.n_shards} shard(s), {summary.n_vectors} vectors, "
                     f"{summary.n_bytes / 1e6:.1f} MB{orphans}")
    total = sum(summary.n_bytes for summary in summaries)
    n_orphans = sum(len(summary.orphans) for summary in summaries)
    lines.append(f"{root}: {len(summaries)} key(s), {sum(s.n_vectors for s in summaries)} vectors, "
                 f"{total / 1e6:.1f} MB" + (f", {n_orphans} orphan file(s): `stseval cache clean` removes them"
                                            if n_orphans else ""))
    return "\n".join(lines)
