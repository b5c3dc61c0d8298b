"""The library's version, written into every results row and index folder it makes.

It lives here, in the lowest layer, so the modules that record it (runs/results.py, methods/index.py) and
the CLI's --version import it downward; `stseval.__version__` (the facade) re-exports it. pyproject.toml
holds the same string as a static `version` and tests/test_cli.py keeps the two equal.
"""

__version__ = "0.1.0"
