"""The transformer `Encoder`: a tokenizer and a Hugging Face model, and its forward pass over invariant batches.

`load_encoder` (loading.py) builds it from a checked model folder. `Encoder.embed_batches` is the
`SentenceEncoder` method (`protocol.py`) that `encode` (encoder.py) runs: tokenise once, group sentences by
padded width (`batching.py`), one forward pass per batch of exactly `rows` rows, every requested pooling taken
from that pass (`pooling.py`). With `processes` > 1 the batches go to worker processes (`workers.py`) through
the `pool_batches` runner that `load_encoder` sets.

Example:
    >>> encoder = load_encoder("default")            # an Encoder
    >>> rows, pooled = next(encoder.embed_batches(["query: 花呗怎么还款"], ["cls"], 64, 32))   # names: the protocol
    >>> pooled["cls"].shape                          # (1, 384)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from stseval.common.errors import StsevalError
from stseval.common.settings import Pooling
from stseval.encoders import batching
from stseval.encoders.backends import DEFAULT_BACKEND, HiddenStates
from stseval.encoders.fingerprint import tokenizer_files
from stseval.encoders.pooling import pool_all
from stseval.encoders.precision import DEFAULT_PRECISION, autocast
from stseval.encoders.protocol import Batch

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

UNK_REFUSE_SHARE = 0.9
"""`encode` refuses a tokenizer that maps at least this share of a call's tokens to the unknown token.
An empty tokenizer gives 1.0. all-MiniLM-L6-v2's English vocabulary gives at most 0.75 on any split file of
the five tasks and the tests' 50-character vocabulary at most 0.78 (measured over every file); both still run."""
UNK_CHECK_MIN_TOKENS = 64
"""Fewer tokens than this (special tokens aside) are not judged: one short sentence of rare
characters may be all unknown under a sound tokenizer."""

PaddedBatch = dict[str, np.ndarray]
"""One forward pass's inputs: input_ids, attention_mask (and token_type_ids), each (rows, width) int64."""
PoolBatches = Callable[["Encoder", Iterator[PaddedBatch], list[Pooling]], Iterator[dict[str, np.ndarray]]]
"""Runs `Encoder.pool_batch` over padded batches elsewhere (worker processes), results in input order."""


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
        pool_batches: runs batches in the `processes` worker processes (`workers.py`; set by `load_encoder`
            when processes > 1); None runs them in this process.
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
    pool_batches: PoolBatches | None = field(default=None, repr=False)

    def forward(self, batch: dict[str, torch.Tensor]) -> Sequence[torch.Tensor]:
        """(n_layers + 1) float32 hidden states of shape (b, s, h) for one padded batch."""
        if self.hidden_states is not None:
            return self.hidden_states(batch)
        with autocast(self.device, self.precision):
            hidden = self.model(**batch, output_hidden_states=True, return_dict=True).hidden_states
        # under bf16 the layers' outputs are bfloat16: pool, whiten and score in float32
        return hidden if self.precision == DEFAULT_PRECISION else tuple(h.float() for h in hidden)

    def pool_batch(self, batch: PaddedBatch, poolings: list[Pooling]) -> dict[str, np.ndarray]:
        """One forward pass over a padded batch: {str(pooling): (b, d) float32 vectors}."""
        with torch.inference_mode():
            tensors = {name: torch.from_numpy(values).to(self.device) for name, values in batch.items()}
            pooler_dense = self.model.get_submodule("pooler.dense") if self.has_pooler else None
            pooled = pool_all(poolings, self.forward(tensors), tensors["attention_mask"], pooler_dense)
            return {str(pooling): pooled[pooling].float().cpu().numpy() for pooling in poolings}

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
        """The `SentenceEncoder` method, which speaks names (`str(Pooling)`): `can_pool` of the name's value."""
        value = Pooling.read(pooling)  # the one reader of names; None for a name that is no pooling
        return value is not None and self.can_pool(value)

    def can_pool(self, pooling: Pooling) -> bool:
        """Whether `encode` can produce `pooling` with this model (pooler needs trained weights)."""
        if pooling.layer is not None:  # layer-avg:N, N = 0 (embedding output) .. n_layers
            return pooling.layer <= self.n_layers
        if not pooling.needs_hidden_states:  # `sentence`: the output of sentence-vector encoders only
            return False
        if pooling.needs_pooler:
            return self.has_pooler
        if pooling.kind in ("first-last-avg", "last2avg"):
            return self.n_layers >= 2
        return True

    def embed_batches(self, texts: Sequence[str], poolings: Sequence[str], max_length: int,
                      batch_size: int) -> Iterator[Batch]:
        """The `SentenceEncoder` method: (rows, {pooling: (len(rows), d) float32}) per forward pass.

        `poolings` are names, as the protocol passes them (`encode` checked them with `supports`); each is
        read once into its `Pooling` value here. Sentences are tokenised once and grouped by padded width
        (`bucket_widths`), every batch filled to exactly min(batch_size, INVARIANT_BATCH_ROWS) rows, widest
        first; with `processes` > 1 the batches run in worker processes. See `encode`.
        """
        values = [Pooling.read(name) for name in poolings]
        unknown = [name for name, value in zip(poolings, values, strict=True) if value is None]
        if unknown:
            raise StsevalError(f"--pooling {','.join(unknown)}: not available for model {self.name}")
        return transformer_batches(self, texts, [value for value in values if value is not None],
                                   min(max_length, self.max_positions), batch_size)


