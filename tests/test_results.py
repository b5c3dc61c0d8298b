import pandas as pd
import pytest

from stseval.common.errors import StsevalError
from stseval.runs.results import (
    COLUMNS,
    ResultRow,
    ResultsFile,
    cell_key,
    machine_description,
    read_rows,
    rows_to_frame,
    widest_vector_unit,
    write_frame,
)


def make_row(**changes):
    values = dict(model="tiny", pooling="cls", method="raw", task="STS-B", split="test",
                  metric="spearman_cosine", value=0.5, n_pairs=10, data_sha256="sha", model_fingerprint="fp")
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
    ("model,pooling,method,task,split,metric,value,data_sha256,model_fingerprint\n"
     "m,cls,raw,ATEC,test,spearman_cosine,abc,sha,fp\n", r"r.csv:2"),
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


def _file_with_a_damaged_third_row(tmp_path, damage):
    """A results file of three good rows, the third then damaged by `damage(fields) -> line`."""
    path = tmp_path / "r.csv"
    write_frame(rows_to_frame([make_row(task="ATEC"), make_row(task="BQ"), make_row(task="LCQMC")]), path)
    header, first, second, third = path.read_text().splitlines()
    fields = dict(zip(header.split(","), third.split(","), strict=True))
    path.write_text("\n".join([header, first, "", second, damage(fields)]) + "\n")  # a blank line too
    return path


@pytest.mark.parametrize("damage, message", [
    (lambda f: ",".join({**f, "task": "NOTATASK"}.values()), "task 'NOTATASK' is not one of ATEC"),
    (lambda f: ",".join({**f, "value": "7.5"}.values()), r"value 7.5 of spearman_cosine is outside \[-1, 1\]"),
    (lambda f: ",".join({**f, "value": "inf"}.values()), "value inf of spearman_cosine is outside"),
    (lambda f: ",".join({**f, "ci_high": "-inf"}.values()), "ci_high -inf"),
    (lambda f: ",".join({**f, "metric": "recall@10", "value": "1.5"}.values()),
     r"value 1.5 of recall@10 is outside \[0, 1\]"),
    (lambda f: ",".join({**f, "status": "maybe"}.values()), "status 'maybe'"),
    (lambda f: ",".join(list(f.values())[:7]), f"7 of {len(COLUMNS)} fields; the row was cut short"),
    # issue 29, item 2: a hand-blanked value on an ok row
    (lambda f: ",".join({**f, "value": ""}.values()), "status ok but no value"),
    # item 6: rows without their identity would skip the re-run's compatibility check
    (lambda f: ",".join({**f, "data_sha256": ""}.values()), "data_sha256 is empty"),
    (lambda f: ",".join({**f, "model_fingerprint": ""}.values()), "model_fingerprint is empty"),
    # item 7: an interval that leaves out its value, negative counts and times, an unknown split
    (lambda f: ",".join({**f, "ci_low": "0.6", "ci_high": "0.7"}.values()),
     r"interval \[0.6, 0.7\] does not contain value 0.5"),
    (lambda f: ",".join({**f, "ci_low": "0.3", "ci_high": "0.4"}.values()),
     r"interval \[0.3, 0.4\] does not contain value 0.5"),
    (lambda f: ",".join({**f, "n_pairs": "-3"}.values()), "n_pairs '-3' is not a count"),
    (lambda f: ",".join({**f, "seconds": "-1.5"}.values()), "seconds -1.5 is not a time >= 0"),
    (lambda f: ",".join({**f, "split": "tset"}.values()), "split 'tset' is not one of test, train, valid"),
    (lambda f: ",".join({**f, "split": "test-sample"}.values()), "split 'test-sample' is not one of"),
])
def test_damaged_rows_are_refused_with_file_and_line(tmp_path, damage, message):
    path = _file_with_a_damaged_third_row(tmp_path, damage)
    with pytest.raises(StsevalError, match=f"r.csv:5: {message}"):
        read_rows(path)
    with pytest.raises(StsevalError, match="r.csv:5"):
        ResultsFile(path)  # a resumed grid trusts no damaged row either


