"""Grids from long-format result rows: pivoting, duplicates, mixing refused, bad files, references, output."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from stseval.common.errors import StsevalError
from stseval.data.tasks import TASKS
from stseval.report.grids import (
    build_grid,
    load_results,
    parse_keys,
    resolve_duplicates,
)
from stseval.report.tables import grid_to_markdown
from stseval.report.write import write_report
from stseval.runs.results import ResultRow, rows_to_frame, write_frame

N_PAIRS = {"ATEC": 400, "BQ": 200, "LCQMC": 100, "PAWSX": 50, "STS-B": 50}
MODEL = "intfloat/multilingual-e5-small"


def make_rows(values: dict[tuple[str, str], list[float]], model: str = MODEL,
              created_at: str = "2026-01-01T00:00:00+00:00", **fields) -> list[ResultRow]:
    """Rows for (pooling, method) -> one value per task in TASKS order (None: status n/a)."""
    rows = []
    for (pooling, method), per_task in values.items():
        for task, value in zip(TASKS, per_task, strict=True):
            rows.append(ResultRow(
                model=model, pooling=pooling, method=method, task=task, split="test", metric="spearman_cosine",
                value=math.nan if value is None else value, status="n/a" if value is None else "ok",
                ci_low=math.nan if value is None else value - 0.01, ci_high=math.nan if value is None else value + 0.01,
                n_pairs=N_PAIRS[task], data_sha256=f"sha-{task}", versions="python=3.11.7;numpy=2.4.6",
                command="stseval whiten", git_commit="abc123", created_at=created_at, model_fingerprint="fp",
                **fields))
    return rows


def write(rows: list[ResultRow], path):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_frame(rows_to_frame(rows), path)
    return path


def test_grid_pivots_tasks_in_order_with_averages():
    rows = make_rows({("last-avg", "whitening"): [0.5, 0.4, 0.3, 0.2, 0.1],
                      ("cls", "raw"): [0.123456, 0.2, 0.3, 0.4, 0.5],
                      ("last-avg", "raw"): [0.1, 0.2, 0.3, 0.4, 0.6]})
    grid = build_grid(rows_to_frame(rows[::-1]))  # input order must not matter

    assert list(grid.columns) == [*TASKS, "avg", "w-avg"]
    assert list(grid.index.names) == ["model", "pooling", "method", "dims"]
    assert [key[1:3] for key in grid.index] == [("cls", "raw"), ("last-avg", "raw"), ("last-avg", "whitening")]
    cls_raw = grid.iloc[0]
    assert cls_raw["ATEC"] == 12.35  # x100, two decimals
    assert cls_raw["avg"] == round((12.3456 + 20 + 30 + 40 + 50) / 5, 2)
    weights = [N_PAIRS[t] for t in TASKS]
    expected = sum(w * v for w, v in zip(weights, [12.3456, 20, 30, 40, 50], strict=True)) / sum(weights)
    assert cls_raw["w-avg"] == round(expected, 2)


def test_na_status_shows_na_and_optional_keys_appear_when_they_vary():
    rows = make_rows({("cls", "raw"): [0.1] * 5}) + make_rows({("pooler", "raw"): [None] * 5}) \
        + make_rows({("cls", "whitening"): [0.2] * 5}, fit_on="test")
    grid = build_grid(rows_to_frame(rows))
    assert list(grid.index.names) == ["model", "pooling", "method", "dims", "fit_on"]
    pooler = grid.xs("pooler", level="pooling").iloc[0]
    assert list(pooler) == ["n/a"] * 7
    assert "| n/a | n/a |" in grid_to_markdown(grid)


def test_other_columns_and_rows_pivot(tmp_path):
    rows = make_rows({("cls", "raw"): [0.1, 0.2, 0.3, 0.4, 0.5], ("last-avg", "raw"): [0.6, 0.7, 0.8, 0.9, 1.0]})
    grid = build_grid(rows_to_frame(rows), rows=["task"], cols=["pooling"])
    assert list(grid.index) == list(TASKS)
    assert list(grid.columns) == ["cls", "last-avg"]  # no averages over poolings
    assert grid.loc["PAWSX", "last-avg"] == 90.0


def test_ci_columns_and_markdown_intervals():
    grid = build_grid(rows_to_frame(make_rows({("cls", "raw"): [0.4123, 0.5, 0.5, 0.5, 0.5]})), ci=True)
    assert grid.iloc[0]["ATEC_ci_low"] == 40.23
    assert "41.23 [40.23, 42.23]" in grid_to_markdown(grid)


def test_markdown_bolds_best_per_column():
    rows = make_rows({("cls", "raw"): [0.1, 0.9, 0.3, 0.4, 0.5], ("last-avg", "raw"): [0.2, 0.2, 0.3, 0.1, 0.1]})
    text = grid_to_markdown(build_grid(rows_to_frame(rows)), best=True)
    cls_line = next(line for line in text.splitlines() if "| cls |" in line)
    last_line = next(line for line in text.splitlines() if "| last-avg |" in line)
    assert "**90.00**" in cls_line and "**20.00**" in last_line
    assert "**30.00**" in cls_line and "**30.00**" in last_line  # ties are all bold


def test_duplicates_keep_latest_by_default_and_strict_refuses(tmp_path):
    old = write(make_rows({("cls", "raw"): [0.1] * 5}, created_at="2026-01-01T00:00:00+00:00"),
                tmp_path / "a" / "r.csv")
    new = write(make_rows({("cls", "raw"): [0.3] * 5}, created_at="2026-02-01T00:00:00+00:00"),
                tmp_path / "b" / "r.csv")
    frame = load_results([new, old])  # the latest wins whatever the file order
    grid = build_grid(resolve_duplicates(frame))
    assert grid.iloc[0]["ATEC"] == 30.0
    with pytest.raises(StsevalError,
                       match=r"5 result cell\(s\).*a/r.csv:2.*b/r.csv:2|5 result cell\(s\).*b/r.csv:2.*a/r.csv:2"):
        resolve_duplicates(frame, strict=True)
    with pytest.raises(StsevalError, match="re-runs"):
        build_grid(frame)  # unresolved duplicates are never averaged or picked silently


def test_identical_copies_are_one_row_even_when_strict(tmp_path):
    rows = make_rows({("cls", "raw"): [0.1] * 5})
    frame = load_results([write(rows, tmp_path / "a.csv"), write(rows, tmp_path / "copy.csv")])
    assert len(resolve_duplicates(frame, strict=True)) == 5


def test_mixed_data_checksums_are_refused_unless_filtered(tmp_path):
    write(make_rows({("cls", "raw"): [0.1] * 5}), tmp_path / "in" / "a.csv")
    other = make_rows({("last-avg", "raw"): [0.2] * 5})
    other[1].data_sha256 = "sha-BQ-v2"
    write(other, tmp_path / "in" / "b.csv")
    with pytest.raises(StsevalError, match=r"BQ test: .*'sha-BQ'.*a.csv.*'sha-BQ-v2'.*b.csv"):
        write_report([tmp_path / "in"], tmp_path / "out")
    written = write_report([tmp_path / "in"], tmp_path / "out", filters=["pooling=cls"])
    assert [p.name for p in written] == ["spearman_cosine_test.csv", "spearman_cosine_test.md",
                                         "spearman_cosine_test.png", "spearman_cosine_test.provenance.json"]


def test_rows_from_other_versions_and_fingerprints_are_shown_as_separate_models(tmp_path):
    # committed rows (transformers 5.24.0, fingerprint fp) beside a fresh run's (5.25.0, another fingerprint),
    # as `stseval report results/whitening runs/quickstart` on a fresh clone
    committed = make_rows({("cls", "raw"): [0.1] * 5, ("last-avg", "raw"): [0.2] * 5})
    fresh = make_rows({("last-avg", "raw"): [0.3] * 5}, created_at="2026-03-01T00:00:00+00:00")
    for row in committed:
        row.versions = "python=3.11.7;transformers=5.24.0"
    for row in fresh:
        row.versions, row.model_fingerprint = "python=3.11.7;transformers=5.25.0", "fp2"
    paths = [write(committed, tmp_path / "results" / "whiten.csv"), write(fresh, tmp_path / "runs" / "whiten.csv")]
    written = write_report(paths, tmp_path / "out")
    grid = pd.read_csv(written[0], dtype=str, keep_default_na=False)
    old_label, new_label = f"{MODEL} [fp fp, transformers 5.24.0]", f"{MODEL} [fp fp2, transformers 5.25.0]"
    assert list(zip(grid["model"], grid["pooling"], grid["ATEC"], strict=True)) == [
        (old_label, "cls", "10.00"), (old_label, "last-avg", "20.00"), (new_label, "last-avg", "30.00")]
    markdown = written[1].read_text(encoding="utf-8")
    assert "- library versions differ between rows: transformers 5.24.0 vs 5.25.0" in markdown
    assert f"`{new_label}` = fingerprint `fp2`, from {paths[1].as_posix()}" in markdown
    # one name with one variant keeps its label; only versions differing names only versions
    rows = make_rows({("cls", "raw"): [0.1] * 5}) + make_rows({("last-avg", "raw"): [0.2] * 5})
    rows[-1].versions = "python=3.12.1;numpy=2.4.6"
    grid = build_grid(rows_to_frame(rows))
    assert sorted(set(grid.index.get_level_values("model"))) == [f"{MODEL} [python 3.11.7]", f"{MODEL} [python 3.12.1]"]
    assert set(build_grid(rows_to_frame(rows[:5])).index.get_level_values("model")) == {MODEL}


@pytest.mark.parametrize("content, message", [
    ("", "results file is empty"),
    ("model,pooling\nx,y\n", "missing column"),
    ("model,pooling,method,task,split,metric,value,data_sha256,model_fingerprint\n"
     "m,cls,raw,BQ,test,spearman_cosine,abc,sha,fp\n", r":2: value 'abc'"),
    ("model,pooling,method,task,split,metric,value,data_sha256,model_fingerprint\n", "header but no rows"),
    ("model,pooling,method,task,split,metric,value\n", r"missing column\(s\) data_sha256, model_fingerprint"),
])
def test_empty_or_malformed_file_names_the_file(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(StsevalError, match=f"bad.csv.*{message}"):
        load_results([path])


def test_folders_skip_other_csvs_and_need_results(tmp_path):
    write(make_rows({("cls", "raw"): [0.1] * 5}), tmp_path / "runs" / "deep" / "whiten.csv")
    (tmp_path / "runs" / "grid.csv").write_text("model,ATEC\nm,1.0\n", encoding="utf-8")
    (tmp_path / "runs" / "empty.csv").write_text("", encoding="utf-8")
    frame = load_results([tmp_path / "runs"])
    assert set(frame["source_file"]) == {(tmp_path / "runs" / "deep" / "whiten.csv").as_posix()}
    (tmp_path / "nothing").mkdir()
    with pytest.raises(StsevalError, match="nothing: no results CSV"):
        load_results([tmp_path / "nothing"])
    with pytest.raises(StsevalError, match="missing.csv: no such"):
        load_results([tmp_path / "missing.csv"])


def test_filters_match_wildcards_and_name_bad_keys(tmp_path):
    path = write(make_rows({("cls", "raw"): [0.1] * 5}) + make_rows({("cls", "raw"): [0.2] * 5}, model="bert"),
                 tmp_path / "r.csv")
    written = write_report([path], tmp_path / "out", filters=["model=*e5-small"], name="e5")
    grid = pd.read_csv(written[0], dtype=str, keep_default_na=False)
    assert list(grid["model"]) == [MODEL]
    with pytest.raises(StsevalError, match="--filter 'colour=red': no column"):
        write_report([path], tmp_path / "out", filters=["colour=red"])
    with pytest.raises(StsevalError, match="no row matches; model takes 'bert'"):
        write_report([path], tmp_path / "out", filters=["model=roberta"])


def test_reference_rows_sit_beside_ours():
    rows = make_rows({("cls", "raw"): [0.1] * 5, ("last-avg", "raw"): [0.2] * 5, ("cls", "whitening"): [0.3] * 5})
    grid = build_grid(rows_to_frame(rows), reference=["su2021:BERT", "mteb"])
    order = [(key[0], key[1], key[2]) for key in grid.index]
    assert order == [
        (MODEL, "cls", "raw"), ("Su2021:BERT", "cls", "raw"),
        (MODEL, "cls", "whitening"), ("Su2021:BERT", "cls", "whitening"),
        (MODEL, "last-avg", "raw"), (f"mteb:{MODEL}", "last-avg", "raw"), ("Su2021:BERT", "last-avg", "raw"),
    ]
    assert list(grid.iloc[1][list(TASKS)]) == [16.59, 29.35, 41.71, 15.15, 34.65]  # Su 2021 BERT P1 raw
    assert list(grid.iloc[5][list(TASKS)]) == [35.14, 43.27, 72.70, 11.00, 77.73]
    with pytest.raises(StsevalError, match="no model GPT"):
        build_grid(rows_to_frame(rows), reference=["su2021:GPT"])
    with pytest.raises(StsevalError, match="unknown table"):
        build_grid(rows_to_frame(rows), reference=["su2099"])


def test_a_reference_name_selects_only_its_own_rows():
    # Su's 2022 rows (whitening to 256 dims) share su2021.csv with his 2021 rows; su2021 must not add them
    rows = make_rows({("first-last-avg", "whitening"): [0.3] * 5}, dims="256")
    with pytest.raises(StsevalError, match="no published row"):
        build_grid(rows_to_frame(rows), reference=["su2021"])
    grid = build_grid(rows_to_frame(rows), reference=["su2022"])
    assert [key[0] for key in grid.index] == [MODEL, "Su2022:BERT"]
    assert list(grid.iloc[1][list(TASKS)]) == [27.91, 37.67, 65.65, 15.34, 69.37]  # Su 2022 BERT P4 256 dims


def simcse_rows(sources: dict[str, str], cap: int, dropout: str) -> list[ResultRow]:
    """SimCSE rows as a run writes them: train_on names each task's splits and sample."""
    rows = []
    for method, value in (("simcse", 0.5), ("simcse+whitening", 0.4)):
        for row in make_rows({("last-avg", method): [value] * 5}, dropout=dropout):
            row.train_on = f"{sources[row.task]} ({cap} of {N_PAIRS[row.task] * 40} sentences)"
            row.fit_on = row.train_on if method == "simcse+whitening" else ""
            rows.append(row)
    return rows