def transformer_batches(encoder: Encoder, texts: Sequence[str], poolings: list[Pooling], max_length: int,
                        batch_size: int, query: bool = False) -> Iterator[Batch]:
    """`Encoder.embed_batches`: (rows, {str(pooling): (len(rows), d)}) per invariant forward pass, widest first.

    query=True: QUERY_ROWS rows per pass and widths rounded up to QUERY_WIDTH_STEP (see `encode`)."""
    encodings = encoder.tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    check_unknown_share(encoder, texts, encodings["input_ids"])
    input_names = [name for name in ("input_ids", "token_type_ids", "attention_mask") if name in encodings]
    lengths = np.fromiter((len(ids) for ids in encodings["input_ids"]), dtype=np.int64, count=len(texts))
    pad_id = encoder.tokenizer.pad_token_id or 0

    widths = batching.query_widths(lengths) if query else batching.bucket_widths(lengths)
    rows = batching.QUERY_ROWS if query else min(batch_size, batching.INVARIANT_BATCH_ROWS)

    def padded_batch(batch_rows: np.ndarray) -> PaddedBatch:
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

    batches = batching.invariant_batches(widths, rows)
    inputs = (padded_batch(batching.fill_rows(batch_rows, rows)) for batch_rows in batches)
    if encoder.processes > 1:
        if encoder.pool_batches is None:
            raise RuntimeError(f"{encoder.name}: processes={encoder.processes} but no worker runner; "
                               "load the encoder with load_encoder(..., processes=N)")
        pooled_batches = encoder.pool_batches(encoder, inputs, poolings)
    else:
        pooled_batches = (encoder.pool_batch(batch, poolings) for batch in inputs)
    names = [str(pooling) for pooling in poolings]
    for batch_rows, pooled in zip(batches, pooled_batches, strict=True):
        yield batch_rows, {name: pooled[name][: len(batch_rows)] for name in names}  # the rest are fill copies


def check_unknown_share(encoder: Encoder, texts: Sequence[str], input_ids: Sequence[Sequence[int]]) -> None:
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
    found = ", ".join(path.name for path in tokenizer_files(encoder.folder)) or "none"
    raise StsevalError(
        f"--model {encoder.name}: its tokenizer maps {n_unknown} of the {n_tokens} tokens of {len(texts)} "
        f"sentences to the unknown token {encoder.tokenizer.unk_token} (e.g. {example[:30]!r}), so every "
        f"sentence would get nearly the same vector; the tokenizer files in {encoder.folder}: {found}. "
        "Copy the tokenizer the weights were trained with into the folder")
