"""stseval: sentence-embedding evaluation on the five Chinese STS tasks, with BERT-whitening and SimCSE.

The public Python API (`stseval/api.py`) is re-exported here lazily: `import stseval` loads no torch,
faiss or pandas; the first use of e.g. `stseval.evaluate` imports what it needs.

Example:
    >>> import stseval
    >>> model = stseval.load_model("default")
    >>> stseval.evaluate(model, tasks="STS-B", pooling="last-avg")
"""

from stseval.common.errors import StsevalError
from stseval.common.version import __version__

_API_NAMES = ("load_model", "encode", "similarity", "load_pairs", "evaluate", "fit_whitening", "build_index",
              "search", "export")
__all__ = ["StsevalError", "__version__", *_API_NAMES]


def __getattr__(name: str):
    """Import stseval.api on first use of one of its names (PEP 562), so `import stseval` stays light."""
    if name in _API_NAMES:
        from stseval import api

        value = getattr(api, name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'stseval' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API_NAMES))
