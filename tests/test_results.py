import pandas as pd
import pytest

from stseval.errors import StsevalError
from stseval.results import COLUMNS, ResultRow, ResultsFile, cell_key, read_rows, rows_to_frame, write_frame


def make_row(**changes):
    values = dict(model="tiny", pooling="cls", method="raw", task="STS-B", split="test",
                  metric="spearman_cosine", value=0.5, n_pairs=10)
    values.update(changes)
    return ResultRow(**values)


def test_results_csv_has_documented_columns(tmp_path):
    path = tmp_path / "r.csv"
    write_frame(rows_to_frame([make_row()]), path)
    assert list(pd.read_csv(path).columns) == COLUMNS
    for column in ("model", "pooling", "method", "dims", "fit_on", "train_on", "prefix", "task", "split",
                   "value", "ci_low", "ci_high", "n_pairs", "seconds", "data_sha256", "command", "versions"):
        assert column in COLUMNS


def test_results_file_resumes_and_replaces_same_cell(tmp_path):
    path = tmp_path / "r.csv"
    results = ResultsFile(path)
    results.add([make_row(), make_row(pooling="last-avg", value=0.6)])
    reopened = ResultsFile(path)
    assert reopened.has(cell_key(make_row()))
    assert not reopened.has(cell_key(make_row(pooling="max")))
    reopened.add([make_row(value=0.7)])
    frame = read_rows(path)
    assert len(frame) == 2
    assert frame.loc[frame.pooling == "cls", "value"].item() == pytest.approx(0.7)


def test_prefix_is_part_of_the_cell(tmp_path):
    assert cell_key(make_row(prefix="query: ")) != cell_key(make_row())


def test_atomic_write_leaves_no_temp_files(tmp_path):
    write_frame(rows_to_frame([make_row()]), tmp_path / "r.csv")
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ("a,b\n1,2\n", "missing column"),
    ("model,pooling,method,task,split,metric,value\nm,cls,raw,ATEC,test,spearman_cosine,abc\n", r"r.csv:2"),
])
def test_malformed_results_file_names_the_file(tmp_path, content, message):
    path = tmp_path / "r.csv"
    path.write_text(content)
    with pytest.raises(StsevalError, match=message) as info:
        read_rows(path)
    assert "r.csv" in str(info.value)


def test_two_writers_that_opened_the_file_at_once_keep_each_others_rows(tmp_path):
    path = tmp_path / "r.csv"
    first, second = ResultsFile(path), ResultsFile(path)  # both read the file before either wrote
    first.add([make_row(task="ATEC")])
    second.add([make_row(task="BQ")])
    assert sorted(read_rows(path).task) == ["ATEC", "BQ"]
    assert second.has(cell_key(make_row(task="ATEC")))  # the merge also refreshed what `has` knows
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["r.csv"]  # the lock is hidden


def test_results_written_before_the_fit_columns_existed_still_read(tmp_path):
    path = tmp_path / "old.csv"
    old_columns = [c for c in COLUMNS if c not in ("n_fit", "fit_rank")]
    rows_to_frame([make_row()])[old_columns].to_csv(path, index=False)
    frame = read_rows(path)
    assert list(frame.columns) == COLUMNS and frame.loc[0, "n_fit"] == ""
