#!/usr/bin/env bash
# The committed retrieval sweep (results/retrieval/): the offline default encoder, last-avg (the best raw
# pooling of the whitening grid), no prefix, test split of each task; exact inner-product search (Flat) on
# raw vectors truncated to k dims vs PCA-projected (beta = gamma = 0, a rotation, issue 13) vs whitened to k dims
# (both fitted on the corpus); FAISS pinned to 1 thread. Resumable: a re-run computes only missing cells.
# QPS on a shared 2-core machine is noisy: compare within one run, not across runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export STSEVAL_WRITE_RESULTS=1  # this script writes the committed results/ (stseval refuses --out results/... otherwise)
.venv/bin/stseval index sweep --model default --tasks ATEC,BQ,LCQMC,PAWSX,STS-B --split test --pooling last-avg \
    --prefix "" --dims full,256,128,64,32 --methods raw-truncate,pca,whitening --index Flat --threads 1 --seed 0 \
    --out results/retrieval