ALL_AVAILABLE = {"ATEC": "valid+test", "BQ": "train+valid+test", "LCQMC": "valid+test", "PAWSX": "valid+test",
                 "STS-B": "train+valid+test"}


def test_a_simcse_setting_is_one_row_with_every_task_and_averages(tmp_path):
    rows = make_rows({("last-avg", "raw"): [0.3] * 5}) + simcse_rows(ALL_AVAILABLE, 1024, "0.1") \
        + simcse_rows(ALL_AVAILABLE, 1024, "0.3")
    grid = build_grid(rows_to_frame(rows))
    assert len(grid) == 5  # raw, then simcse and simcse+whitening for each dropout
    assert grid[list(TASKS)].notna().all().all() and grid["avg"].notna().all()
    trained = grid.xs("simcse", level="method").index
    assert set(trained.get_level_values("train_on")) == {"valid+test or train+valid+test"}
    assert set(grid.xs("simcse+whitening", level="method").index.get_level_values("fit_on")) \
        == {"the training sentences"}
    # the per-task samples the grid no longer shows are in the footer
    written = write_report([write(rows, tmp_path / "simcse.csv")], tmp_path / "out")
    markdown = written[1].read_text(encoding="utf-8")
    assert "- trained on, per task: ATEC `valid+test (1024 of 16000 sentences)`; BQ" in markdown


