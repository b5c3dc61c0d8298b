#!/usr/bin/env bash
# The committed whitening grid (results/whitening/): the offline default encoder on all five tasks,
# test split, every pooling the model has (it has no pooler: those cells are n/a), dims full/256/128/64.
# Statistics fitted on valid and, separately, on test, without and with E5's "query: " prefix; without the prefix
# also on all-available (Su's setting as far as our data allows: train+valid+test for BQ and STS-B, valid+test else).
# Resumable: re-running skips finished cells; the embedding cache makes a re-run encode nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export STSEVAL_WRITE_RESULTS=1  # this script writes the committed results/ (stseval refuses --out results/... otherwise)
common=(--model default --pooling cls,pooler,last-avg,first-last-avg,last2avg,max --dims full,256,128,64
        --tasks STS-B,PAWSX,LCQMC,BQ,ATEC --split test --bootstrap 1000 --seed 0 --out results/whitening)
.venv/bin/stseval whiten "${common[@]}" --prefix "" --fit-on valid --fit-on test --fit-on all-available
.venv/bin/stseval whiten "${common[@]}" --prefix "query: " --fit-on valid --fit-on test
