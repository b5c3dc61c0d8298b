"""scripts/reproduce_whitening_studies.sh, run for real on a tiny BERT and a few hundred real pairs per split,
and the studies' lines of scripts/make_report.sh on what it wrote.

The script runs as written; only a stand-in for .venv/bin/stseval (its $STSEVAL) makes the run small: every
--model becomes the tiny BERT (2 layers, 32 dims: layer-avg:0-12 becomes 0-2, dims shrink), two tasks, no
bootstrap, the sampled data.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from stseval.cli import app
from tiny_models import make_bert

ROOT = Path(__file__).resolve().parents[1]
SHRINK = {"256": "16", "128": "16", "64": "8", "32": "4", "layer-avg:0-12": "layer-avg:0-2",
          "STS-B,PAWSX,LCQMC,BQ,ATEC": "STS-B,BQ", "1000": "0"}

STAND_IN = """#!{python}
import sys
sys.path.insert(0, {root!r})
from stseval.cli import app
shrink = {shrink!r}
args = []
for previous, arg in zip([""] + sys.argv[1:-1], sys.argv[1:], strict=True):
    if previous == "--model":
        arg = {model!r}
    elif previous in ("--dims", "--pooling"):
        arg = ",".join(dict.fromkeys(shrink.get(part, part) for part in arg.split(",")))
    elif previous in ("--tasks", "--bootstrap"):
        arg = shrink.get(arg, arg)
    args.append(arg)
sys.argv = ["stseval", *args, "--data-dir", {data!r}]
app()
"""


def test_studies_script_runs_and_its_report_lines_draw_from_its_rows(sample_data_dir, tmp_path):
    model = make_bert(tmp_path / "tiny-bert", with_pooler=False)
    stand_in = tmp_path / "stseval"
    stand_in.write_text(STAND_IN.format(python=sys.executable, root=str(ROOT), shrink=SHRINK, model=str(model),
                                        data=str(sample_data_dir)))
    stand_in.chmod(0o755)
    out, encoders_out = tmp_path / "studies", tmp_path / "encoders"
    env = {**os.environ, "STSEVAL": str(stand_in), "STSEVAL_HOME": str(tmp_path / "home")}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "reproduce_whitening_studies.sh"), str(out),
                           str(encoders_out)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]

    rows = pd.read_csv(out / "whiten.csv", dtype=str, keep_default_na=False)
    assert set(rows.method) == {"raw", "whitening", "pca", "raw-truncate", "whitening-chosen"}
    assert set(rows.pooling) == {"last-avg", "cls", "first-last-avg", "layer-avg:0", "layer-avg:1", "layer-avg:2"}
    assert set(rows.fit_on) == {"", "all-available"} and set(rows.task) == {"STS-B", "BQ"}
    grid = rows[(rows.method == "whitening") & (rows.split == "test") & (rows.pooling == "cls")]
    assert len(set(zip(grid.beta, grid.gamma, strict=True))) == 15
    chosen = rows[rows.method == "whitening-chosen"]
    assert len(chosen) == 3 * 2 and set(chosen.chosen_on) == {"valid"} and set(chosen.split) == {"test"}
    assert set(rows[rows.split == "valid"].pooling) == {"last-avg", "cls", "first-last-avg"}  # only the grid chooses
    others = pd.read_csv(encoders_out / "whiten.csv", dtype=str, keep_default_na=False)
    assert {"whitening-chosen", "raw"} <= set(others.method) and "sentence" in set(others.pooling)

    # the studies' report lines of make_report.sh, on these rows
    lines = [shlex.split(line)[1:] for line in (ROOT / "scripts" / "make_report.sh").read_text().splitlines()
             if line.startswith(".venv/bin/stseval report results/whitening_studies")]
    assert len(lines) == 7
    report_dir = tmp_path / "report"
    paths = {"results/whitening_studies": str(out), "results/report": str(report_dir)}
    for args in lines:
        # every stand-in model is the same tiny BERT, so the grid across both folders (chosen_by_encoder)
        # would put two folders' rows in one cell: here it reads the studies folder only
        args = [paths.get(arg, arg) for arg in args if arg != "results/whitening_encoders"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    layers = pd.read_csv(report_dir / "layers.csv", dtype=str, keep_default_na=False)
    assert list(zip(layers.pooling, layers.method, strict=True)) == [
        (f"layer-avg:{layer}", method) for layer in range(3) for method in ("raw", "whitening")]
    test_rows = rows[rows.split == "test"]
    for record in layers.to_dict("records"):
        for task in ("BQ", "STS-B"):
            row = test_rows[(test_rows.pooling == record["pooling"]) & (test_rows.method == record["method"])
                            & (test_rows.dims == "full") & (test_rows.task == task)
                            & (test_rows.beta == ("1" if record["method"] == "whitening" else ""))]
            assert record[task] == f"{100 * float(row.value.item()):.2f}"
    rotation = pd.read_csv(report_dir / "rotation_last-avg.csv", dtype=str, keep_default_na=False)
    assert set(rotation.method) == {"raw", "raw-truncate", "pca", "whitening"}
    assert list(rotation[rotation.method == "pca"].dims) == ["full", "16", "8", "4"]
    for name in ("rotation_cls", "rotation_first-last-avg", "whitening_chosen", "whitening_chosen_settings"):
        assert (report_dir / f"{name}.png").is_file()
    both = pd.read_csv(report_dir / "chosen_by_encoder.csv", dtype=str, keep_default_na=False)
    assert set(both.pooling) == {"last-avg", "cls"} and set(both.method) == {"raw", "whitening-chosen"}
