"""report --plot curves: SimCSE and CoSENT training curves found through the rows' run folders, drawn side by side."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from stseval.cli import app
from stseval.common.errors import StsevalError
from stseval.report.curves import write_curves
from stseval.runs.results import ResultRow, rows_to_frame, write_frame

MODEL = "tiny-bert"


def _rows(task: str, dropout: str, seed: int, test_end: float, test_best: float, best_step: str,
          loss: str = "su") -> list[ResultRow]:
    common = dict(model=MODEL, pooling="last-avg", task=task, split="test", metric="spearman_cosine",
                  dropout=dropout, seed=seed, loss=loss, batch_size="64", learning_rate="1e-05", epochs="1",
                  run_dir=f"runs/simcse/tiny-{task}-last-avg-d{dropout}-s{seed}", n_pairs=100,
                  created_at="2026-01-01T00:00:00+00:00", command="stseval simcse-train", data_sha256=f"sha-{task}",
                  model_fingerprint="fp")
    return [ResultRow(method="simcse", value=test_end, **common),
            ResultRow(method="simcse-best-valid", value=test_best, best_step=best_step, **common)]


def _curve(folder, task, dropout, seed, values, losses=None):
    steps = [0, 20, 40, 45][:len(values)]
    frame = pd.DataFrame({"step": steps, "train_loss": losses or [float("nan"), 2.0, 1.0, 0.5][:len(values)],
                          "valid-sample1000_spearman": values})
    (folder / "curves").mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "curves" / f"tiny-{task}-last-avg-d{dropout}-s{seed}.csv", index=False)


@pytest.fixture
def results(tmp_path):
    folder = tmp_path / "results" / "simcse_su"
    folder.mkdir(parents=True)
    rows = (_rows("STS-B", "0.3", 0, 0.70, 0.72, "20") + _rows("STS-B", "0.3", 1, 0.71, 0.73, "40")
            + _rows("BQ", "0.1", 0, 0.40, 0.41, "40"))
    write_frame(rows_to_frame(rows), folder / "simcse.csv")
    # step 0 (untrained) is the best point of the first STS-B curve: the chosen checkpoint is still a trained one
    _curve(folder, "STS-B", "0.3", 0, [0.80, 0.78, 0.79, 0.77])
    _curve(folder, "STS-B", "0.3", 1, [0.60, 0.61, 0.65, 0.64])
    _curve(folder, "BQ", "0.1", 0, [0.30, 0.31, 0.35, 0.33])
    return folder


def test_curves_are_found_through_each_rows_run_folder_and_compared_as_change_from_step_0(results, tmp_path):
    written = write_curves([results], tmp_path / "out", name="curves")
    assert [path.name for path in written] == ["curves.csv", "curves.md", "curves.png", "curves.provenance.json"]
    points = pd.read_csv(written[0], dtype={"seed": str, "dropout": str})
    assert len(points) == 12
    seed1 = points[(points["task"] == "STS-B") & (points["seed"] == "1")]
    assert list(seed1["valid_spearman"]) == pytest.approx([60.0, 61.0, 65.0, 64.0])
    assert list(seed1["valid_minus_step0"]) == pytest.approx([0.0, 1.0, 5.0, 4.0])
    markdown = written[1].read_text(encoding="utf-8")
    # tasks in the project's order, then dropout and seed; best step as the best-valid row recorded it
    lines = [line for line in markdown.splitlines() if line.startswith(("| BQ", "| STS-B"))]
    assert lines == ["| BQ | 0.1 | 0 | 30.00 | 40 | 35.00 | 45 | 33.00 | 40.00 | 41.00 |",
                     "| STS-B | 0.3 | 0 | 80.00 | 20 | 78.00 | 45 | 77.00 | 70.00 | 72.00 |",
                     "| STS-B | 0.3 | 1 | 60.00 | 40 | 65.00 | 45 | 64.00 | 71.00 | 73.00 |"]
    assert "`stseval simcse-train`" in markdown
    assert written[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_same_rows_give_the_same_files(results, tmp_path):
    first = write_curves([results], tmp_path / "one", name="curves")
    second = write_curves([results], tmp_path / "two", name="curves")
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_a_run_without_a_curve_file_is_left_out_and_none_at_all_is_an_error(results, tmp_path):
    (results / "curves" / "tiny-BQ-last-avg-d0.1-s0.csv").unlink()
    points = pd.read_csv(write_curves([results], tmp_path / "out", name="curves")[0])
    assert set(points["task"]) == {"STS-B"}
    for path in (results / "curves").iterdir():
        path.unlink()
    with pytest.raises(StsevalError, match="curves/<run folder>.csv"):
        write_curves([results], tmp_path / "out", name="curves")


def test_runs_that_differ_in_a_setting_are_refused_with_the_filter_to_pick_one(results, tmp_path):
    rows = pd.read_csv(results / "simcse.csv", dtype=str, keep_default_na=False)
    rows.loc[rows["task"] == "BQ", "loss"] = "princeton"
    rows.to_csv(results / "simcse.csv", index=False)
    with pytest.raises(StsevalError, match="differ in loss .*--filter loss="):
        write_curves([results], tmp_path / "out", name="curves")
    written = write_curves([results], tmp_path / "out", name="curves", filters=["loss=su"])
    assert set(pd.read_csv(written[0])["task"]) == {"STS-B"}


def test_a_curve_file_without_a_spearman_column_is_named(results, tmp_path):
    bad = results / "curves" / "tiny-BQ-last-avg-d0.1-s0.csv"
    bad.write_text("step,train_loss\n0,\n20,1.0\n", encoding="utf-8")
    with pytest.raises(StsevalError, match="tiny-BQ-last-avg-d0.1-s0.csv: not a training curve"):
        write_curves([results], tmp_path / "out", name="curves")


def test_cli_report_plot_curves(results, tmp_path):
    result = CliRunner().invoke(app, ["report", str(results), "--out", str(tmp_path / "out"), "--name", "c",
                                      "--plot", "curves"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "c.png").is_file()
    refused = CliRunner().invoke(app, ["report", str(results), "--out", str(tmp_path / "out"), "--plot", "curves",
                                       "--best"])
    assert refused.exit_code != 0 and "--best" in refused.output


def test_a_curve_without_the_recorded_best_step_is_named(results, tmp_path):
    _curve(results, "STS-B", "0.3", 1, [0.60, 0.61])  # steps 0 and 20 only; the row records step 40
    with pytest.raises(StsevalError, match="tiny-STS-B-last-avg-d0.3-s1.csv: no point at step 40"):
        write_curves([results], tmp_path / "out", name="curves")


def test_one_tasks_curves_show_their_whole_title_legend_and_axis_label(results, tmp_path):
    from PIL import Image

    from figure_checks import texts_outside
    from stseval.report.curves import Y_LABEL, curve_points, curves_figure
    from stseval.report.grids import load_results

    written = write_curves([results], tmp_path / "out", name="one", filters=["task=STS-B"])
    with Image.open(written[2]) as image:
        assert image.width >= 700  # was 396 px: the title and the legend were cut at both sides
    points = curve_points(load_results([results]).query("task == 'STS-B'"))
    title = "SimCSE training curves: valid-sample1000 Spearman x 100 against step, minus the untrained model"
    figure = curves_figure(points, title)
    assert texts_outside(figure) == []
    assert figure.axes[0].get_ylabel() == Y_LABEL == "change in valid Spearman x 100 since step 0"


def _cosent_rows(train_task: str, pooling: str, seed: int, epochs: str, by_task: dict[str, tuple[float, float]],
                 best_step: str) -> list[ResultRow]:
    """One cosent run scored on every task of by_task (task: (end of training, best on valid))."""
    run_dir = f"runs/cosent/tiny-cosent-{train_task}-{pooling}-s{seed}"
    rows = []
    for task, (end, best) in by_task.items():
        common = dict(model=MODEL, pooling=pooling, task=task, split="test", metric="spearman_cosine", dropout="0.1",
                      seed=seed, loss="cosent", batch_size="32", learning_rate="2e-05", epochs=epochs,
                      train_on=f"{train_task}:train (100 pairs, sha256 abc)", run_dir=run_dir, n_pairs=100,
                      created_at="2026-01-01T00:00:00+00:00", command="stseval cosent-train",
                      data_sha256=f"sha-{task}", model_fingerprint="fp")
        rows += [ResultRow(method="raw", value=end - 0.1, **{**common, "run_dir": "", "train_on": ""}),
                 ResultRow(method="cosent", value=end, **common),
                 ResultRow(method="cosent-best-valid", value=best, best_step=best_step, **common)]
    return rows


@pytest.fixture
def cosent_results(tmp_path):
    folder = tmp_path / "results" / "cosent"
    (folder / "curves").mkdir(parents=True)
    # BQ trains 1 epoch and STS-B 5: runs of one objective may differ in epochs
    rows = (_cosent_rows("STS-B", "cls", 0, "5", {"BQ": (0.40, 0.41), "STS-B": (0.79, 0.80)}, "40")
            + _cosent_rows("STS-B", "last-avg", 0, "5", {"BQ": (0.45, 0.46), "STS-B": (0.81, 0.82)}, "20")
            + _cosent_rows("BQ", "cls", 0, "1", {"BQ": (0.60, 0.62), "STS-B": (0.70, 0.71)}, "45"))
    write_frame(rows_to_frame(rows), folder / "cosent.csv")
    for train_task, pooling, values in (("STS-B", "cls", [0.76, 0.80, 0.84, 0.83]),
                                        ("STS-B", "last-avg", [0.70, 0.75, 0.74, 0.73]),
                                        ("BQ", "cls", [0.30, 0.50, 0.55, 0.58])):
        pd.DataFrame({"step": [0, 20, 40, 45], "train_loss": [float("nan"), 5.0, 4.0, 3.0],
                      f"{train_task}:valid-sample1000_spearman": values}
                     ).to_csv(folder / "curves" / f"tiny-cosent-{train_task}-{pooling}-s0.csv", index=False)
    return folder


def test_cosent_curves_draw_each_run_once_a_panel_per_train_task_and_its_own_tasks_test(cosent_results, tmp_path):
    written = write_curves([cosent_results], tmp_path / "out", name="cosent_curves")
    points = pd.read_csv(written[0], dtype={"seed": str})
    # each run is scored on two tasks but has one curve: 3 runs x 4 points, not 6 x 4
    assert len(points) == 12
    assert set(points.columns) >= {"train_task", "pooling", "seed", "valid_minus_step0"}
    assert list(points.loc[points["pooling"] == "last-avg", "valid_minus_step0"]) == pytest.approx([0, 5, 4, 3])
    markdown = written[1].read_text(encoding="utf-8")
    assert markdown.startswith("# CoSENT training curves: each train task's valid sample Spearman")
    lines = [line for line in markdown.splitlines() if line.startswith(("| BQ", "| STS-B"))]
    # train tasks in the project's order (BQ before STS-B), then pooling; test columns on the run's own task
    assert lines == ["| BQ | cls | 0 | 30.00 | 45 | 58.00 | 45 | 58.00 | 60.00 | 62.00 |",
                     "| STS-B | cls | 0 | 76.00 | 40 | 84.00 | 45 | 83.00 | 79.00 | 80.00 |",
                     "| STS-B | last-avg | 0 | 70.00 | 20 | 75.00 | 45 | 73.00 | 81.00 | 82.00 |"]
    assert "test, end of training" in markdown and "`stseval cosent-train`" in markdown
    assert "Spearman x 100 of tiny-bert. " in markdown  # pooling is a column here, not repeated per model


def test_cosent_curves_figure_has_a_panel_per_train_task_and_a_colour_per_pooling(cosent_results):
    from figure_checks import texts_outside
    from stseval.report.curves import COSENT, curve_points, curves_figure
    from stseval.report.grids import load_results

    points = curve_points(load_results([cosent_results]).query("split == 'test'"))
    figure = curves_figure(points, "CoSENT training curves", COSENT)
    assert [axis.get_title() for axis in figure.axes] == ["trained on BQ", "trained on STS-B"]
    colours = {line.get_label(): line.get_color() for line in figure.axes[1].get_lines()}
    assert colours["cls, seed 0"] != colours["last-avg, seed 0"]
    assert texts_outside(figure) == []


def test_simcse_and_cosent_rows_together_are_refused_with_the_filter_to_pick_one(results, cosent_results, tmp_path):
    with pytest.raises(StsevalError, match="simcse and cosent runs; pick one with --filter 'method=simcse\\*'"):
        write_curves([results, cosent_results], tmp_path / "out", name="both")
    written = write_curves([results, cosent_results], tmp_path / "out", name="cosent", filters=["method=cosent*"])
    assert set(pd.read_csv(written[0])["train_task"]) == {"BQ", "STS-B"}
