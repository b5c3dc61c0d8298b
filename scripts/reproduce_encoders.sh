#!/usr/bin/env bash
# Whitening on encoders other than the default (issue 13), all offline: Google's USE-multilingual v3
# (sentence vectors only, 512-d) and all-MiniLM-L6-v2 (English-trained BERT, 384-d, every token pooling),
# on all five tasks, test split, dims full/256/128/64, statistics fitted on all-available (train+valid+test
# where train exists, valid+test else) and on valid. No prefix: neither model was trained with one.
# MiniLM's token-pooled vectors have covariance rank 381 of 384, so its full-dimension whitening is refused
# (see `--allow-low-rank`); its grid starts at 256.
# Usage: scripts/reproduce_encoders.sh OUT_DIR   (resumable: re-running skips finished cells)
set -euo pipefail
cd "$(dirname "$0")/.."
export STSEVAL_WRITE_RESULTS=1  # this script writes the committed results/ (stseval refuses --out results/... otherwise)
OUT=${1:?usage: scripts/reproduce_encoders.sh OUT_DIR}
STSEVAL=${STSEVAL:-.venv/bin/stseval}
common=(--tasks STS-B,PAWSX,LCQMC,BQ,ATEC --split test --bootstrap 1000 --seed 0 --prefix "" --fit-on all-available
        --fit-on valid --out "$OUT")
"$STSEVAL" whiten --model use-multilingual-v3 --pooling sentence --dims full,256,128,64 "${common[@]}"
"$STSEVAL" whiten --model all-MiniLM-L6-v2 --pooling cls,pooler,last-avg,first-last-avg --dims 256,128,64 "${common[@]}"