def test_report_refuses_a_damaged_row_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from stseval.cli import app

    path = _file_with_a_damaged_third_row(tmp_path, lambda f: ",".join({**f, "value": "7.5"}.values()))
    result = CliRunner().invoke(app, ["report", str(path), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"stseval: {path}:5: value 7.5 of spearman_cosine is outside [-1, 1]; "
        "the row is damaged or not from stseval: fix or delete the line"]


def test_rows_of_one_cell_given_twice_are_written_once(tmp_path):
    path = tmp_path / "r.csv"
    ResultsFile(path).add([make_row(value=0.1), make_row(value=0.2)])
    frame = read_rows(path)
    assert len(frame) == 1 and frame.value.item() == pytest.approx(0.2)


@pytest.mark.parametrize("metric, value", [
    ("spearman_cosine", -0.3),
    ("spearman_cosine_minus_raw", -1.5),  # a paired difference of two Spearmans can exceed 1 in size
    ("spearman_cosine_minus_simcse", 1.5),
    ("ndcg@10", 0.0),
    ("qps", 12000.0),  # rates and timings have no upper bound
    ("build_s", 0.0),
    ("mean_rank", -7.0),  # a metric stseval has no range for: any finite number
])
def test_every_value_a_metric_can_take_is_read_back(tmp_path, metric, value):
    path = tmp_path / "r.csv"
    write_frame(rows_to_frame([make_row(metric=metric, value=value)]), path)
    assert read_rows(path).value.item() == pytest.approx(value)


@pytest.mark.parametrize("metric, value, span", [
    ("spearman_dot", 1.2, r"\[-1, 1\]"),
    ("spearman_cosine_minus_raw", -2.5, r"\[-2, 2\]"),
    ("ndcg@10", 1.2, r"\[0, 1\]"),
    ("mrr@10", -0.1, r"\[0, 1\]"),
    ("qps", -1.0, ">= 0"),
    ("mean_rank", float("inf"), "finite"),
])
def test_a_value_its_metric_cannot_take_is_refused_with_file_and_line(tmp_path, metric, value, span):
    path = tmp_path / "r.csv"
    write_frame(rows_to_frame([make_row(task="ATEC"), make_row(metric=metric, value=value)]), path)
    with pytest.raises(StsevalError, match=f"r.csv:3: value {value!r} of {metric} is outside {span}"):
        read_rows(path)


# --- files written before the descriptive columns: one `extra` column of key=value;... -------------------

LEGACY_HEADER = ("model,pooling,method,task,split,metric,value,dims,fit_on,train_on,prefix,dropout,loss,batch_size,"
                 "learning_rate,epochs,ci_low,ci_high,n_pairs,n_fit,fit_rank,seconds,seed,model_fingerprint,data_sha256,"
                 "command,stseval_version,git_commit,versions,created_at,status,machine,extra")
LEGACY_LINES = [  # as the committed results/simcse_su/simcse.csv and results/whitening/whiten.csv hold them
    "e5,last-avg,raw,STS-B,test,spearman_cosine,0.773563,full,,,,,,,,,0.74,0.80,1361,0,0,16.9,0,fp,78e0,c,0.1.0,g,v,"
    "2026-12-01T12:00:00+00:00,ok,m,",
    "e5,last-avg,simcse-best-valid,STS-B,test,spearman_cosine,0.778291,full,,"
    "train+valid+test (10000 of 16100 sentences),"
    ",0.1,su,64,1e-05,1,0.75,0.80,1361,0,0,1199.88,0,fp,78e0,c,0.1.0,g,v,2026-12-01T16:40:22+00:00,ok,m,"
    "run_dir=runs/simcse/default-STS-B-last-avg-d0.1-s0;max_length=64;trained_fingerprint=77edccb04db4;steps=157;"
    "final_loss=0.0001;sentences_per_s=5.48;chosen_on=valid-sample1000;best_step=20;best_valid_spearman=0.816988",
    "e5,last-avg,simcse+whitening,STS-B,test,spearman_cosine,0.7,full,train+valid+test (10000 of 16100 sentences),"
    "train+valid+test (10000 of 16100 sentences),,0.1,su,64,1e-05,1,0.68,0.72,1361,0,0,1300,0,fp,78e0,c,0.1.0,g,v,"
    "2026-12-01T16:40:22+00:00,ok,m,run_dir=runs/simcse/x;max_length=64;trained_fingerprint=77edccb04db4;steps=157;"
    "final_loss=0.0001;sentences_per_s=5.48;n_fit_vectors=10000",
    "e5,cls,whitening,BQ,test,spearman_cosine,0.31,full,all-available,,,,,,,,0.3,0.32,10000,,,3.6,0,fp,1234,c,0.1.0,g,v,"
    "2026-11-27T12:09:53+00:00,ok,m,fit_splits=train+valid+test;n_fit_vectors=2916",
    "e5,pooler,whitening,BQ,test,spearman_cosine,,full,valid,,,,,,,,,,0,,,0,0,fp,1234,c,0.1.0,g,v,"
    "2026-11-27T12:09:53+00:00,n/a,m,e5 has no pooler output",
    "e5,last-avg,simcse,ATEC,test-sample1000,spearman_cosine,0.2,full,,valid+test (1024 of 40000 sentences),,0.1,,,,,"
    "0.1,0.3,1000,0,0,281.8,0,fp,abcd,c,0.1.0,g,v,2026-11-27T12:20:56+00:00,ok,m,run_dir=runs/simcse/y;loss=su;"
    "batch_size=64;lr=1e-05;epochs=1;max_length=64;trained_fingerprint=9108a72ddabe;steps=16;final_loss=0.4034;"
    "sentences_per_s=4.06",
]


def _legacy_file(tmp_path):
    path = tmp_path / "legacy.csv"
    path.write_text("\n".join([LEGACY_HEADER, *LEGACY_LINES]) + "\n", encoding="utf-8")
    return path


def test_legacy_extra_moves_into_columns_and_free_text_into_note(tmp_path):
    frame = read_rows(_legacy_file(tmp_path))
    assert list(frame.columns) == COLUMNS and "extra" not in frame.columns
    raw, best, whitened, all_available, not_available, first_simcse = (frame.iloc[i] for i in range(6))
    assert (raw.beta, raw.gamma, raw.note, raw.run_dir) == ("", "", "", "")
    assert (best.run_dir, best.max_length, best.trained_fingerprint) == (
        "runs/simcse/default-STS-B-last-avg-d0.1-s0", "64", "77edccb04db4")
    assert (best.train_steps, best.final_loss, best.sentences_per_s) == ("157", "0.0001", "5.48")
    assert (best.chosen_on, best.best_step, best.best_valid_spearman) == ("valid-sample1000", "20", "0.816988")
    assert whitened.n_fit == "10000" and (whitened.beta, whitened.gamma) == ("1", "1")  # plain BERT-whitening
    assert (all_available.fit_splits, all_available.n_fit) == ("train+valid+test", "2916")
    assert not_available.status == "n/a" and not_available.note == "e5 has no pooler output"
    # settings this row's columns lack stay text: filling loss etc. would change its cell key
    assert first_simcse.loss == "" and first_simcse.note == "loss=su;batch_size=64;lr=1e-05;epochs=1"
    assert first_simcse.train_steps == "16"
    assert frame.value.tolist()[:4] == pytest.approx([0.773563, 0.778291, 0.7, 0.31])


def test_legacy_rows_keep_the_cell_key_a_new_run_plans_for_them(tmp_path):
    from stseval.runs.plan import planned_row

    common = dict(model="e5", model_fingerprint="fp", task="STS-B", split="test", data_sha256="78e0", seed=0,
                  train_on="train+valid+test (10000 of 16100 sentences)", dropout="0.1", loss="su", batch_size="64",
                  learning_rate="1e-05", epochs="1", pooling="last-avg")
    new_rows = [planned_row(common, method="simcse-best-valid", metric="spearman_cosine"),
                planned_row(common, method="simcse+whitening", metric="spearman_cosine",
                            fit_on="train+valid+test (10000 of 16100 sentences)"),
                planned_row({**common, "train_on": "", "dropout": "", "loss": "", "batch_size": "",
                             "learning_rate": "", "epochs": ""}, method="raw", metric="spearman_cosine")]
    legacy = ResultsFile(_legacy_file(tmp_path))
    assert all(legacy.has(cell_key(row)) for row in new_rows)  # a resumed run skips them
    legacy.check_compatible(new_rows)


def test_first_write_rewrites_a_legacy_file_in_the_current_columns(tmp_path):
    path = _legacy_file(tmp_path)
    before = read_rows(path)
    results = ResultsFile(path)
    results.add([make_row(task="LCQMC")])
    header = path.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header == COLUMNS  # no `extra`
    after = read_rows(path)
    assert len(after) == len(before) + 1
    pd.testing.assert_frame_equal(after.iloc[:len(before)].reset_index(drop=True), before)
    assert ResultsFile(path).has(cell_key(before.iloc[1]))


def test_a_file_without_extra_is_left_as_it_is():
    from stseval.runs.results import convert_legacy_extra

    frame = rows_to_frame([make_row(note="kept")]).astype(str)
    assert convert_legacy_extra(frame) is frame


def test_sampled_splits_intervals_at_their_value_and_undefined_cells_are_read_back(tmp_path):
    path = tmp_path / "r.csv"
    rows = [make_row(split="test-sample1000", ci_low=0.5, ci_high=0.5),  # an interval may touch its value
            make_row(task="BQ", value=float("nan"), status="undefined", note="gold scores are constant (all 3)"),
            make_row(task="ATEC", value=float("nan"), status="n/a", note="no pooler")]
    write_frame(rows_to_frame(rows), path)
    frame = read_rows(path)
    assert frame.status.tolist() == ["ok", "undefined", "n/a"]
    assert frame.value.isna().tolist() == [False, True, True]


@pytest.mark.parametrize("dropped", ["data_sha256", "model_fingerprint"])
def test_a_file_without_an_identity_column_is_refused_by_column_name(tmp_path, dropped):
    path = tmp_path / "r.csv"
    rows_to_frame([make_row()]).drop(columns=[dropped]).to_csv(path, index=False)
    with pytest.raises(StsevalError, match=f"r.csv: missing column\\(s\\) {dropped}"):
        read_rows(path)
    with pytest.raises(StsevalError, match=f"missing column\\(s\\) {dropped}"):
        ResultsFile(path)  # a re-run never appends to it


def test_the_lock_file_is_gone_after_each_write(tmp_path):
    path = tmp_path / "r.csv"
    ResultsFile(path).add([make_row()])
    ResultsFile(path).add([make_row(task="BQ")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]  # no .r.csv.lock left behind


def _add_rows_in_turn(path: str, task: str, n_rows: int) -> None:
    """One writer process: n_rows separate adds, each its own cell."""
    results = ResultsFile(path)
    for seed in range(n_rows):
        results.add([make_row(task=task, seed=seed)])


def test_writers_racing_on_a_removed_lock_file_keep_every_row(tmp_path):
    """Each add creates and removes the lock file; a writer that waited on a removed file must retry,
    else two writers merge at once and one's rows are lost."""
    import multiprocessing

    path = tmp_path / "r.csv"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_add_rows_in_turn, args=(str(path), task, 6))
               for task in ("ATEC", "BQ", "LCQMC")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    frame = read_rows(path)
    assert len(frame) == 18 and frame.groupby("task").size().tolist() == [6, 6, 6]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]


