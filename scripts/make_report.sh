#!/usr/bin/env bash
# Regenerate every committed grid under results/report/ from the committed long-format results, and the
# README's main grid. tests/test_committed_results.py runs these same report lines and checks the output
# is byte for byte what is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
export STSEVAL_WRITE_RESULTS=1  # this script writes the committed results/ (stseval refuses --out results/... otherwise)
.venv/bin/stseval report results/whitening --out results/report --name main --best --filter "fit_on=" --filter "fit_on=test" --filter pooling=cls --filter pooling=last-avg --filter pooling=first-last-avg --filter dims=full --filter dims=128 --filter dims=64 --reference mteb
.venv/bin/stseval report results/whitening --out results/report --name whitening --best --reference su2021 --reference su2022 --reference mteb
.venv/bin/stseval report results/whitening --out results/report --name whitening_full_dims --best --filter dims=full --filter "fit_on=test" --filter "fit_on=" --reference su2021 --reference mteb
.venv/bin/stseval report results/simcse --out results/report --name simcse --best --split test-sample1000 --rows model,pooling,method,dropout
.venv/bin/stseval report results/simcse_su --out results/report --name simcse_su --rows model,pooling,method,dropout,seed --metric spearman_cosine --metric spearman_cosine_minus_raw --metric spearman_cosine_minus_simcse --ci --over-seeds --reference su2021:SimBERT,BERT
.venv/bin/stseval report results/simcse_su --out results/report --name simcse_su_curves --plot curves
.venv/bin/stseval report results/retrieval --out results/report --name retrieval --metric recall@10 --metric qps --split test
# issue 13's studies (scripts/reproduce_whitening_studies.sh results/whitening_studies results/whitening_encoders), drawn
# when that folder exists (a fork without those results still regenerates the rest). Lines stay unindented: tests/test_committed_results.py runs each report line.
if [ -d results/whitening_studies ]; then
.venv/bin/stseval report results/whitening_studies --out results/report --name whitening_chosen --best --filter method=raw --filter "method=*-chosen" --filter pooling=last-avg --filter pooling=cls --filter pooling=first-last-avg --rows model,pooling,method
.venv/bin/stseval report results/whitening_studies --out results/report --name whitening_chosen_settings --filter "method=*-chosen"
.venv/bin/stseval report results/whitening_studies --out results/report --name rotation_last-avg --plot rotation --filter pooling=last-avg
.venv/bin/stseval report results/whitening_studies --out results/report --name rotation_cls --plot rotation --filter pooling=cls
.venv/bin/stseval report results/whitening_studies --out results/report --name rotation_first-last-avg --plot rotation --filter pooling=first-last-avg
.venv/bin/stseval report results/whitening_studies --out results/report --name layers --plot layers --filter dims=full
.venv/bin/stseval report results/whitening_studies results/whitening_encoders --out results/report --name chosen_by_encoder --best --filter method=raw --filter "method=*-chosen" --filter pooling=last-avg --filter pooling=cls --filter pooling=sentence --rows model,pooling,method
fi
if [ -d results/whitening_encoders ]; then
.venv/bin/stseval report results/whitening_encoders --out results/report --name whitening_encoders --best --filter beta=1 --filter "beta=" --filter gamma=1 --filter "gamma=" --filter "chosen_on="
# encoders_chosen: one row per method (the chosen setting may differ by task); _settings: which dims, beta, gamma
.venv/bin/stseval report results/whitening_encoders --out results/report --name encoders_chosen --best --filter method=raw --filter "method=*-chosen" --rows model,pooling,method
.venv/bin/stseval report results/whitening_encoders --out results/report --name encoders_chosen_settings --filter "method=*-chosen"
fi
# issue 28's table: raw, whitening chosen on valid, SimCSE best on valid and CoSENT (trained on BQ / STS-B train,
# scored on every task) on the same encoder and test pairs, beside Su's supervised and unsupervised rows; seeds
# as rows, mean +- sd over seeds in cosent_anchor_seeds.md; grows as scripts/reproduce_cosent.sh lands cells
if [ -d results/cosent ] && [ -d results/whitening_studies ]; then
.venv/bin/stseval report results/cosent results/whitening_studies results/simcse_su --out results/report --name cosent_anchor --best --filter pooling=last-avg --filter pooling=cls --filter method=raw --filter "method=whitening-chosen" --filter method=simcse-best-valid --filter "method=cosent*" --rows model,pooling,method,train_on,dropout,seed --metric spearman_cosine --over-seeds --reference su2022-cosent --reference su2021:BERT
.venv/bin/stseval report results/cosent --out results/report --name cosent_minus_raw --rows model,pooling,method,train_on,seed --metric spearman_cosine_minus_raw --ci --over-seeds
.venv/bin/stseval report results/cosent --out results/report --name cosent_curves --plot curves
fi
# each run folder's own grid (results/<run>/grid.*), redrawn from its results as the run's write_run_grid does,
# with the run's split and --tasks order from the grid's provenance
.venv/bin/python - <<'PY'
import json, shlex
from pathlib import Path
for provenance_path in sorted(Path("results").glob("*/grid.provenance.json")):
    from stseval.report.write import write_run_grid  # only where there are run grids (a fork may have none)
    provenance = json.loads(provenance_path.read_text(encoding="utf-8"))
    [results] = provenance["inputs"]
    args = shlex.split(provenance["commands"][0])
    tasks = args[args.index("--tasks") + 1].split(",") if "--tasks" in args else None
    write_run_grid(Path(results), provenance_path.parent, provenance["split"], tasks)
PY
# the README shows the main grid: copy its table between the markers
.venv/bin/python - <<'PY'
from pathlib import Path
readme, grid = Path("README.md"), Path("results/report/main.md").read_text(encoding="utf-8")
table = "\n".join(line for line in grid.splitlines() if line.startswith("|"))
start, end = "<!-- main-grid:start -->", "<!-- main-grid:end -->"
text = readme.read_text(encoding="utf-8")
head, rest = text.split(start)
readme.write_text(f"{head}{start}\n{table}\n{end}{rest.split(end)[1]}", encoding="utf-8")
PY
