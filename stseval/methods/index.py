"""FAISS indexes over sentence vectors: build, search, dimension reduction, save/load.

Every vector is L2-normalised before it enters an index or a search, so the inner product FAISS ranks
by is the cosine the STS scores use. `Flat` (the default) is exact search (`IndexFlatIP`); any other
`faiss.index_factory` string (`HNSW32`, `IVF1024,Flat`, `IVF1024,PQ16`, ...) builds an approximate
index over the same inner product, trained on the corpus itself when it needs training.

Pure functions over arrays, except `save_index` / `load_index`, which write and read an index folder:

    index.faiss       faiss.serialize_index bytes
    sentences.jsonl   one JSON string per line, row i of the index is line i
    whitening.npz     the whitening queries must go through (absent when the index is not whitened)
    meta.json         IndexMetadata, with the sha256 of each file above; written last

Retrieval evaluation (queries from the STS pairs, recall/MRR/nDCG, 8.33 ln N) is in
`stseval.evaluation.retrieval`; building and timing an index on it in `stseval.evaluation.index_eval`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from stseval.common.arrays import l2_normalize
from stseval.common.errors import StsevalError
from stseval.common.fileio import file_sha256, write_bytes_atomic
from stseval.common.settings import Pooling
from stseval.common.version import __version__
from stseval.methods.whitening import Whitening, load_whitening, save_whitening
from stseval.options import REDUCTION_METHODS  # noqa: F401 - re-exported; its one home is options (torch-free)

DEFAULT_FACTORY = "Flat"
INDEX_FILE = "index.faiss"
SENTENCES_FILE = "sentences.jsonl"
WHITENING_FILE = "whitening.npz"
METADATA_FILE = "meta.json"
FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------------------
# build and search


def build_index(vectors: np.ndarray, factory: str = DEFAULT_FACTORY, search_params: str = "",
                seed: int = 0) -> faiss.Index:
    """Build an inner-product FAISS index over L2-normalised vectors, training it first if needed.

    Args:
        vectors: (n, d) float vectors; normalised here, so inner product is cosine.
        factory: "Flat" (exact, IndexFlatIP) or a faiss.index_factory string such as "HNSW32",
            "IVF1024,Flat", "IVF1024,PQ16". Trained on `vectors` themselves when the index needs it.
        search_params: faiss ParameterSpace string applied after building, e.g. "nprobe=16" or
            "efSearch=128"; it is saved with the index ("" keeps FAISS's defaults: nprobe=1, efSearch=16).
        seed: seeds the k-means of IVF and PQ training (HNSW uses FAISS's fixed seed), so the same
            input gives the same index.
    Returns:
        the index, holding n vectors; row i of `vectors` has id i.
    Raises:
        StsevalError naming --index when the string does not parse or the corpus is too small to train it.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
        >>> scores, ids = search(build_index(x), x[:2], top_k=1); ids.ravel().tolist()
        [0, 1]
    """
    vectors = np.ascontiguousarray(l2_normalize(vectors))
    n_vectors, dim = vectors.shape
    if n_vectors == 0:
        raise StsevalError("cannot build an index over an empty corpus")
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        raise StsevalError(f"--index {factory!r}: {_faiss_message(err)} (try Flat, HNSW32 or IVF1024,PQ16)") from None
    _prepare_training(index, seed)
    if not index.is_trained:
        needed, reason = min_training_vectors(index)
        if n_vectors < needed:
            suggestion = max(1, int(math.sqrt(n_vectors)))
            raise StsevalError(
                f"--index {factory!r}: {reason} need at least {needed} training vectors but the corpus has "
                f"{n_vectors}; use fewer lists/centroids (about sqrt(n), e.g. IVF{suggestion},Flat) or Flat")
        try:
            index.train(vectors)
        except RuntimeError as err:
            raise StsevalError(
                f"--index {factory!r}: training on {n_vectors} vectors failed: {_faiss_message(err)}") from None
    index.add(vectors)
    set_search_params(index, search_params)
    return index


def min_training_vectors(index: faiss.Index) -> tuple[int, str]:
    """How many vectors an untrained index needs to train, and why (IVF lists, PQ centroids)."""
    needed, reason = 1, "training"
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        needed, reason = int(ivf.nlist), f"{ivf.nlist} inverted lists"
    for part in (index, ivf):
        pq = getattr(faiss.downcast_index(part), "pq", None) if part is not None else None
        if pq is not None and pq.ksub > needed:
            needed, reason = int(pq.ksub), f"{pq.ksub} centroids per PQ sub-quantizer"
    return needed, reason


def set_search_params(index: faiss.Index, search_params: str) -> None:
    """Apply a faiss ParameterSpace string ("nprobe=16", "efSearch=128,...") to an index in place."""
    if not search_params:
        return
    try:
        # the stub lists only the (index, name, value) overload; faiss also takes one "a=1,b=2" string
        faiss.ParameterSpace().set_index_parameters(index, search_params)  # type: ignore[arg-type]
    except RuntimeError as err:
        raise StsevalError(f"--search-params {search_params!r}: {_faiss_message(err)}; "
                           "IVF indexes take nprobe=N, HNSW ones efSearch=N") from None


def search(index: faiss.Index, queries: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest neighbours of each query by cosine.

    Args:
        index: built by `build_index` (holds normalised vectors).
        queries: (q, d) float vectors, transformed like the corpus (same whitening / truncation).
        top_k: neighbours per query.
    Returns:
        scores (q, top_k) float32 cosines, best first, and ids (q, top_k) int64 corpus rows;
        -1 / -inf pad rows that have fewer than top_k neighbours.
    """
    if queries.ndim != 2 or queries.shape[1] != index.d:
        raise StsevalError(f"queries of shape {queries.shape} do not match a {index.d}-d index")
    scores, ids = index.search(np.ascontiguousarray(l2_normalize(queries)), top_k)
    scores[ids < 0] = -np.inf
    return scores, ids


def index_nbytes(index: faiss.Index) -> int:
    """Size of the index as FAISS serialises it: the memory its vectors and structures take."""
    return int(faiss.serialize_index(index).nbytes)


def _prepare_training(index: faiss.Index, seed: int) -> None:
    """Seed the k-means of IVF and PQ training (HNSW levels already use FAISS's fixed seed), and skip
    polysemous training: it only reorders PQ codes for Hamming pre-filtering, which stseval never
    uses (ADC results are the same), yet takes 20-40 s per index even on a few thousand vectors."""
    for part in (index, faiss.try_extract_index_ivf(index)):
        part = faiss.downcast_index(part) if part is not None else None
        if part is not None and hasattr(part, "do_polysemous_training"):
            part.do_polysemous_training = False
        for clustering_params in (getattr(part, "cp", None), getattr(getattr(part, "pq", None), "cp", None)):
            if clustering_params is not None:
                clustering_params.seed = seed


def _faiss_message(err: RuntimeError) -> str:
    """The readable tail of a FAISS C++ error, without the source location."""
    return str(err).strip().splitlines()[-1].rsplit(": ", 1)[-1]


# ---------------------------------------------------------------------------------------------
# dimension reduction


def truncate_dims(vectors: np.ndarray, n_dims: int | None) -> np.ndarray:
    """Keep the first n_dims coordinates and renormalise (no PCA: this is NOT whitening).

    Args:
        vectors: (n, d) float vectors.
        n_dims: dimensions kept, 1..d; None keeps all d.
    Returns:
        (n, n_dims) float32 unit vectors.
    """
    dim = vectors.shape[1]
    if n_dims is not None and not 1 <= n_dims <= dim:
        raise StsevalError(f"--dims: {n_dims} is outside 1..{dim} (the vector size)")
    return l2_normalize(vectors[:, :n_dims])


def whiten_dims(vectors: np.ndarray, whitening: Whitening, n_dims: int | None) -> np.ndarray:
    """Whiten with the first n_dims directions of a fitted whitening, then normalise.

    Fitting once with all components and keeping the first k columns equals fitting with
    n_components=k, since the kernel's columns are sorted by variance (whitening.fit_whitening).

    Args:
        vectors: (n, d) float vectors.
        whitening: fitted on the corpus (or elsewhere) with at least n_dims components.
        n_dims: directions kept; None keeps all the whitening has.
    Returns:
        (n, n_dims) float32 unit vectors.
    """
    if n_dims is not None and not 1 <= n_dims <= whitening.n_components:
        raise StsevalError(f"--dims: {n_dims} is outside 1..{whitening.n_components} (the whitening's components)")
    kept = whitening if n_dims is None else whitening.truncate(n_dims)
    return l2_normalize(kept.apply(vectors))


def whitening_digest(whitening: Whitening | None) -> str:
    """A short content hash of (mu, kernel), so two whitenings compare equal iff their numbers do."""
    if whitening is None:
        return ""
    digest = hashlib.sha256()
    for array in (whitening.mu, whitening.kernel):
        array = np.ascontiguousarray(array, dtype=np.float32)
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# save and load


@dataclass
class IndexMetadata:
    """What an index folder holds and how its vectors were made; queries must be made the same way."""

    model: str
    model_fingerprint: str
    pooling: str
    prefix: str
    max_length: int
    dims: int
    n_vectors: int
    factory: str = DEFAULT_FACTORY
    search_params: str = ""
    corpus: str = ""  # where the sentences came from: "ATEC/test" or a file path
    data_sha256: str = ""
    # None, or {"digest", "n_components", "source" (file path or "fit on <corpus>"), "provenance"}
    whitening: dict | None = None
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256, filled by save_index
    format_version: int = FORMAT_VERSION
    stseval_version: str = __version__
    faiss_version: str = faiss.__version__
    created_at: str = ""


@dataclass
class LoadedIndex:
    """An index folder read back: row i of `index` is `sentences[i]`."""

    index: faiss.Index
    sentences: list[str]
    metadata: IndexMetadata
    whitening: Whitening | None
    path: Path


def save_index(index_dir: Path, index: faiss.Index, sentences: list[str], metadata: IndexMetadata,
               whitening: Whitening | None = None) -> IndexMetadata:
    """Write an index folder, each file atomically and meta.json last.

    A reader that finds meta.json finds files whose sha256 it records, so a folder caught mid-rewrite
    is refused by `load_index` rather than searched with mismatched parts.

    Args:
        index_dir: folder to create or overwrite.
        index: built by `build_index`; row i must be sentences[i].
        sentences: (n,) corpus texts.
        metadata: model, pooling, prefix ... of the vectors; `files` and `created_at` are filled here.
        whitening: the whitening the corpus vectors went through, or None.
    Returns:
        the metadata as written.
    """
    if index.ntotal != len(sentences):
        raise ValueError(f"index holds {index.ntotal} vectors but {len(sentences)} sentences were given")
    if index.d != metadata.dims:
        raise ValueError(f"index is {index.d}-d but metadata says {metadata.dims}")
    if (whitening is None) != (metadata.whitening is None):
        raise ValueError("metadata.whitening and the whitening passed disagree")
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    # remove the old manifest first: until the new one lands, the folder reads as incomplete
    (index_dir / METADATA_FILE).unlink(missing_ok=True)
    files = {
        INDEX_FILE: write_bytes_atomic(faiss.serialize_index(index).tobytes(), index_dir / INDEX_FILE),
        SENTENCES_FILE: write_bytes_atomic(
            "".join(json.dumps(text, ensure_ascii=False) + "\n" for text in sentences).encode("utf-8"),
            index_dir / SENTENCES_FILE),
    }
    if whitening is not None:
        save_whitening(whitening, index_dir / WHITENING_FILE)
        files[WHITENING_FILE] = file_sha256(index_dir / WHITENING_FILE)
    else:
        (index_dir / WHITENING_FILE).unlink(missing_ok=True)
    metadata = dataclasses.replace(
        metadata, files=files, n_vectors=int(index.ntotal),
        created_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    text = json.dumps(dataclasses.asdict(metadata), ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    write_bytes_atomic(text.encode("utf-8"), index_dir / METADATA_FILE)
    return metadata


def load_index(index_dir: Path) -> LoadedIndex:
    """Read an index folder written by `save_index`, checking every file against meta.json.

    Raises:
        StsevalError naming the folder when it is not an index, is from a newer format, or a file is
        missing or differs from what meta.json recorded.
    """
    index_dir = Path(index_dir)
    meta_path = index_dir / METADATA_FILE
    if not meta_path.is_file():
        raise StsevalError(
            f"{index_dir}: not a stseval index (no {METADATA_FILE}); build one with `stseval index build`")
    try:
        raw = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise StsevalError(f"{meta_path}: unreadable index metadata ({err}); rebuild the index") from None
    metadata = _metadata_from_json(raw, meta_path)
    for name, expected in metadata.files.items():
        path = index_dir / name
        if not path.is_file():
            raise StsevalError(f"{path}: missing from the index folder; rebuild the index")
        if file_sha256(path) != expected:
            raise StsevalError(f"{path}: changed since {METADATA_FILE} was written (interrupted rebuild?); "
                               "rebuild the index")
    try:
        index = faiss.deserialize_index(np.fromfile(index_dir / INDEX_FILE, dtype=np.uint8))
        with open(index_dir / SENTENCES_FILE, encoding="utf-8") as handle:
            sentences = [json.loads(line) for line in handle]
    except (RuntimeError, ValueError) as err:  # files match meta.json, but meta.json was not ours
        raise StsevalError(f"{index_dir}: unreadable index files ({str(err).strip().splitlines()[0]}); "
                           "rebuild the index") from None
    if not all(isinstance(sentence, str) for sentence in sentences):
        raise StsevalError(f"{index_dir / SENTENCES_FILE}: a line is not a JSON string; rebuild the index")
    whitening = load_whitening(index_dir / WHITENING_FILE) if WHITENING_FILE in metadata.files else None
    if not index.ntotal == len(sentences) == metadata.n_vectors or index.d != metadata.dims:
        raise StsevalError(f"{index_dir}: index ({index.ntotal} x {index.d}), sentences ({len(sentences)}) and "
                           f"{METADATA_FILE} ({metadata.n_vectors} x {metadata.dims}) disagree; rebuild the index")
    return LoadedIndex(index, sentences, metadata, whitening, index_dir)


_METADATA_TYPES: dict[str, type | tuple[type, ...]] = {
    "str": str, "int": int, "dict | None": (dict, type(None)), "dict[str, str]": dict}


def _metadata_from_json(raw, meta_path: Path) -> IndexMetadata:
    """IndexMetadata from parsed meta.json, refusing any field of the wrong type and a `files` list that
    does not cover the index, its sentences and its whitening (the integrity check must never be empty)."""
    def refuse(problem: str) -> StsevalError:
        return StsevalError(f"{meta_path}: {problem}; not index metadata written by stseval, rebuild the index")

    if not isinstance(raw, dict):
        raise refuse(f"holds a JSON {type(raw).__name__}, not an object")
    fields = {f.name: f for f in dataclasses.fields(IndexMetadata)}
    missing = [name for name, f in fields.items()
               if name not in raw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise refuse(f"lacks {', '.join(missing)}")
    for name, value in raw.items():
        if name not in fields:
            continue  # written by a newer stseval of the same format: ignore
        expected = _METADATA_TYPES[str(fields[name].type)]
        if isinstance(value, bool) or not isinstance(value, expected):
            raise refuse(f"{name} is {json.dumps(value)[:40]}, not of type {fields[name].type}")
    metadata = IndexMetadata(**{key: value for key, value in raw.items() if key in fields})
    if metadata.format_version > FORMAT_VERSION:
        raise StsevalError(f"{meta_path}: index format {metadata.format_version} is newer than this stseval "
                           f"reads ({FORMAT_VERSION}); upgrade stseval or rebuild the index")
    needed = {INDEX_FILE, SENTENCES_FILE} | ({WHITENING_FILE} if metadata.whitening is not None else set())
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.files.items()):
        raise refuse("files is not a map of file names to sha256")
    if not needed <= set(metadata.files):
        raise refuse(f"files lists no checksum for {', '.join(sorted(needed - set(metadata.files)))}")
    return metadata


def check_query_settings(loaded: LoadedIndex, model_fingerprint: str, pooling: Pooling, prefix: str,
                         whitening: Whitening | None) -> None:
    """Refuse to search with queries made differently from the corpus vectors.

    Vectors from another model, pooling, prefix or whitening live in another space: the search would
    run and return confident nonsense, so a mismatch is an error rather than a warning.

    Raises:
        StsevalError listing each setting that differs, with the index's value.
    """
    meta = loaded.metadata
    problems = []
    if model_fingerprint != meta.model_fingerprint:
        problems.append(f"model fingerprint {model_fingerprint!r} != {meta.model_fingerprint!r} ({meta.model})")
    if str(pooling) != meta.pooling:  # meta.json holds str(pooling), the one formatter's text
        problems.append(f"pooling {str(pooling)!r} != {meta.pooling!r}")
    if prefix != meta.prefix:
        problems.append(f"prefix {prefix!r} != {meta.prefix!r}")
    query_digest = whitening_digest(whitening)
    index_digest = (meta.whitening or {}).get("digest", "")
    if query_digest != index_digest:
        problems.append(f"whitening {query_digest or 'none'} != {index_digest or 'none'}")
    if problems:
        raise StsevalError(f"{loaded.path}: query encoder does not match the index: {'; '.join(problems)}. "
                           f"Search with the settings in {loaded.path / METADATA_FILE} or rebuild the index")
