"""Precomputed sentence vectors as a `SentenceEncoder`: `--model vectors:DIR`.

For vectors made elsewhere (an embedding API, another toolkit): DIR holds the sentences, their
vectors and a manifest, and every run treats them like a model's output (`sentence` pooling,
whitening, retrieval, cache, provenance). Sentences are looked up exactly, with any `--prefix`
in front; a sentence the files lack is an error that says how many are missing and shows the
first few, before anything is scored.

DIR/manifest.json:

    {"name": "text-embedding-3-small",        # the model name results rows carry
     "dimension": 1536,                        # d of every vector
     "files": [{"sentences": "part-0.txt",     # UTF-8, one sentence per line (\\n or \\r\\n)
                "vectors": "part-0.npy"},      # (n, d) float array, row i = line i
               {"parquet": "part-1.parquet"}]} # columns `sentence` (string), `vector` (list of d floats)

`write_vectors_dir` writes such a folder from arrays. The fingerprint is sha256 over the manifest
and every file, so rows and cached vectors of changed files are never mixed with old ones.

Example:
    >>> write_vectors_dir(Path("runs/api-vectors"), "my-api-model", sentences, vectors)
    >>> encoder = load_vectors_encoder("vectors:runs/api-vectors")
    >>> encode(encoder, sentences[:2], "sentence", max_length=64)["sentence"].shape    # (2, d)
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stseval.common.errors import StsevalError
from stseval.common.fileio import write_bytes_atomic, write_text_atomic
from stseval.encoders.fingerprint import files_fingerprint
from stseval.encoders.protocol import SENTENCE_POOLING, Batch, fixed_batches

PREFIX = "vectors:"
MANIFEST = "manifest.json"
SHOW_MISSING = 3  # missing sentences quoted in the error
CHECK_BYTES = 1 << 25  # bytes of vectors read per finiteness check (32 MiB)


class MissingSentencesError(StsevalError):
    """Sentences asked for that a vectors folder has no vector for."""

    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message)
        self.missing = missing


@dataclass(eq=False)
class VectorsEncoder:
    """Sentence vectors read from a folder; see the module docstring.

    Attributes:
        name: the manifest's name.
        folder: DIR.
        fingerprint: sha256 over the manifest and the files it lists.
        location: sentence -> (file number, row) of its vector.
        parts: per file, its (n_i, d) vectors (memory-mapped for .npy).
    """

    name: str
    folder: Path
    fingerprint: str
    location: dict[str, tuple[int, int]] = field(repr=False)
    parts: list[np.ndarray] = field(repr=False)

    @property
    def dimension(self) -> int:
        """d, as the manifest states and every file has."""
        return int(self.parts[0].shape[1])

    def supports(self, pooling: str) -> bool:
        """Sentence vectors only: `sentence` is the one pooling."""
        return pooling == SENTENCE_POOLING

    def embed_batches(self, texts: Sequence[str], poolings: Sequence[str], max_length: int,
                      batch_size: int) -> Iterator[Batch]:
        """(rows, {"sentence": (len(rows), d) float32}) per batch; max_length is ignored.

        Raises:
            MissingSentencesError (a StsevalError) before the first batch when any text has no vector.
        """
        missing = [text for text in texts if text not in self.location]
        if missing:
            shown = ", ".join(repr(text) for text in missing[:SHOW_MISSING])
            raise MissingSentencesError(
                f"--model {PREFIX}{self.folder}: {len(missing)} of {len(texts)} sentences have no vector there "
                f"(first: {shown}); sentences are looked up exactly, with any --prefix in front", missing)
        return fixed_batches(self._lookup, texts, batch_size)

    def _lookup(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """{"sentence": (n, d) float32} of texts that all have a vector."""
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            part, part_row = self.location[text]
            vectors[row] = self.parts[part][part_row]
        return {SENTENCE_POOLING: vectors}


def is_vectors_model(name: str) -> bool:
    """Whether a `--model` value names a vectors folder ("vectors:DIR")."""
    return name.startswith(PREFIX)


def load_vectors_encoder(name: str) -> VectorsEncoder:
    """Read `vectors:DIR`: its manifest, sentences and vectors, checked.

    Args:
        name: "vectors:" followed by the folder (relative to the working directory, or absolute).
    Returns:
        The VectorsEncoder.
    Raises:
        StsevalError naming `--model` and the file (file:line for a bad sentence line) when the
        folder, manifest or a file is missing or malformed: wrong shape or dimension, non-finite
        values, sentence and vector counts that differ, one sentence with two different vectors.
    """
    folder = Path(name[len(PREFIX):]).expanduser()
    option = f"--model {name}"
    if not name[len(PREFIX):]:
        raise StsevalError(f"{option}: give the folder after 'vectors:', e.g. vectors:runs/api-vectors")
    if not folder.is_dir():
        raise StsevalError(f"{option}: no such folder")
    manifest_path = folder / MANIFEST
    model_name, dimension, entries = _read_manifest(manifest_path, option)
    location: dict[str, tuple[int, int]] = {}
    parts: list[np.ndarray] = []
    vector_paths: list[Path] = []  # per part, the file its vectors come from (for messages)
    files = [manifest_path]
    for entry in entries:
        if "parquet" in entry:
            path = _listed_file(folder, entry["parquet"], manifest_path, option)
            sentences, vectors = _read_parquet(path, option)
            files.append(path)
        else:
            sentences_path = _listed_file(folder, entry["sentences"], manifest_path, option)
            path = _listed_file(folder, entry["vectors"], manifest_path, option)
            sentences, vectors = _read_sentence_lines(sentences_path, option), _read_npy(path, option)
            files += [sentences_path, path]
        if vectors.ndim != 2 or vectors.shape[1] != dimension:
            raise StsevalError(f"{option}: {path} holds vectors of shape {vectors.shape}; "
                               f"{manifest_path} says dimension {dimension}")
        if len(sentences) != len(vectors):
            raise StsevalError(f"{option}: {path} has {len(vectors)} vectors for {len(sentences)} sentences")
        _check_finite(vectors, sentences, path, option)
        parts.append(vectors)
        vector_paths.append(path)
        for row, sentence in enumerate(sentences):
            seen = location.setdefault(sentence, (len(parts) - 1, row))
            # a sentence listed twice is fine with the same vector; two vectors would make the lookup arbitrary
            if seen != (len(parts) - 1, row) and not np.array_equal(parts[seen[0]][seen[1]], vectors[row]):
                raise StsevalError(f"{option}: {sentence!r} has two different vectors: {path} row {row} "
                                   f"and {vector_paths[seen[0]]} row {seen[1]}")
    return VectorsEncoder(name=model_name, folder=folder, fingerprint=files_fingerprint(files),
                          location=location, parts=parts)


def write_vectors_dir(folder: Path, name: str, sentences: Sequence[str], vectors: np.ndarray) -> Path:
    """Write sentences and their vectors as a `vectors:DIR` folder (sentences.txt, vectors.npy, manifest).

    Args:
        folder: DIR; created if needed. Files are written atomically.
        name: the model name results rows will carry.
        sentences: n sentences without line breaks.
        vectors: (n, d) float vectors, row i for sentences[i]; stored as float32.
    Returns:
        The manifest's path.
    Raises:
        StsevalError when counts differ or a sentence holds a line break.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(sentences):
        raise StsevalError(f"write_vectors_dir: {len(sentences)} sentences but vectors of shape {vectors.shape}")
    broken = next((s for s in sentences if "\n" in s or "\r" in s), None)
    if broken is not None:
        raise StsevalError(f"write_vectors_dir: sentence {broken!r} holds a line break; use a parquet file instead")
    import io

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    write_bytes_atomic(buffer.getvalue(), folder / "vectors.npy")
    write_text_atomic("".join(f"{s}\n" for s in sentences), folder / "sentences.txt")
    manifest = {"name": name, "dimension": int(vectors.shape[1]),
                "files": [{"sentences": "sentences.txt", "vectors": "vectors.npy"}]}
    write_text_atomic(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", folder / MANIFEST)
    return folder / MANIFEST


def _read_manifest(path: Path, option: str) -> tuple[str, int, list[dict]]:
    """(name, dimension, file entries) of a manifest, each field checked."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StsevalError(f"{option}: no {MANIFEST} in the folder; see docs/ENCODERS.md for its fields") from None
    except (OSError, ValueError) as err:
        raise StsevalError(f"{option}: cannot read {path} as JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise StsevalError(f"{option}: {path} must hold a JSON object with name, dimension and files")
    name, dimension, entries = manifest.get("name"), manifest.get("dimension"), manifest.get("files")
    if not isinstance(name, str) or not name.strip():
        raise StsevalError(f"{option}: {path}: 'name' must be a non-empty string (the model name in results)")
    if not isinstance(dimension, int) or isinstance(dimension, bool) or dimension < 1:
        raise StsevalError(f"{option}: {path}: 'dimension' must be a positive integer, not {dimension!r}")
    if not isinstance(entries, list) or not entries:
        raise StsevalError(f"{option}: {path}: 'files' must be a non-empty list")
    for number, entry in enumerate(entries):
        ok = isinstance(entry, dict) and (
            set(entry) == {"parquet"} or set(entry) == {"sentences", "vectors"}) and \
            all(isinstance(value, str) for value in entry.values())
        if not ok:
            raise StsevalError(f"{option}: {path}: files[{number}] must be {{\"sentences\": TXT, \"vectors\": NPY}} "
                               f"or {{\"parquet\": FILE}}, not {entry!r}")
    return name.strip(), dimension, entries


def _listed_file(folder: Path, relative: str, manifest_path: Path, option: str) -> Path:
    """A file the manifest lists, inside DIR (links followed) and present."""
    path = folder / relative
    if not path.resolve().is_relative_to(folder.resolve()):
        raise StsevalError(f"{option}: {manifest_path} lists {relative}, which lies outside {folder}; "
                           "a manifest names files inside its folder, by their path relative to it")
    if not path.is_file():
        raise StsevalError(f"{option}: {manifest_path} lists {relative}, which is not a file in {folder}")
    return path


def _check_finite(vectors: np.ndarray, sentences: Sequence[str], path: Path, option: str) -> None:
    """Refuse a row that is not finite in the file, or not once stored as float32 as every lookup returns it
    (float64 values beyond +-3.4e38 become inf). Reads about CHECK_BYTES at a time, so a memory-mapped
    file is never held in memory whole."""
    rows = max(1, CHECK_BYTES // max(1, vectors.shape[1] * vectors.itemsize))
    for start in range(0, len(vectors), rows):
        chunk = np.asarray(vectors[start : start + rows])
        with np.errstate(over="ignore"):  # the overflow to inf is what is looked for
            finite = np.isfinite(chunk.astype(np.float32, copy=False)).all(axis=1)
        if finite.all():
            continue
        row = start + int(np.flatnonzero(~finite)[0])
        if np.isfinite(chunk[row - start]).all():
            raise StsevalError(f"{option}: {path} row {row} ({sentences[row]!r}) holds values beyond float32's range "
                               f"(+-{float(np.finfo(np.float32).max):.1e}); vectors are used as float32")
        raise StsevalError(f"{option}: {path} row {row} ({sentences[row]!r}) is not finite")


def _read_sentence_lines(path: Path, option: str) -> list[str]:
    """The lines of a UTF-8 file exactly (only the line break removed), one sentence each."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise StsevalError(f"{option}: cannot read {path} as UTF-8 text ({err})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final line break ends the last sentence, it does not start a new one
    sentences = [line[:-1] if line.endswith("\r") else line for line in lines]
    empty = next((number for number, sentence in enumerate(sentences, start=1) if not sentence), None)
    if empty is not None:
        raise StsevalError(f"{option}: {path}:{empty}: empty line; every line must hold one sentence")
    return sentences


def _read_npy(path: Path, option: str) -> np.ndarray:
    """An (n, d) float array from .npy, memory-mapped (float32 files stay on disk until looked up)."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise StsevalError(f"{option}: cannot read {path} as a .npy array ({err})") from None
    if not np.issubdtype(array.dtype, np.floating):
        raise StsevalError(f"{option}: {path} holds {array.dtype} values; vectors must be floats")
    return array


def _read_parquet(path: Path, option: str) -> tuple[list[str], np.ndarray]:
    """Sentences and (n, d) float32 vectors from a parquet file's `sentence` and `vector` columns."""
    import pandas as pd

    try:
        frame = pd.read_parquet(path, columns=["sentence", "vector"])
    except ImportError as err:
        raise StsevalError(f"{option}: reading {path} needs pyarrow: pip install pyarrow ({err})") from None
    except (OSError, ValueError, KeyError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StsevalError(f"{option}: cannot read {path} as parquet with columns sentence and vector "
                           f"({first_line})") from None
    sentences = frame["sentence"].tolist()
    bad = next((row for row, sentence in enumerate(sentences) if not isinstance(sentence, str) or not sentence), None)
    if bad is not None:
        raise StsevalError(f"{option}: {path} row {bad}: sentence {sentences[bad]!r} is not a non-empty string")
    try:
        vectors = np.stack([np.asarray(vector, dtype=np.float32) for vector in frame["vector"]]) \
            if len(frame) else np.empty((0, 0), dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise StsevalError(f"{option}: {path}: column vector must hold equal-length lists of floats ({err})") from None
    return sentences, vectors