def test_runs_that_differ_only_in_sample_size_keep_their_rows_apart():
    rows = simcse_rows(ALL_AVAILABLE, 1024, "0.1") + simcse_rows(ALL_AVAILABLE, 2000, "0.1")
    grid = build_grid(rows_to_frame(rows))
    assert len(grid) == 20  # unchanged labels: each (method, sample) per task on its own row, no cell lost
    assert "valid+test (2000 of 16000 sentences)" in set(grid.index.get_level_values("train_on"))


def test_rows_falling_into_one_cell_name_the_difference():
    rows = make_rows({("cls", "raw"): [0.1] * 5}) + make_rows({("cls", "raw"): [0.2] * 5}, prefix="query: ")
    with pytest.raises(StsevalError, match="differ in prefix"):
        build_grid(rows_to_frame(rows), rows=["model", "pooling", "method"])
    grid = build_grid(rows_to_frame(rows))
    assert '| "query: " |' in grid_to_markdown(grid)


def test_report_is_deterministic_and_csv_is_pure_data(tmp_path):
    rows = make_rows({("cls", "raw"): [0.41, 0.5, 0.6, 0.2, 0.7], ("pooler", "raw"): [None] * 5})
    path = write(rows, tmp_path / "results" / "whiten.csv")
    first = write_report([path], tmp_path / "one", best=True, ci=True, reference=["su2021:BERT"])
    second = write_report([path], tmp_path / "two", best=True, ci=True, reference=["su2021:BERT"])
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    csv_text = first[0].read_text(encoding="utf-8")
    assert csv_text.splitlines()[0].startswith("model,pooling,method,dims,ATEC,ATEC_ci_low,ATEC_ci_high,BQ")
    assert f"{MODEL},cls,raw,full,41.00,40.00,42.00," in csv_text
    assert f"{MODEL},pooler,raw,full,n/a,,,n/a" in csv_text
    assert "stseval whiten" not in csv_text and "abc123" not in csv_text
    markdown = first[1].read_text(encoding="utf-8")
    assert "`stseval whiten`" in markdown and "`abc123`" in markdown and "ATEC/test `sha-ATEC`" in markdown
    assert "Su 2021, kexue.fm/archives/8348" in markdown
    provenance = json.loads(first[3].read_text(encoding="utf-8"))
    assert provenance["commands"] == ["stseval whiten"] and provenance["data_sha256"]["BQ/test"] == "sha-BQ"
    assert first[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"Software" not in first[2].read_bytes()


def test_parse_keys():
    assert parse_keys(" model, pooling ,") == ["model", "pooling"]
    assert parse_keys("") is None


def test_over_seeds_gives_mean_and_sd_per_setting_beside_the_per_seed_grid(tmp_path):
    from stseval.report.write import write_report

    rows = []
    for seed, shift in ((0, 0.0), (1, 0.02), (2, 0.04)):
        rows += make_rows({("last-avg", "simcse"): [0.30 + shift, 0.40, 0.70, 0.10, 0.75]}, seed=seed, dropout="0.3")
    rows += make_rows({("last-avg", "simcse"): [0.20, 0.40, 0.70, 0.10, 0.75]}, seed=0, dropout="0.1")
    rows += make_rows({("last-avg", "raw"): [0.25, 0.41, 0.71, 0.11, 0.76]}, seed=0)
    written = write_report([write(rows, tmp_path / "simcse.csv")], tmp_path / "out", name="simcse",
                           rows=["model", "pooling", "method", "dropout", "seed"], over_seeds=True)
    summary = pd.read_csv(tmp_path / "out" / "simcse_seeds.csv", dtype={"seeds": str, "dropout": str})
    three = summary[(summary["method"] == "simcse") & (summary["dropout"].astype(str) == "0.3")].iloc[0]
    assert three["seeds"] == "0,1,2" and three["ATEC"] == pytest.approx(32.0) and three["ATEC sd"] == pytest.approx(2.0)
    assert int(three["ATEC n"]) == 3 and three["BQ sd"] == pytest.approx(0.0)
    # averages over the five tasks per seed (45.0, 45.4, 45.8), then over seeds
    assert three["avg"] == pytest.approx(45.4) and three["avg sd"] == pytest.approx(0.4) and int(three["avg n"]) == 3
    weights = np.array([N_PAIRS[task] for task in TASKS], dtype=float)
    per_seed = [np.average([30 + 100 * shift, 40, 70, 10, 75], weights=weights) for shift in (0.0, 0.02, 0.04)]
    assert three["w-avg"] == pytest.approx(round(float(np.mean(per_seed)), 2))
    one = summary[(summary["method"] == "simcse") & (summary["dropout"].astype(str) == "0.1")].iloc[0]
    assert one["seeds"] == "0" and pd.isna(one["ATEC sd"])  # one seed: no sd
    markdown = (tmp_path / "out" / "simcse_seeds.md").read_text(encoding="utf-8")
    assert "32.00 ± 2.00 (3)" in markdown and "20.00 (1)" in markdown and "45.40 ± 0.40 (3)" in markdown
    assert "| avg | w-avg |" in markdown
    grid = pd.read_csv(tmp_path / "out" / "simcse.csv")
    assert len(grid) == 5  # the per-seed grid keeps one row per seed
    assert tmp_path / "out" / "simcse_seeds.md" in written


def test_over_seeds_keeps_whitening_on_the_training_sample_in_one_row_across_tasks():
    from stseval.report.seeds import FIT_ON_TRAINING_SENTENCES, seed_summary

    rows = []
    for seed in (0, 1):
        for row in make_rows({("last-avg", "simcse+whitening"): [0.3, 0.4, 0.7, 0.1, 0.75 + seed / 100]},
                             seed=seed, dropout="0.3"):
            # each task and seed names its own sample, as a real run does
            row.train_on = row.fit_on = f"valid+test (10000 of {1000 * len(row.task)} sentences, seed {seed})"
            rows.append(row)
    rows += make_rows({("last-avg", "whitening"): [0.2] * 5}, fit_on="test", train_on="")
    summary = seed_summary(rows_to_frame(rows), "spearman_cosine", "test")
    after = summary[summary["method"] == "simcse+whitening"]
    assert len(after) == 1 and after.iloc[0]["fit_on"] == FIT_ON_TRAINING_SENTENCES
    assert after.iloc[0]["STS-B"] == pytest.approx(75.5) and int(after.iloc[0]["STS-B n"]) == 2
    assert summary[summary["method"] == "whitening"].iloc[0]["fit_on"] == "test"  # a fit of its own keeps its name


def test_over_seeds_keeps_a_chosen_setting_in_one_row_whatever_dims_each_task_chose():
    from stseval.report.seeds import CHOSEN_ON_VALID, seed_summary

    rows = make_rows({("last-avg", "whitening-chosen"): [0.3, 0.4, 0.7, 0.1, 0.75]}, fit_on="all-available")
    for row, dims in zip(rows, ("128", "64", "128", "full", "full"), strict=True):
        row.dims = dims  # as whiten --choose-on valid records each task's choice
    rows += make_rows({("last-avg", "whitening"): [0.2] * 5}, fit_on="test", dims="128")
    summary = seed_summary(rows_to_frame(rows), "spearman_cosine", "test")
    chosen = summary[summary["method"] == "whitening-chosen"]
    assert len(chosen) == 1 and chosen.iloc[0]["dims"] == CHOSEN_ON_VALID  # was three rows, by chosen dims
    assert chosen.iloc[0]["avg"] == pytest.approx(45.0)  # and so the average over the five tasks exists
    assert summary[summary["method"] == "whitening"].iloc[0]["dims"] == "128"  # a fixed dims keeps its value


def test_over_seeds_keeps_models_trained_on_different_labelled_splits_apart():
    from stseval.report.seeds import seed_summary

    rows = []
    for seed in (0, 1):
        for train_on, stsb in (("BQ:train (100000 pairs, sha256 37d80cb8cc0a)", 0.70),
                               ("STS-B:train (5231 pairs, sha256 456904474b18)", 0.80)):
            rows += make_rows({("cls", "cosent-best-valid"): [0.3, 0.4, 0.7, 0.1, stsb + seed / 100]}, seed=seed,
                              train_on=train_on, epochs="5")
    summary = seed_summary(rows_to_frame(rows), "spearman_cosine", "test")
    # one row per train split, each the mean of its own two seeds (one row averaging both was the old output)
    assert sorted(zip(summary["train_on"], summary["STS-B"], strict=True)) == [
        ("BQ:train", pytest.approx(70.5)), ("STS-B:train", pytest.approx(80.5))]


def _sample_rows(split: str, method: str = "raw") -> list[ResultRow]:
    rows = make_rows({("last-avg", method): [0.1, 0.2, 0.3, 0.4, 0.5]})
    for row in rows:
        row.split = split
    return rows


def test_every_input_that_loses_rows_to_the_split_says_so(tmp_path):
    whitening = write(make_rows({("cls", "raw"): [0.1, 0.2, 0.3, 0.4, 0.5]}), tmp_path / "whitening" / "whiten.csv")
    simcse = write(_sample_rows("test-sample1000", method="simcse"), tmp_path / "simcse" / "simcse.csv")
    said = []
    written = write_report([tmp_path / "whitening", tmp_path / "simcse"], tmp_path / "out", name="grid",
                           log=said.append)
    assert said == [f"left out: {simcse.as_posix()}: none of its 5 rows are in the grid: 5 have split "
                    "test-sample1000, not test (show them with --split test-sample1000, or --split all)"]
    markdown = written[1].read_text(encoding="utf-8")
    assert f"- left out: {simcse.as_posix()}: none of its 5 rows" in markdown
    assert json.loads(written[3].read_text(encoding="utf-8"))["left_out"] == [said[0].removeprefix("left out: ")]
    assert whitening.as_posix() not in " ".join(said)


def test_an_input_emptied_by_a_filter_says_so_and_partly_filtered_inputs_stay_quiet(tmp_path):
    write(make_rows({("cls", "raw"): [0.1, 0.2, 0.3, 0.4, 0.5], ("max", "raw"): [0.1, 0.2, 0.3, 0.4, 0.5]}),
          tmp_path / "a.csv")
    other = write(make_rows({("last-avg", "raw"): [0.1, 0.2, 0.3, 0.4, 0.5]}, model="other"), tmp_path / "b.csv")
    said = []
    write_report([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "out", filters=["pooling=cls"], log=said.append)
    assert said == [f"left out: {other.as_posix()}: none of its 5 rows are in the grid: "
                    "no row matches --filter pooling=cls"]


def test_split_all_keeps_every_input_and_lists_no_exclusion(tmp_path):
    write(make_rows({("cls", "raw"): [0.1, 0.2, 0.3, 0.4, 0.5]}), tmp_path / "a.csv")
    write(_sample_rows("test-sample1000", method="simcse"), tmp_path / "b.csv")
    said = []
    written = write_report([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "out", split="all", log=said.append)
    assert said == []
    assert "left out" not in written[1].read_text(encoding="utf-8")


def test_unknown_split_lists_the_present_splits_without_all_among_them(tmp_path):
    write(_sample_rows("test-sample1000"), tmp_path / "a.csv")
    with pytest.raises(StsevalError, match=r"^--split 'test': no spearman_cosine rows for it; the rows have split "
                                           r"test-sample1000 \(or give --split all\)$"):
        write_report([tmp_path / "a.csv"], tmp_path / "out")


def test_markdown_does_not_repeat_its_title_and_shows_one_time_when_rows_share_it(tmp_path):
    write(make_rows({("cls", "raw"): [0.1, 0.2, 0.3, 0.4, 0.5]}), tmp_path / "a.csv")
    lines = write_report([tmp_path / "a.csv"], tmp_path / "out")[1].read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# spearman_cosine x 100, test split"
    assert "spearman_cosine" not in lines[2] and "split" not in lines[2] and lines[2].startswith("5 result rows")
    assert "- created: 2026-01-01T00:00:00+00:00" in lines and not any(" to 2026" in line for line in lines)
    later = make_rows({("max", "raw"): [0.1, 0.2, 0.3, 0.4, 0.5]}, created_at="2026-01-01T00:01:00+00:00")
    write(make_rows({("cls", "raw"): [0.1, 0.2, 0.3, 0.4, 0.5]}) + later, tmp_path / "a.csv")
    text = write_report([tmp_path / "a.csv"], tmp_path / "out")[1].read_text(encoding="utf-8")
    assert "- created: 2026-01-01T00:00:00+00:00 to 2026-01-01T00:01:00+00:00" in text


def test_task_columns_follow_the_given_order_then_the_registry():
    frame = rows_to_frame(make_rows({("cls", "raw"): [0.1, 0.2, 0.3, 0.4, 0.5]}))
    assert list(build_grid(frame, task_order=["STS-B", "PAWSX"]).columns) == [
        "STS-B", "PAWSX", "ATEC", "BQ", "LCQMC", "avg", "w-avg"]
    assert list(build_grid(frame).columns)[:5] == list(TASKS)


def test_default_rows_gain_a_seed_column_when_seeds_vary(tmp_path):
    """simcse-train's grid after a second seed lands: one row per seed, not a 'rows fall into one cell' error."""
    rows = make_rows({("last-avg", "raw"): [0.25, 0.41, 0.71, 0.11, 0.76]}, seed=0)
    rows += make_rows({("last-avg", "raw"): [0.26, 0.41, 0.71, 0.11, 0.76]}, seed=1)
    grid = build_grid(rows_to_frame(rows))
    assert "seed" in grid.index.names and len(grid) == 2
    same_seed = build_grid(rows_to_frame(rows[:5]))
    assert "seed" not in same_seed.index.names


# --- issue 29 -------------------------------------------------------------------------------------------


def _undefined(rows: list[ResultRow], task: str) -> list[ResultRow]:
    """The rows, that task's cells made undefined (as constant gold labels make them)."""
    for row in rows:
        if row.task == task:
            row.value = row.ci_low = row.ci_high = math.nan
            row.status, row.note = "undefined", "gold scores are constant (all 3) over 50 pairs"
    return rows


def test_undefined_cells_show_as_such_in_grids_and_their_averages(tmp_path):
    """item 2: an undefined Spearman is neither a number nor an empty cell."""
    rows = _undefined(make_rows({("cls", "raw"): [0.1] * 5}), "STS-B") \
        + make_rows({("pooler", "raw"): [None] * 4 + [0.2]})
    rows += _undefined(make_rows({("pooler", "whitening"): [None] * 4 + [0.2]}), "STS-B")
    grid = build_grid(rows_to_frame(rows))
    cls_raw, pooler_raw, mixed = (grid.xs(key, level="pooling").xs(method, level="method").iloc[0]
                                  for key, method in (("cls", "raw"), ("pooler", "raw"), ("pooler", "whitening")))
    assert cls_raw["STS-B"] == "undefined" and (cls_raw["avg"], cls_raw["w-avg"]) == ("undefined", "undefined")
    assert pooler_raw["avg"] == "n/a"
    assert mixed["STS-B"] == "undefined" and mixed["avg"] == "n/a"  # gaps of several kinds
    assert "| undefined |" in grid_to_markdown(grid)
    # the same through files: the rows read back and the report writes them
    path = write(rows, tmp_path / "in" / "r.csv")
    write_report([path], tmp_path / "out")
    assert ",undefined," in next((tmp_path / "out").glob("*.csv")).read_text(encoding="utf-8")


def test_over_seeds_leaves_undefined_cells_out_of_the_mean():
    from stseval.report.seeds import seed_summary

    rows = make_rows({("cls", "raw"): [0.1, 0.2, 0.3, 0.4, 0.5]}, seed=0)
    rows += _undefined(make_rows({("cls", "raw"): [0.3, 0.2, 0.3, 0.4, 0.5]}, seed=1), "ATEC")
    summary = seed_summary(rows_to_frame(rows), "spearman_cosine", "test").iloc[0]
    assert summary["ATEC"] == pytest.approx(10.0) and int(summary["ATEC n"]) == 1
    assert int(summary["avg n"]) == 1  # only seed 0 has every task


def _damage_by_dropping_value(path):
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.drop(columns=["value"]).to_csv(path, index=False)


def _damage_by_encoding_gbk(path):
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame["note"] = "句子向量"  # Chinese text that GBK bytes make invalid UTF-8
    frame.to_csv(path, index=False, encoding="gbk")


@pytest.mark.parametrize("damage, why", [
    (_damage_by_dropping_value, "missing column(s) value"),
    (_damage_by_encoding_gbk, "not a readable results CSV"),
])
def test_report_refuses_a_damaged_results_csv_in_a_folder_by_name(tmp_path, damage, why):
    """item 5: a damaged results file beside good ones is named, not skipped in silence with exit 0."""
    from typer.testing import CliRunner

    from stseval.cli import app

    folder = tmp_path / "results"
    write(make_rows({("cls", "raw"): [0.1] * 5}), folder / "good" / "whiten.csv")
    damaged = write(make_rows({("last-avg", "raw"): [0.2] * 5}), folder / "bad" / "whiten.csv")
    damage(damaged)
    result = CliRunner().invoke(app, ["report", str(folder), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"stseval: {damaged}") and why in lines[0]
    assert not (tmp_path / "rep").exists()


def test_grids_and_curves_beside_results_are_still_skipped(tmp_path):
    folder = tmp_path / "results"
    write(make_rows({("cls", "raw"): [0.1] * 5}), folder / "whiten.csv")
    write_report([folder / "whiten.csv"], folder / "report")  # grid CSVs into the results folder
    (folder / "curves.csv").write_text("step,train_loss,valid-sample1000_spearman\n0,1.0,0.5\n", encoding="utf-8")
    (folder / "grid-by-split.csv").write_text("model,pooling,method,dims,split,ATEC,avg\nm,cls,raw,full,test,1,1\n",
                                              encoding="utf-8")
    assert set(load_results([folder]).source_file) == {(folder / "whiten.csv").as_posix()}


def test_rates_are_shown_as_recorded_and_fractions_x_100(tmp_path):
    rows = make_rows({("cls", "raw"): [1234.5] * 5})
    for row in rows:
        row.metric = "qps"
    rows += make_rows({("cls", "raw"): [0.5] * 5})
    written = write_report([write(rows, tmp_path / "r.csv")], tmp_path / "out", name="g")
    qps = next(path for path in written if path.name == "g_qps.md").read_text(encoding="utf-8")
    assert qps.startswith("# qps, test split\n") and "| 1234.50 |" in qps  # 1234.5 queries per second, not x 100
    spearman = next(path for path in written if path.name == "g_spearman_cosine.md").read_text(encoding="utf-8")
    assert spearman.startswith("# spearman_cosine x 100, test split\n") and "| 50.00 |" in spearman
