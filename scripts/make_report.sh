#!/usr/bin/env bash
# Regenerate every committed grid under results/report/ from the committed long-format results.
# tests/test_committed_results.py runs these same lines and checks the output is byte for byte the same.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/stseval report results/whitening --out results/report --name whitening --best --reference su2021 --reference mteb
.venv/bin/stseval report results/whitening --out results/report --name whitening_full_dims --best --filter dims=full --filter "fit_on=test" --filter "fit_on=" --reference su2021 --reference mteb
.venv/bin/stseval report results/simcse --out results/report --name simcse --best --split test-sample1000
.venv/bin/stseval report results/retrieval --out results/report --name retrieval --metric recall@10 --metric qps --split test
