#!/usr/bin/env bash
# Create .venv and install stseval with its test extras. torch goes first and pinned: pip takes the
# CPU build from local disk instead of pulling a multi-GB CUDA build for sentence-transformers.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e '.[test]'
