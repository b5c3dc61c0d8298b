#!/usr/bin/env bash
# Issue 13's whitening studies past Su, all offline, test split, no prefix, statistics fitted on all-available
# (train+valid+test where train exists, valid+test else), bootstrap 1000, seed 0:
#   1. rotation vs rescaling and layer by layer, on the default encoder: poolings last-avg, cls, first-last-avg and
#      layer-avg:0-12 (hidden_states[0] is the embedding output), methods whitening (beta = gamma = 1), pca
#      (beta = gamma = 0) and raw-truncate at dims full/256/128/64/32. One forward pass serves every pooling; the
#      cache then holds 16 poolings of every sentence (about 1.5 GB for ATEC's 60k-odd sentences).
#   2. the beta/gamma grid (beta 0, 0.5, 1 x gamma 0, 0.25, 0.5, 0.75, 1) at dims full/128/64 with --choose-on valid:
#      every cell is also scored on valid, and per pooling, task and method the best valid setting is reported
#      on test as a whitening-chosen row (chosen_on = valid). Test never chooses anything.
#   3. the same grid for USE-multilingual v3 (sentence vectors) and all-MiniLM-L6-v2 (last-avg, cls; dims 256/128/64:
#      its token-pooled vectors have covariance rank 381 of 384, so full-dimension whitening is refused), into the
#      folder scripts/reproduce_encoders.sh writes.
# Usage: scripts/reproduce_whitening_studies.sh OUT_DIR ENCODERS_OUT_DIR
#        e.g. results/whitening_studies results/whitening_encoders (resumable: re-running skips finished cells)
set -euo pipefail
cd "$(dirname "$0")/.."
export STSEVAL_WRITE_RESULTS=1  # this script writes the committed results/ (stseval refuses --out results/... otherwise)
OUT=${1:?usage: scripts/reproduce_whitening_studies.sh OUT_DIR ENCODERS_OUT_DIR}
ENCODERS_OUT=${2:?usage: scripts/reproduce_whitening_studies.sh OUT_DIR ENCODERS_OUT_DIR}
STSEVAL=${STSEVAL:-.venv/bin/stseval}
common=(--tasks STS-B,PAWSX,LCQMC,BQ,ATEC --split test --bootstrap 1000 --seed 0 --prefix "" --fit-on all-available)
grid=(--methods whitening --beta 0,0.5,1 --gamma 0,0.25,0.5,0.75,1 --choose-on valid)
# the two other encoders first: their vectors are cached by scripts/reproduce_encoders.sh, so this is scoring only
"$STSEVAL" whiten --model use-multilingual-v3 --pooling sentence --dims full,128,64 "${grid[@]}" "${common[@]}" \
    --out "$ENCODERS_OUT"
"$STSEVAL" whiten --model all-MiniLM-L6-v2 --pooling last-avg,cls --dims 256,128,64 "${grid[@]}" "${common[@]}" \
    --out "$ENCODERS_OUT"
"$STSEVAL" whiten --model default --pooling last-avg,cls,first-last-avg,layer-avg:0-12 \
    --methods whitening,pca,raw-truncate --dims full,256,128,64,32 "${common[@]}" --out "$OUT"
"$STSEVAL" whiten --model default --pooling last-avg,cls,first-last-avg --dims full,128,64 "${grid[@]}" \
    "${common[@]}" --out "$OUT"
