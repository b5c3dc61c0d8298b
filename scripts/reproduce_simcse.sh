#!/usr/bin/env bash
# The committed SimCSE grid (results/simcse/): a REDUCED setting that fits a 2-core CPU, not Su's protocol.
# Su: 10,000 sentences (PAWSX all), batch 64, lr 1e-5, 1 epoch (~157 steps), full test split.
# Here: 1,024 sentences (16 steps of batch 64) per task, the same lr/batch/epoch/scale, evaluated on a seeded
# sample of 1,000 test pairs per task; pooling last-avg (the best raw pooling of the whitening grid).
set -euo pipefail
cd "$(dirname "$0")/.."
export STSEVAL_WRITE_RESULTS=1  # this script writes the committed results/ (stseval refuses --out results/... otherwise)
.venv/bin/stseval simcse-train --model default --tasks STS-B,PAWSX,LCQMC,BQ,ATEC --pooling last-avg \
    --dropout 0.1,0.3 --max-sentences 1024 --batch-size 64 --lr 1e-5 --epochs 1 --loss su \
    --max-eval-pairs 1000 --then-whiten --seed 0 --bootstrap 1000 --out results/simcse
