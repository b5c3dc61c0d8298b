#!/usr/bin/env bash
# The committed whitening grid (results/whitening/): the offline default encoder on all five tasks,
# test split, every pooling the model has, dims full/256/128/64, statistics fitted on valid and on test,
# without and with E5's "query: " prefix. Resumable: re-running skips finished cells.
set -euo pipefail
cd "$(dirname "$0")/.."
for prefix in "" "query: "; do
    .venv/bin/stseval whiten --model default \
        --pooling cls,pooler,last-avg,first-last-avg,last2avg,max \
        --dims full,256,128,64 --fit-on valid --fit-on test \
        --tasks STS-B,PAWSX,LCQMC,BQ,ATEC --split test --prefix "$prefix" \
        --bootstrap 1000 --seed 0 --out results/whitening
done