def test_a_lock_held_elsewhere_times_out_and_stays_with_its_holder(tmp_path):
    from stseval.common.locks import LockTimeout, removable_lock

    lock = tmp_path / ".r.csv.lock"
    with removable_lock(lock, timeout_s=1.0):
        with pytest.raises(LockTimeout):  # a second open file description: flock refuses it
            with removable_lock(lock, timeout_s=0.2, poll_s=0.05):
                pass
        assert lock.is_file()  # the timed-out taker removed nothing
    assert not lock.exists()


def test_other_library_versions_are_named_one_by_one_with_both_versions(tmp_path):
    path = tmp_path / "r.csv"
    ResultsFile(path).add([make_row(versions="python=3.11.7;torch=2.4.0;transformers=4.40.0;numpy=1.26.4")])
    planned = make_row(pooling="last-avg", versions="python=3.11.7;torch=2.5.1;transformers=4.40.0;numpy=2.0.0;"
                                                   "faiss-cpu=1.8.0")
    with pytest.raises(StsevalError) as caught:
        ResultsFile(path).check_compatible([planned])
    assert ("1 rows of other library versions (torch 2.4.0 there, 2.5.1 in this run; numpy 1.26.4 there, "
            "2.0.0 in this run; faiss-cpu absent there, 1.8.0 in this run, first at r.csv:2)") in str(caught.value)
    assert "python" not in str(caught.value) and "transformers" not in str(caught.value)


def test_machine_names_the_widest_vector_unit_so_avx2_and_avx512_hosts_differ(monkeypatch):
    # one cloud model name ("AMD EPYC") covers both kinds of host; their wall times differ
    assert widest_vector_unit(frozenset({"sse2", "avx2", "avx512f", "avx512_bf16"})) == "AVX-512 BF16"
    assert widest_vector_unit(frozenset({"sse2", "avx2", "fma"})) == "AVX2"
    assert widest_vector_unit(frozenset({"fp", "asimd"})) == ""
    monkeypatch.setattr("stseval.options.cpu_flags", lambda: frozenset({"avx2"}))
    assert machine_description().split(", ")[2].endswith(" (AVX2)")
