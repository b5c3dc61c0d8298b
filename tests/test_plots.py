"""The study plots of stseval/report/plots.py: their tables hold the rows' values, and bad input is named."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from stseval.cli import app
from stseval.common.errors import StsevalError
from stseval.data.tasks import TASKS
from stseval.report.plots import write_plot
from stseval.runs.results import ResultRow, rows_to_frame, write_frame

TASK_NAMES = tuple(TASKS)


def _row(task: str, value: float, **fields) -> ResultRow:
    settings = dict(model="m", model_fingerprint="fp", pooling="last-avg", split="test", metric="spearman_cosine",
                    n_pairs=100, data_sha256=f"sha-{task}", versions="numpy=2", command="stseval whiten",
                    created_at="2026-01-01T00:00:00+00:00")
    settings.update(fields)
    return ResultRow(task=task, value=value, **settings)


def _rotation_rows(pooling: str = "last-avg") -> list[ResultRow]:
    """raw, raw-truncate / pca / whitening at full, 64, 32 and a beta 0.5 whitening row the plot must skip."""
    rows = []
    for position, task in enumerate(TASK_NAMES):
        base = 0.1 * (position + 1)
        rows.append(_row(task, base, pooling=pooling, method="raw"))
        for offset, dims in enumerate(("full", "64", "32")):
            rows.append(_row(task, base - 0.01 * offset, pooling=pooling, method="raw-truncate", dims=dims))
            rows.append(_row(task, base + 0.001 * offset, pooling=pooling, method="pca", dims=dims, fit_on="valid",
                             beta="0", gamma="0"))
            rows.append(_row(task, base + 0.02 * offset, pooling=pooling, method="whitening", dims=dims,
                             fit_on="valid", beta="1", gamma="1"))
            rows.append(_row(task, 0.9, pooling=pooling, method="whitening", dims=dims, fit_on="valid", beta="0.5",
                             gamma="1"))
        rows.append(_row(task, 0.95, pooling=pooling, method="whitening", split="valid", fit_on="valid", beta="1",
                         gamma="1"))
    return rows


def _layer_rows(n_layers: int = 3) -> list[ResultRow]:
    rows = []
    for layer in range(n_layers + 1):
        for position, task in enumerate(TASK_NAMES):
            pooling = f"layer-avg:{layer}"
            rows.append(_row(task, 0.01 * layer + 0.1 * position, pooling=pooling, method="raw"))
            rows.append(_row(task, 0.02 * layer + 0.1 * position, pooling=pooling, method="whitening", fit_on="valid",
                             beta="1", gamma="1"))
    return rows + [_row("STS-B", 0.5, pooling="cls", method="raw")]  # not a layer pooling: not drawn


def _write(rows, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_frame(rows_to_frame(rows), path)
    return path


def _table(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_rotation_plot_table_holds_the_rows_values(tmp_path):
    rows = _rotation_rows()
    written = write_plot("rotation", [_write(rows, tmp_path / "r" / "whiten.csv")], tmp_path / "out", name="rot")
    assert [path.name for path in written] == ["rot.csv", "rot.md", "rot.png", "rot.provenance.json"]
    assert written[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = _table(written[0])
    keys = ["model", "pooling", "prefix", "method", "fit_on", "dims"]
    assert list(table.columns) == [*keys, *TASK_NAMES, "avg", "w-avg"]
    assert list(zip(table.method, table.dims, strict=True)) == [("raw", "full")] + [
        (method, dims) for method in ("whitening", "raw-truncate", "pca") for dims in ("full", "64", "32")]
    drawn = {(row.method, row.dims, row.task): row.value for row in rows
             if row.split == "test" and (row.method != "whitening" or row.beta == "1")}
    for record in table.to_dict("records"):
        for task in TASK_NAMES:
            assert record[task] == f"{100 * drawn[record['method'], record['dims'], task]:.2f}", (record, task)
        values = [drawn[record["method"], record["dims"], task] for task in TASK_NAMES]
        assert record["avg"] == f"{100 * sum(values) / len(values):.2f}"
    assert "| whitening | valid | 64 |" in written[1].read_text(encoding="utf-8")


def test_layer_plot_table_holds_raw_and_whitened_per_layer(tmp_path):
    rows = _layer_rows()
    written = write_plot("layers", [_write(rows, tmp_path / "r" / "whiten.csv")], tmp_path / "out")
    assert written[0].name == "layers_test.csv"
    table = _table(written[0])
    assert list(zip(table.pooling, table.method, strict=True)) == [
        (f"layer-avg:{layer}", method) for layer in range(4) for method in ("raw", "whitening")]
    for record in table.to_dict("records"):
        layer = int(record["pooling"].split(":")[1])
        for position, task in enumerate(TASK_NAMES):
            expected = (0.01 if record["method"] == "raw" else 0.02) * layer + 0.1 * position
            assert record[task] == f"{100 * expected:.2f}"


def test_layer_plot_orders_layers_by_number_not_text(tmp_path):
    written = write_plot("layers", [_write(_layer_rows(11), tmp_path / "r" / "whiten.csv")], tmp_path / "out")
    layers = list(dict.fromkeys(_table(written[0]).pooling))
    assert layers == [f"layer-avg:{layer}" for layer in range(12)]


def test_a_plot_of_several_settings_names_the_filter_that_picks_one(tmp_path):
    path = _write(_rotation_rows("cls") + _rotation_rows("last-avg"), tmp_path / "r" / "whiten.csv")
    with pytest.raises(StsevalError, match="--plot rotation: the rows hold 2 settings of model, pooling, prefix.*"
                                           "--filter model="):
        write_plot("rotation", [path], tmp_path / "out")
    assert write_plot("rotation", [path], tmp_path / "out", filters=["pooling=cls"])
    mixed = _layer_rows() + [_row("ATEC", 0.3, pooling="layer-avg:0", method="whitening", dims="64", fit_on="valid",
                                  beta="1", gamma="1")]
    with pytest.raises(StsevalError, match="--plot layers: the rows hold 2 settings of dims, fit_on"):
        write_plot("layers", [_write(mixed, tmp_path / "m" / "whiten.csv")], tmp_path / "out")
    with pytest.raises(StsevalError, match="--plot layers: no raw or whitening rows of layer-avg:N"):
        write_plot("layers", [path], tmp_path / "out")


def test_report_plot_option_writes_the_plot_and_refuses_grid_options(tmp_path):
    path = _write(_rotation_rows(), tmp_path / "r" / "whiten.csv")
    result = CliRunner().invoke(app, ["report", str(path), "--plot", "rotation", "--out", str(tmp_path / "o"),
                                      "--name", "rotation"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "rotation.png").is_file() and (tmp_path / "o" / "rotation.csv").is_file()
    for extra, option in ((["--reference", "su2021"], "--reference"), (["--plot", "heat"], "--plot"),
                          (["--metric", "recall@10"], "--metric")):
        refused = CliRunner().invoke(app, ["report", str(path), "--plot", "rotation", *extra,
                                           "--out", str(tmp_path / "x")])
        assert refused.exit_code == 2
        assert option in refused.output.strip().splitlines()[-1]
