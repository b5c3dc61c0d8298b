"""Texts -> (n, d) float32 sentence vectors: `encode`, with dedupe, the vector cache and a progress bar.

`encode` turns sentences into vectors for several poolings at once through the `SentenceEncoder` protocol
(`protocol.py`) alone, so deduplication, the `EmbeddingCache` and the progress bar work for every encoder;
`query=True` is the query path for a few sentences. Where the rest of the encoder lives:

    loading.py      load_encoder: a --model value -> Encoder or another SentenceEncoder
    folders.py      --model value -> checked local folder (default model, paths, hub), list_models
    transformer.py  the Encoder class: tokenizer + Hugging Face model, its forward pass over batches
    batching.py     batch plans that keep a vector independent of its batch-mates
    workers.py      --processes N: forward passes in worker processes
    fingerprint.py  sha256 fingerprints of model files (memoised for big files)

The names other modules imported from here before the split (load_encoder, Encoder, TOKENIZER_FILES,
files_fingerprint, ...) are re-exported, so `from stseval.encoders.encoder import load_encoder` keeps working.

Example:
    >>> encoder = load_encoder("default")
    >>> vectors = encode(encoder, ["今天天气很好", "天气不错"], parse_poolings("cls,last-avg"), max_length=64,
    ...                  prefix="query: ")
    >>> vectors["last-avg"].shape            # (2, 384): keyed by str(pooling), the name rows hold
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from stseval.common.errors import StsevalError
from stseval.common.settings import Pooling, parse_poolings
from stseval.encoders.batching import (
    INVARIANT_BATCH_ROWS,
    QUERY_ROWS,
    QUERY_WIDTH_STEP,
    bucket_widths,
    query_widths,
)
from stseval.encoders.cache import CacheKey, EmbeddingCache
from stseval.encoders.fingerprint import TOKENIZER_FILES, file_sha256_memoised, files_fingerprint
from stseval.encoders.folders import (
    DEFAULT_MODEL_LABEL,
    DEFAULT_MODEL_NAMES,
    VOCABULARY_FILES,
    list_models,
)
from stseval.encoders.folders import resolve_folder as _resolve_folder
from stseval.encoders.loading import load_encoder
from stseval.encoders.precision import autocast
from stseval.encoders.protocol import SentenceEncoder, can_pool, supported_poolings
from stseval.encoders.transformer import UNK_CHECK_MIN_TOKENS, UNK_REFUSE_SHARE, Encoder, transformer_batches

__all__ = [  # encode's own names, then what other modules import from here (moved in the split)
    "QUERY_RECIPE", "encode",
    "DEFAULT_MODEL_LABEL", "DEFAULT_MODEL_NAMES", "INVARIANT_BATCH_ROWS", "QUERY_ROWS", "QUERY_WIDTH_STEP",
    "TOKENIZER_FILES", "UNK_CHECK_MIN_TOKENS", "UNK_REFUSE_SHARE", "VOCABULARY_FILES", "Encoder", "_resolve_folder",
    "autocast", "bucket_widths", "file_sha256_memoised", "files_fingerprint", "list_models", "load_encoder",
    "query_widths",
]

QUERY_RECIPE = "query"
"""`CacheKey.recipe` of vectors from the query path (`encode(..., query=True)`)."""


def encode(
    encoder: SentenceEncoder,
    texts: Sequence[str],
    poolings: Sequence[Pooling | str] | Pooling | str,
    max_length: int,
    prefix: str = "",
    batch_size: int = 64,
    cache: EmbeddingCache | None = None,
    show_progress: bool = True,
    cache_every: int = 4096,
    query: bool = False,
) -> dict[str, np.ndarray]:
    """Encode sentences into one (n, d) float32 array per pooling, in input order.

    Duplicate sentences are encoded once and cached ones not at all. The rest go, prefix in front,
    through the encoder's `embed_batches` (`protocol.py`). A transformer `Encoder` tokenises them,
    groups them by token length and runs one forward pass per batch, from which every requested
    pooling is taken. Each batch holds one padded width (`bucket_widths`: at most 12.5% padding)
    and exactly min(batch_size, 32) rows, filled up with copies, so a sentence's vector does not
    depend on which other sentences are encoded with it (bit for bit on one machine, build and
    thread count); the protocol asks the same of every encoder.

    Args:
        encoder: from `load_encoder`, or any `SentenceEncoder`.
        texts: n sentences; duplicates allowed.
        poolings: `Pooling` values, as the runs carry them (parsed once, at the edge); a Python caller may
            give names instead ("cls,last-avg", ["cls"]), which `stseval.common.settings.parse_poolings`, the
            one parser, reads. Filter with `can_pool` first if the model may lack a pooler.
        max_length: truncate to this many tokens, [CLS] and [SEP] included (encoders without a
            token limit ignore it).
        prefix: prepended to every sentence before tokenisation, e.g. "query: " for e5 models.
        batch_size: at most this many sentences per forward pass (capped at INVARIANT_BATCH_ROWS).
        cache: reuse and store vectors here; None computes everything.
        show_progress: draw a tqdm bar (sentences/s) on stderr while encoding.
        cache_every: write a cache shard each time about this many new sentences are encoded; on
            Ctrl-C the sentences encoded since are written too, so only the batch in flight is lost.
        query: the query path for a few sentences (a transformer `Encoder` only; others ignore it): every
            forward pass has QUERY_ROWS rows and a width of the sentence's length rounded up to
            QUERY_WIDTH_STEP, so one sentence costs about one bare forward. Vectors are again independent of
            their batch-mates, bit for bit, but differ from the default path's in the last float bits
            (~1e-7), so they are cached under their own key.
    Returns:
        {str(pooling): (n, d) float32 array}, row i belonging to texts[i]: keyed by the name results rows
        hold (`str` is the one formatter), as the cache keys and the `SentenceEncoder` protocol are.
    Raises:
        StsevalError naming `--pooling`, `--max-length` or `--batch-size` for unusable settings.
    """
    values = parse_poolings(poolings)  # Pooling values pass through as they are
    unsupported = [str(pooling) for pooling in values if not can_pool(encoder, pooling)]
    if unsupported:
        raise StsevalError(f"--pooling {','.join(unsupported)}: not available for model {encoder.name} "
                           f"{_why_unsupported(encoder)}")
    names = [str(pooling) for pooling in values]
    if max_length < 2:
        raise StsevalError(f"--max-length {max_length}: must be at least 2 ([CLS] and [SEP])")
    if batch_size < 1:
        raise StsevalError(f"--batch-size {batch_size}: must be at least 1")
    # other encoders' fingerprints cover their tokenizer (SentenceEncoder.fingerprint)
    tokenizer_fingerprint = ""
    if isinstance(encoder, Encoder):
        # PAWSX asks for 128 tokens; a model with fewer positions gets what it can take
        max_length = min(max_length, encoder.max_positions)
        tokenizer_fingerprint = encoder.tokenizer_fingerprint

    row_of_text = {text: row for row, text in enumerate(dict.fromkeys(texts))}
    unique_texts = list(row_of_text)
    input_rows = np.fromiter((row_of_text[text] for text in texts), dtype=np.int64, count=len(texts))
    vectors = {name: np.empty((len(unique_texts), encoder.dimension), dtype=np.float32) for name in names}

    keys = {
        name: CacheKey(encoder.fingerprint, tokenizer_fingerprint, max_length, prefix, name,
                       recipe=QUERY_RECIPE if query and isinstance(encoder, Encoder) else "")
        for name in names
    }
    missing_by_pooling = {name: np.ones(len(unique_texts), dtype=bool) for name in names}
    if cache is not None and unique_texts:
        for name in names:
            found_rows, found_vectors = cache.get(keys[name], unique_texts)
            if len(found_rows):
                vectors[name][found_rows] = found_vectors
            missing_by_pooling[name][found_rows] = False
    missing_rows = np.flatnonzero(np.logical_or.reduce(list(missing_by_pooling.values())))

    def store(rows: np.ndarray, chunk: dict[str, np.ndarray]) -> None:
        """Take finished vectors of unique_texts[rows] and write them to the cache as one shard."""
        for name in names:
            vectors[name][rows] = chunk[name]
            if cache is not None:
                new = missing_by_pooling[name][rows]  # cached already for this pooling: not again
                cache.put(keys[name], [unique_texts[row] for row in rows[new]], chunk[name][new])

    if len(missing_rows):
        _encode_uncached(encoder, [unique_texts[row] for row in missing_rows], values, max_length, prefix,
                         batch_size, show_progress, lambda done, chunk: store(missing_rows[done], chunk),
                         cache_every if cache is not None else len(missing_rows), query)
    return {name: vectors[name][input_rows] for name in names}


def _why_unsupported(encoder: SentenceEncoder) -> str:
    """The reason part of encode's unsupported-pooling message."""
    if isinstance(encoder, Encoder):
        return (f"(has_pooler={encoder.has_pooler}, layers={encoder.n_layers}); pooler and pooler-tanh need "
                "trained pooler weights, and 'sentence' is the output of sentence-vector encoders only")
    return f"(it gives {', '.join(supported_poolings(encoder)) or 'nothing'} only)"


