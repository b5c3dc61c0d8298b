#!/usr/bin/env bash
# Create .venv and install stseval with its test extras. torch goes first and pinned, so that
# sentence-transformers finds it installed and pip does not pick a torch build of its own.
#
# Which torch build pip installs depends on where it looks:
# - this project's machines configure pip (find-links in pip.conf) with a local copy of the CPU build
#   of torch 2.13.0, so the plain install below takes that; nothing to set.
# - a Linux machine with an NVIDIA GPU: the plain install takes the default PyPI build, which bundles
#   CUDA (a few GB to download); that is the one you want there.
# - a machine without a GPU and without a local wheel: the PyPI build would still pull CUDA; set
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu for the CPU-only build (about 200 MB).
#   Any other wheel index (a CUDA version's, a mirror) works the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
# onnx, minilm, use: so the --backend onnx tests and the smoke tests of the bundled encoders run too
.venv/bin/python -m pip install --quiet -e '.[test,onnx,minilm,use]'
