"""`stseval report --format mteb`: mteb's own loader reads every file back with the same numbers."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from stseval.cli import app
from stseval.report.mteb_files import CMTEB_TASK_NAMES
from stseval.runs.results import ResultRow

mteb = pytest.importorskip("mteb")  # the test extra; pip install 'stseval[mteb]'


def _row(task: str, split: str, method: str, value: float, **fields) -> ResultRow:
    values = dict(model="org/tiny-model", pooling="last-avg", method=method, task=task, split=split,
                  metric="spearman_cosine", value=value, model_fingerprint="0123456789abcdef" * 4,
                  data_sha256="feedbeef", n_pairs=100, ci_low=value - 0.01, ci_high=value + 0.01,
                  created_at="2026-12-01T00:00:00+00:00", seconds=2.5)
    if method != "raw":
        values.update(dims="256", fit_on="test", beta="0.5", gamma="1")
    values.update(fields)
    return ResultRow(**values)


def test_mteb_loader_reads_every_file_back_with_the_same_numbers(tmp_path):
    rows = []
    for number, task in enumerate(CMTEB_TASK_NAMES):
        rows.append(_row(task, "test", "raw", 0.3 + number / 100))
        rows.append(_row(task, "valid", "raw", 0.2 + number / 100))
        rows.append(_row(task, "test", "whitening", 0.4 + number / 100))
    rows.append(_row("STS-B", "test", "raw", 0.77, model="other", model_fingerprint="aa" * 32))
    pd.DataFrame([row.__dict__ for row in rows]).to_csv(tmp_path / "whiten.csv", index=False)
    result = CliRunner().invoke(app, ["report", str(tmp_path / "whiten.csv"), "--format", "mteb", "--out",
                                      str(tmp_path / "mteb")])
    assert result.exit_code == 0, result.output
    base = tmp_path / "mteb" / "org__tiny-model" / "0123456789ab"
    experiment = base / "experiments" / "last-avg_whitening_k256_fit-test_b0.5_g1"
    assert sorted(path.name for path in base.glob("*.json")) == sorted(
        [f"{name}.json" for name in CMTEB_TASK_NAMES.values()] + ["model_meta.json"])
    expected = {(base, row.task, row.split): row.value for row in rows if row.method == "raw" and row.model != "other"}
    expected.update({(experiment, row.task, row.split): row.value for row in rows if row.method == "whitening"})
    for (folder, task, split), value in expected.items():
        loaded = mteb.TaskResult.from_disk(folder / f"{CMTEB_TASK_NAMES[task]}.json")
        assert loaded.task_name == CMTEB_TASK_NAMES[task]
        [scores] = loaded.scores[split]
        assert scores["cosine_spearman"] == scores["main_score"] == value  # 0-1, as mteb keeps it
        assert scores["hf_subset"] == "default" and scores["languages"] == ["cmn-Hans"]
        assert loaded.mteb_version == mteb.__version__ and loaded.evaluation_time is not None
    other = mteb.TaskResult.from_disk(tmp_path / "mteb" / "other" / "aaaaaaaaaaaa" / "STSB.json")
    assert other.scores["test"][0]["main_score"] == 0.77
    meta = json.loads((base / "model_meta.json").read_text())
    assert meta["name"] == "org/tiny-model" and meta["revision"] == "0123456789ab"


def test_format_must_be_grid_or_mteb(tmp_path):
    (tmp_path / "r.csv").write_text("x\n")
    result = CliRunner().invoke(app, ["report", str(tmp_path / "r.csv"), "--format", "json", "--out",
                                      str(tmp_path / "o")])
    assert result.exit_code == 2 and "--format json: choose grid or mteb" in result.output


def test_report_reads_mteb_files_back_as_reference_rows(tmp_path):
    rows = [_row(task, "test", "raw", 0.3 + number / 100) for number, task in enumerate(CMTEB_TASK_NAMES)]
    rows.append(_row("ATEC", "test", "whitening", 0.41, prefix="query: "))
    pd.DataFrame([row.__dict__ for row in rows]).to_csv(tmp_path / "whiten.csv", index=False)
    runner = CliRunner()
    assert runner.invoke(app, ["report", str(tmp_path / "whiten.csv"), "--format", "mteb", "--out",
                               str(tmp_path / "mteb")]).exit_code == 0
    ours = pd.DataFrame([_row(task, "test", "raw", 0.5, model="mine", model_fingerprint="bb" * 32)
                         for task in CMTEB_TASK_NAMES])
    ours.to_csv(tmp_path / "mine.csv", index=False)
    result = runner.invoke(app, ["report", str(tmp_path / "mine.csv"), "--reference", f"mteb:{tmp_path / 'mteb'}",
                                 "--reference", "cmteb", "--reference", "su2022-cosent", "--name", "grid",
                                 "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    grid = pd.read_csv(tmp_path / "report" / "grid.csv", dtype=str, keep_default_na=False)
    by_model = {row["model"]: row for _, row in grid.iterrows()}
    raw = by_model["mteb:org/tiny-model@0123456789ab"]
    assert [float(raw[task]) for task in CMTEB_TASK_NAMES] == pytest.approx([30, 31, 32, 33, 34])
    whitened = by_model["mteb:org/tiny-model@0123456789ab/last-avg_whitening_k256_fit-test_b0.5_g1_prefix-query"]
    assert (whitened["method"], whitened["dims"], float(whitened["ATEC"])) == ("whitening", "256", pytest.approx(41))
    assert float(by_model["C-MTEB:BAAI/bge-small-zh-v1.5"]["ATEC"]) == 43.01  # as published, never ours
    assert any(model.startswith("Su2022-CoSENT:") for model in by_model)
    assert float(by_model["mine"]["ATEC"]) == pytest.approx(50)