def _encode_uncached(
    encoder: SentenceEncoder,
    texts: list[str],
    poolings: list[Pooling],
    max_length: int,
    prefix: str,
    batch_size: int,
    show_progress: bool,
    on_chunk: Callable[[np.ndarray, dict[str, np.ndarray]], None],
    chunk_size: int,
    query: bool = False,
) -> None:
    """Run the encoder over `texts` (prefix in front), in the batches its `embed_batches` yields.

    Every time at least chunk_size sentences are done (and at the end) calls
    on_chunk(rows, {pooling: (len(rows), d) vectors of texts[rows]}), so a caller can store them
    before the rest is encoded. On Ctrl-C (KeyboardInterrupt) the batches finished since the last
    chunk are handed over too before it propagates: an interrupted run loses only the batch in flight.
    """
    from tqdm.auto import tqdm

    prefixed = [prefix + text for text in texts]
    names = [str(pooling) for pooling in poolings]  # what the protocol speaks and the batches are keyed by
    if query and isinstance(encoder, Encoder):
        batches = transformer_batches(encoder, prefixed, poolings, min(max_length, encoder.max_positions), batch_size,
                                      query=True)
    else:
        batches = encoder.embed_batches(prefixed, names, max_length, batch_size)
    yielded = np.zeros(len(texts), dtype=bool)
    done: list[np.ndarray] = []
    chunk: dict[str, list[np.ndarray]] = {name: [] for name in names}
    try:
        with tqdm(total=len(texts), unit="sent", desc=f"encode {encoder.name}", disable=not show_progress) as bar:
            for batch_rows, pooled in batches:
                batch_rows = np.asarray(batch_rows, dtype=np.int64)
                _check_batch(encoder, batch_rows, pooled, names, yielded)
                done.append(batch_rows)
                for name in names:
                    chunk[name].append(np.asarray(pooled[name], dtype=np.float32))
                if sum(map(len, done)) >= chunk_size:
                    on_chunk(np.concatenate(done), {name: np.concatenate(chunk[name]) for name in names})
                    done, chunk = [], {name: [] for name in names}
                bar.update(len(batch_rows))
    except KeyboardInterrupt:
        if done:  # finished batches are kept (a chunk stored twice is stored once: the cache skips known texts)
            on_chunk(np.concatenate(done), {name: np.concatenate(chunk[name]) for name in names})
        raise
    if done:
        on_chunk(np.concatenate(done), {name: np.concatenate(chunk[name]) for name in names})
    if not yielded.all():
        raise RuntimeError(f"{encoder.name}: embed_batches left {int((~yielded).sum())} of {len(texts)} texts out")


def _check_batch(encoder: SentenceEncoder, rows: np.ndarray, pooled: dict[str, np.ndarray], names: list[str],
                 yielded: np.ndarray) -> None:
    """Catch an encoder whose batch breaks the protocol before its vectors land in the cache."""
    in_range = rows.ndim == 1 and (len(rows) == 0 or (rows.min() >= 0 and rows.max() < len(yielded)))
    if not in_range or yielded[rows].any() or len(np.unique(rows)) != len(rows):
        raise RuntimeError(f"{encoder.name}: embed_batches yielded rows out of range or twice")
    for name in names:
        shape = np.shape(pooled[name]) if name in pooled else ()
        if shape != (len(rows), encoder.dimension):
            raise RuntimeError(f"{encoder.name}: embed_batches gave {name} vectors of shape {shape}, "
                               f"expected {(len(rows), encoder.dimension)}")
    yielded[rows] = True
